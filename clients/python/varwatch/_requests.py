"""Request building shared by the sync and async clients, and the cache of
variable types that lets ``set`` take native values.

Nothing here does I/O: the clients call these, then make the RPC.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any, Iterable, Mapping, Optional, Union

from google.protobuf import duration_pb2

from ._proto.varwatch.v1 import bridge_pb2 as pb
from .errors import REASON_WRONG_TYPE, InvalidValue, VarwatchError
from .models import SetItem, Variable
from .values import Tensor, VariableType, constraints_to_proto, encode_value, numpy_module

Seconds = Union[float, int, timedelta]
"""A duration: seconds as a number, or a timedelta."""

SetUpdates = Union[Mapping[str, Any], Iterable[Union[SetItem, tuple[str, Any]]]]
"""What set_many takes: {identifier: value}, (identifier, value) pairs, or
SetItem objects (for metadata, source, expected_version or type)."""


def to_duration(value: Optional[Seconds], field: str) -> Optional[duration_pb2.Duration]:
    if value is None:
        return None
    secs = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if secs < 0:
        raise InvalidValue(f"{field} must not be negative ({secs}s)")
    d = duration_pb2.Duration()
    d.seconds = int(secs)
    d.nanos = int(round((secs - int(secs)) * 1e9))
    if d.nanos >= 1_000_000_000:
        d.seconds += 1
        d.nanos -= 1_000_000_000
    return d


def init_session_request(
    session_id: Optional[str], metadata: Optional[Mapping[str, str]], ttl: Optional[Seconds]
) -> Any:
    req = pb.InitializeSessionRequest(session_id=session_id or "", metadata=dict(metadata or {}))
    d = to_duration(ttl, "ttl")
    if d is not None:
        req.ttl.CopyFrom(d)
    return req


def register_request(
    session_id: str,
    name: str,
    type: Union[VariableType, str],
    value: Any,
    metadata: Optional[Mapping[str, str]],
    constraints: Mapping[str, Any],
) -> tuple[Any, VariableType]:
    typ = VariableType.parse(type)
    req = pb.RegisterVariableRequest(
        session_id=session_id,
        name=name,
        type=typ.proto,  # type: ignore[arg-type]
        initial_value=encode_value(typ, value),
        constraints=constraints_to_proto(typ, **constraints),
        metadata=dict(metadata or {}),
    )
    return req, typ


def set_request(
    session_id: str,
    identifier: str,
    typ: VariableType,
    value: Any,
    metadata: Optional[Mapping[str, str]] = None,
    source: str = "",
    expected_version: Optional[int] = None,
) -> Any:
    req = pb.SetVariableRequest(
        session_id=session_id,
        variable_identifier=identifier,
        value=encode_value(typ, value),
        metadata=dict(metadata or {}),
        source=source,
    )
    if expected_version is not None:
        req.expected_version = int(expected_version)
    return req


def normalize_updates(updates: SetUpdates) -> list[SetItem]:
    """set_many's argument as a list of SetItem."""
    if isinstance(updates, Mapping):
        return [SetItem(str(k), v) for k, v in updates.items()]
    items: list[SetItem] = []
    for u in updates:
        if isinstance(u, SetItem):
            items.append(u)
        elif isinstance(u, tuple) and len(u) == 2:
            items.append(SetItem(str(u[0]), u[1]))
        else:
            raise InvalidValue(f"set_many: expected SetItem or (identifier, value), got {u!r}")
    return items


def watch_request(
    session_id: str,
    variables: Iterable[str],
    *,
    pattern: str,
    include_initial_values: bool,
    start_revision: Optional[int],
    heartbeat_interval: Optional[Seconds],
    max_batch_size: int,
    max_batch_delay: Optional[Seconds],
    coalesce: bool,
    filters: Optional[Iterable[Any]],
    options: Optional[Mapping[str, str]],
    incarnation: Optional[str] = None,
) -> Any:
    req = pb.WatchVariablesRequest(
        session_id=session_id,
        variable_identifiers=list(variables),
        include_initial_values=include_initial_values,
        options=dict(options or {}),
        pattern=pattern,
        max_batch_size=max_batch_size,
        coalesce=coalesce,
    )
    if start_revision is not None:
        req.start_revision = start_revision
    if incarnation:
        req.incarnation = incarnation
    hb = to_duration(heartbeat_interval, "heartbeat_interval")
    if hb is not None:
        req.heartbeat_interval.CopyFrom(hb)
    delay = to_duration(max_batch_delay, "max_batch_delay")
    if delay is not None and (delay.seconds or delay.nanos):
        req.max_batch_delay.CopyFrom(delay)
    for f in filters or ():
        if isinstance(f, str):
            req.filters.add(name=f)
        elif isinstance(f, tuple):
            name, params = f
            req.filters.add(name=name, params=dict(params))
        elif isinstance(f, Mapping):
            req.filters.add(name=f["name"], params=dict(f.get("params", {})))
        else:
            raise InvalidValue(f"filter: expected a name, (name, params) or {{'name':..., 'params':...}}, got {f!r}")
    return req


def wrong_type(err: VarwatchError) -> Optional[VariableType]:
    """The variable's real type, when err is the server's WRONG_TYPE: its
    ErrorInfo metadata ``variable_type``."""
    if err.reason != REASON_WRONG_TYPE:
        return None
    try:
        return VariableType.parse(err.reason_metadata.get("variable_type", ""))
    except InvalidValue:
        return None


class TypeCache:
    """Remembers each variable's type per session, by id and by name, from
    every variable the client sees, so ``set`` can encode a native value
    without asking the server first.

    # Notes
    Guarded by a lock: a sync Client may be shared between threads.
    """

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._types: dict[str, dict[str, VariableType]] = {}

    def get(self, session_id: str, identifier: str) -> Optional[VariableType]:
        with self._mu:
            return self._types.get(session_id, {}).get(identifier)

    def remember(self, session_id: str, var: Variable) -> None:
        with self._mu:
            m = self._types.setdefault(session_id, {})
            m[var.id] = var.type
            m[var.name] = var.type

    def remember_all(self, session_id: str, variables: Iterable[Variable]) -> None:
        for v in variables:
            self.remember(session_id, v)

    def forget(self, session_id: str, identifier: str) -> None:
        with self._mu:
            self._types.get(session_id, {}).pop(identifier, None)

    def forget_session(self, session_id: str) -> None:
        with self._mu:
            self._types.pop(session_id, None)


def guess_type(value: Any) -> VariableType:
    """The type a value most likely is, for variables whose type the client
    cannot learn (they do not exist: the server then answers NOT_FOUND)."""
    np = numpy_module()
    if isinstance(value, bool):
        return VariableType.BOOLEAN
    if isinstance(value, int):
        return VariableType.INTEGER
    if isinstance(value, float):
        return VariableType.FLOAT
    if isinstance(value, str):
        return VariableType.STRING
    if isinstance(value, Tensor) or (np is not None and isinstance(value, np.ndarray) and value.ndim != 1):
        return VariableType.TENSOR
    if isinstance(value, (list, tuple)) or (np is not None and isinstance(value, np.ndarray)):
        return VariableType.EMBEDDING
    raise InvalidValue(f"cannot tell the variable type of {type(value).__name__} value {value!r}")
