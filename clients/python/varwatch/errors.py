"""Typed exceptions mapped from gRPC status codes.

Every error the server answers becomes one :class:`VarwatchError` subclass
carrying the status code and the server's message verbatim, so callers
branch with ``except`` instead of comparing codes::

    try:
        session.set("lr", 0.5, expected_version=3)
    except varwatch.VersionConflict as e:
        print("someone else wrote it first; current version", e.current_version)

The mapping lives in :func:`from_rpc_error` and nowhere else.
"""

from __future__ import annotations

from typing import Optional

import grpc

from ._details import ErrorInfo, error_info

# The server's ErrorInfo reasons (domain varwatch.v1) this client decides
# on; README "Errors" lists them all. Never the message: its wording is
# free to change.
REASON_SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
REASON_VARIABLE_NOT_FOUND = "VARIABLE_NOT_FOUND"
REASON_WRONG_TYPE = "WRONG_TYPE"
REASON_SLOW_CONSUMER = "SLOW_CONSUMER"
REASON_LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
REASON_INCARNATION_CHANGED = "SESSION_INCARNATION_CHANGED"
REASON_FILTER_FAILED = "FILTER_FAILED"

__all__ = [
    "VarwatchError",
    "InvalidValue",
    "NotFound",
    "SessionNotFound",
    "VariableNotFound",
    "AlreadyExists",
    "VersionConflict",
    "FilterFailed",
    "Compacted",
    "FailedPrecondition",
    "IncarnationChanged",
    "ResourceExhausted",
    "SlowConsumer",
    "Unavailable",
    "Cancelled",
    "DeadlineExceeded",
    "Unimplemented",
    "Unauthenticated",
    "PermissionDenied",
    "InternalError",
    "from_rpc_error",
    "from_status",
    "from_status_info",
]


class VarwatchError(Exception):
    """Base of every varwatch error.

    Attributes:
        code: the gRPC status code the server (or the transport) answered.
        message: the server's message, verbatim (it names what was wrong:
            the session, the variable, the current version...).
        reason: the reason of the status's ``google.rpc.ErrorInfo`` detail
            (domain ``varwatch.v1``: ``SLOW_CONSUMER``, ``SHUTTING_DOWN``,
            ``LIMIT_EXCEEDED``, ``REVISION_COMPACTED``, ...), or None when the
            status has none. Branch on it, not on the message.
        reason_metadata: that detail's metadata (``limit``, ``value``,
            ``resume_revision``, ...); empty without one.
    """

    default_code = grpc.StatusCode.UNKNOWN
    default_reason = ""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message)
        self.code = code if code is not None else self.default_code
        self.message = message
        self.reason: Optional[str] = self.default_reason or None
        self.reason_metadata: dict[str, str] = {}

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code.name})"


class InvalidValue(VarwatchError, ValueError):
    """INVALID_ARGUMENT: a malformed request, a value of the wrong type or
    one that violates the variable's constraints.

    The client raises it too, without asking the server, for a Python value
    it cannot encode for the variable's type (then ``code`` is still
    INVALID_ARGUMENT).
    """

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(VarwatchError, LookupError):
    """NOT_FOUND: something named in the request does not exist."""

    default_code = grpc.StatusCode.NOT_FOUND


class SessionNotFound(NotFound):
    """NOT_FOUND: the session does not exist, expired or was cleaned up."""


class VariableNotFound(NotFound):
    """NOT_FOUND: no variable with that id or name in the session."""


class AlreadyExists(VarwatchError):
    """ALREADY_EXISTS: a variable with that name is already registered."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class VersionConflict(VarwatchError):
    """ABORTED: ``expected_version`` did not match the variable's version.

    Attributes:
        expected_version, current_version: from the ErrorInfo metadata of
            reason ``VERSION_CONFLICT``; None without them (reason
            ``CONCURRENT_UPDATE``: the call raced other writes, retry it).
    """

    default_code = grpc.StatusCode.ABORTED

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message, code)
        self.expected_version: Optional[int] = None
        self.current_version: Optional[int] = None


class FilterFailed(VarwatchError):
    """ABORTED, reason FILTER_FAILED: a filter plugin of the watch's chain
    failed with ``on_error=close`` and the server ended the stream. A
    filtered watch cannot resume: watch again with initial values.

    Attributes:
        delivered_revision: the revision up to which every change was
            delivered (ErrorInfo metadata ``resume_revision``), else None.
    """

    default_code = grpc.StatusCode.ABORTED
    default_reason = REASON_FILTER_FAILED

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message, code)
        self.delivered_revision: Optional[int] = None


class Compacted(VarwatchError):
    """OUT_OF_RANGE: a watch asked to resume from a revision the server's
    history no longer holds.

    Attributes:
        oldest_revision: the oldest revision one can resume from (every change
            after it is still held): the ErrorInfo metadata
            ``compacted_revision``; None if absent.
    """

    default_code = grpc.StatusCode.OUT_OF_RANGE

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message, code)
        self.oldest_revision: Optional[int] = None


class FailedPrecondition(VarwatchError):
    """FAILED_PRECONDITION: the server is not in a state to serve the request
    (a watch names filters and the server has none loaded, ...)."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class IncarnationChanged(FailedPrecondition):
    """FAILED_PRECONDITION, reason SESSION_INCARNATION_CHANGED: a watch named
    a session incarnation that is not the session's any more. The session
    was deleted and created again (or recreated on a server that restarted
    without its data), so its revisions belong to another history and
    nothing could be resumed. Watch again with initial values, or pass
    ``resnapshot_on_compacted=True`` to have ``watch()`` do it.

    Attributes:
        session_id: the session.
        current_incarnation: the session's incarnation now.
        requested_incarnation: the one the watch followed.
    """

    default_reason = REASON_INCARNATION_CHANGED

    def __init__(
        self,
        message: str,
        code: Optional[grpc.StatusCode] = None,
        *,
        session_id: str = "",
        current_incarnation: str = "",
        requested_incarnation: str = "",
    ) -> None:
        super().__init__(message, code)
        self.session_id = session_id
        self.current_incarnation = current_incarnation
        self.requested_incarnation = requested_incarnation


class ResourceExhausted(VarwatchError):
    """RESOURCE_EXHAUSTED: a server limit was hit.

    Attributes:
        delivered_revision: for a watch stream, the revision up to which every
            change was delivered before it ended (ErrorInfo metadata
            ``resume_revision``), else None.
    """

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message, code)
        self.delivered_revision: Optional[int] = None


class SlowConsumer(ResourceExhausted):
    """RESOURCE_EXHAUSTED: a watch stream fell too far behind and the server
    cut it off. ``watch()`` resumes by itself; you see this only when its
    retries are exhausted."""


class Unavailable(VarwatchError, ConnectionError):
    """UNAVAILABLE: the server is unreachable or shutting down.

    Attributes:
        delivered_revision: for a watch stream the server ended, the revision
            up to which every change was delivered (ErrorInfo metadata
            ``resume_revision``), else None.
    """

    default_code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message, code)
        self.delivered_revision: Optional[int] = None


class Cancelled(VarwatchError):
    """CANCELLED: the call was cancelled."""

    default_code = grpc.StatusCode.CANCELLED


class DeadlineExceeded(VarwatchError, TimeoutError):
    """DEADLINE_EXCEEDED: the call's timeout passed before an answer."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(VarwatchError):
    """UNIMPLEMENTED: the server does not serve this RPC or request field."""

    default_code = grpc.StatusCode.UNIMPLEMENTED


class Unauthenticated(VarwatchError):
    """UNAUTHENTICATED: the server wants a token (``token=``) and got none,
    or one it does not know."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(VarwatchError, PermissionError):
    """PERMISSION_DENIED: the session belongs to another tenant than the
    token's."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class InternalError(VarwatchError):
    """Any other code (INTERNAL, UNKNOWN, ...): a server bug or a broken
    transport, never a client mistake."""

    default_code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[VarwatchError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidValue,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: VersionConflict,
    grpc.StatusCode.OUT_OF_RANGE: Compacted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}

_CODE_BY_NUMBER: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def from_status(code: grpc.StatusCode | int, message: str, info: Optional[ErrorInfo] = None) -> VarwatchError:
    """Builds the typed exception for a status code, message and ErrorInfo.

    ``code`` may be a number, as in the per-item results of ``set_many``.
    The class comes from the code and, where one code covers several
    cases, the ErrorInfo reason (a NOT_FOUND is a :class:`SessionNotFound`
    exactly when its reason is ``SESSION_NOT_FOUND``, a RESOURCE_EXHAUSTED
    a :class:`SlowConsumer` exactly when it is ``SLOW_CONSUMER``); the
    attributes come from its metadata. The message is never read: it is
    for people.
    """
    if isinstance(code, int):
        code = _CODE_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
    err = _typed(code, message, info)
    if info is not None:
        err.reason, err.reason_metadata = info.reason, dict(info.metadata)
    md = err.reason_metadata
    if isinstance(err, (ResourceExhausted, Unavailable, FilterFailed)):
        err.delivered_revision = _int(md.get("resume_revision"))
    elif isinstance(err, VersionConflict):
        err.expected_version = _int(md.get("expected_version"))
        err.current_version = _int(md.get("current_version"))
    elif isinstance(err, Compacted):
        err.oldest_revision = _int(md.get("compacted_revision"))
    return err


def _typed(code: grpc.StatusCode, message: str, info: Optional[ErrorInfo]) -> VarwatchError:
    reason = info.reason if info is not None else None
    if code == grpc.StatusCode.NOT_FOUND:
        if reason == REASON_VARIABLE_NOT_FOUND:
            return VariableNotFound(message, code)
        if reason == REASON_SESSION_NOT_FOUND:
            return SessionNotFound(message, code)
        return NotFound(message, code)
    if code == grpc.StatusCode.FAILED_PRECONDITION and info is not None and reason == REASON_INCARNATION_CHANGED:
        md = info.metadata
        return IncarnationChanged(
            message,
            code,
            session_id=md.get("session_id", ""),
            current_incarnation=md.get("current_incarnation", ""),
            requested_incarnation=md.get("requested_incarnation", ""),
        )
    if code == grpc.StatusCode.ABORTED and reason == REASON_FILTER_FAILED:
        return FilterFailed(message, code)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if reason == REASON_SLOW_CONSUMER:
            return SlowConsumer(message, code)
        return ResourceExhausted(message, code)
    cls = _BY_CODE.get(code, InternalError)
    return cls(message, code)


def from_rpc_error(err: grpc.RpcError) -> VarwatchError:
    """Maps a grpc.RpcError (sync or aio) to its typed exception, with the
    ErrorInfo of its trailers."""
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    trailers_fn = getattr(err, "trailing_metadata", None)
    code = code_fn() if callable(code_fn) else None
    message = details_fn() if callable(details_fn) else None
    info = error_info(trailers_fn()) if callable(trailers_fn) else None
    if code is None:
        code = grpc.StatusCode.UNKNOWN
    return from_status(code, message or str(err), info)


def from_status_info(code: grpc.StatusCode | int, message: str, info: Optional[ErrorInfo]) -> VarwatchError:
    """from_status, for a status given as fields: a multiplexed watch's
    WatchEnded carries its code, message and ErrorInfo that way."""
    return from_status(code, message, info)


def _int(v: Optional[str]) -> Optional[int]:
    """A metadata value as an integer; None when absent or not one."""
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None
