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

import re
from typing import Optional

import grpc

from ._details import ErrorInfo, error_info

REASON_SLOW_CONSUMER = "SLOW_CONSUMER"
REASON_LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
REASON_INCARNATION_CHANGED = "SESSION_INCARNATION_CHANGED"

__all__ = [
    "VarwatchError",
    "InvalidValue",
    "NotFound",
    "SessionNotFound",
    "VariableNotFound",
    "AlreadyExists",
    "VersionConflict",
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
        expected_version, current_version: parsed from the server's message
            when it names them, else None.
    """

    default_code = grpc.StatusCode.ABORTED

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message, code)
        self.expected_version = _int_after(message, r"expected version (-?\d+)")
        self.current_version = _int_after(message, r"current version is (-?\d+)")


class Compacted(VarwatchError):
    """OUT_OF_RANGE: a watch asked to resume from a revision the server's
    history no longer holds.

    Attributes:
        oldest_revision: the oldest revision one can resume from (every change
            after it is still held), parsed from the message; None if absent.
    """

    default_code = grpc.StatusCode.OUT_OF_RANGE

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message, code)
        self.oldest_revision = _int_after(message, r"resume from (\d+)", r"after revision (\d+)")


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
            change was delivered before it ended (parsed), else None.
    """

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message, code)
        self.delivered_revision = _delivered_revision(message)


class SlowConsumer(ResourceExhausted):
    """RESOURCE_EXHAUSTED: a watch stream fell too far behind and the server
    cut it off. ``watch()`` resumes by itself; you see this only when its
    retries are exhausted."""


class Unavailable(VarwatchError, ConnectionError):
    """UNAVAILABLE: the server is unreachable or shutting down.

    Attributes:
        delivered_revision: for a watch stream the server ended, the revision
            up to which every change was delivered (parsed), else None.
    """

    default_code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message, code)
        self.delivered_revision = _delivered_revision(message)


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
    With ``info`` (the status's ErrorInfo) a RESOURCE_EXHAUSTED is a
    :class:`SlowConsumer` exactly when its reason is ``SLOW_CONSUMER``;
    statuses without details (per-item results) are told apart by their
    message, as before the server sent details.
    """
    if isinstance(code, int):
        code = _CODE_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
    err = _typed(code, message, info)
    if info is not None:
        err.reason, err.reason_metadata = info.reason, dict(info.metadata)
        resume = info.metadata.get("resume_revision")
        if resume is not None and resume.isdigit() and hasattr(err, "delivered_revision"):
            err.delivered_revision = int(resume)  # type: ignore[attr-defined]
    return err


def _typed(code: grpc.StatusCode, message: str, info: Optional[ErrorInfo]) -> VarwatchError:
    if code == grpc.StatusCode.NOT_FOUND:
        # The server's messages: 'variable not found: no variable "x" in
        # session "s"' versus 'session not found: session "s" not found'
        # (or '... expired at ...').
        lower = message.lower()
        if "no variable" in lower or "variable not found" in lower:
            return VariableNotFound(message, code)
        if "session" in lower:
            return SessionNotFound(message, code)
        return NotFound(message, code)
    if code == grpc.StatusCode.FAILED_PRECONDITION and info is not None and info.reason == REASON_INCARNATION_CHANGED:
        md = info.metadata
        return IncarnationChanged(
            message,
            code,
            session_id=md.get("session_id", ""),
            current_incarnation=md.get("current_incarnation", ""),
            requested_incarnation=md.get("requested_incarnation", ""),
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if info is not None:
            if info.reason == REASON_SLOW_CONSUMER:
                return SlowConsumer(message, code)
            return ResourceExhausted(message, code)
        lower = message.lower()
        if "behind" in lower or "slow consumer" in lower or "cut off" in lower:
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


def _int_after(message: str, *patterns: str) -> Optional[int]:
    """The integer captured by the first of patterns that matches message."""
    for pattern in patterns:
        m = re.search(pattern, message)
        if m:
            return int(m.group(1))
    return None


def _delivered_revision(message: str) -> Optional[int]:
    # The server ends watch streams with "...: every change up to revision N
    # was delivered; resume with start_revision=N".
    return _int_after(message, r"start_revision=(\d+)", r"up to revision (\d+)")
