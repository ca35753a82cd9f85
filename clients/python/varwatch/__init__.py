"""varwatch: the Python client of the varwatch reactive variable engine.

Sync::

    import varwatch

    with varwatch.Client("127.0.0.1:50051") as client:
        with client.create_session() as s:
            s.register("lr", "float", 0.01, min=0, max=1)
            s.set("lr", 0.02)
            for update in s.watch("lr", include_initial_values=True):
                print(update.name, update.value)

Async: :class:`AsyncClient`, the same methods as coroutines, and
``async for update in session.watch(...)``.

See README.md for the full reference.
"""

from .aio import AsyncClient, AsyncSession
from .client import DEFAULT_TARGET, Client, Session
from .errors import (
    AlreadyExists,
    Cancelled,
    Compacted,
    DeadlineExceeded,
    FailedPrecondition,
    FilterFailed,
    IncarnationChanged,
    InternalError,
    InvalidValue,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SessionNotFound,
    SlowConsumer,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    VariableNotFound,
    VarwatchError,
    VersionConflict,
)
from .models import (
    GetManyResult,
    HeartbeatInfo,
    Pong,
    SessionInfo,
    SetItem,
    SetItemResult,
    SetManyResult,
    Update,
    UpdateType,
    Variable,
    VariableList,
)
from .values import Constraints, Tensor, VariableType, numpy_available
from .watch import AsyncWatch, Watch
from .writer import AsyncWriter, PendingWrite, WriteAck, Writer, WriterClosed, WriteStreamError

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TARGET",
    "Client",
    "Session",
    "AsyncClient",
    "AsyncSession",
    "Watch",
    "AsyncWatch",
    "Writer",
    "AsyncWriter",
    "PendingWrite",
    "WriteAck",
    "WriteStreamError",
    "WriterClosed",
    "Update",
    "UpdateType",
    "Variable",
    "VariableList",
    "VariableType",
    "Constraints",
    "Tensor",
    "SessionInfo",
    "Pong",
    "HeartbeatInfo",
    "GetManyResult",
    "SetItem",
    "SetItemResult",
    "SetManyResult",
    "numpy_available",
    "VarwatchError",
    "InvalidValue",
    "NotFound",
    "SessionNotFound",
    "FailedPrecondition",
    "FilterFailed",
    "IncarnationChanged",
    "VariableNotFound",
    "AlreadyExists",
    "VersionConflict",
    "Compacted",
    "ResourceExhausted",
    "SlowConsumer",
    "Unavailable",
    "Cancelled",
    "DeadlineExceeded",
    "Unimplemented",
    "Unauthenticated",
    "PermissionDenied",
    "InternalError",
]
