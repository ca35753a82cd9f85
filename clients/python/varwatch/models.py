"""The objects the client hands back: variables, sessions, results and
watch updates, converted from their wire messages with native values and
``datetime`` timestamps (UTC, timezone-aware)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Optional, Union

from ._details import ERROR_DOMAIN, ErrorInfo
from .errors import VarwatchError, from_status
from .values import Constraints, VariableType, decode_value, type_from_proto

__all__ = [
    "Variable",
    "SessionInfo",
    "Pong",
    "HeartbeatInfo",
    "GetManyResult",
    "VariableList",
    "SetItem",
    "SetItemResult",
    "SetManyResult",
    "Update",
    "UpdateType",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ts_to_datetime(ts: Any) -> datetime:
    """A protobuf Timestamp as an aware UTC datetime (microsecond precision)."""
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def _opt_ts(msg: Any, name: str) -> Optional[datetime]:
    return ts_to_datetime(getattr(msg, name)) if msg.HasField(name) else None


def duration_seconds(d: Any) -> float:
    return d.seconds + d.nanos / 1e9


@dataclass
class Variable:
    """A variable's state as the server reported it.

    ``mod_revision`` is the session revision of its last change, so after
    ``set`` it is the revision that change got. ``position``, on the
    result of ``set`` or ``register`` on a node of a cluster, is the log
    position the write applied at (None otherwise; not compared).
    """

    id: str
    name: str
    type: VariableType
    value: Any
    version: int
    constraints: Constraints = field(default_factory=Constraints)
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: Optional[datetime] = None
    last_updated_at: Optional[datetime] = None
    create_revision: int = 0
    mod_revision: int = 0
    last_update_source: str = ""
    position: Optional[int] = field(default=None, compare=False)

    @classmethod
    def from_proto(cls, v: Any, position: Optional[int] = None) -> "Variable":
        return cls(
            id=v.id,
            name=v.name,
            type=type_from_proto(v.type, v.value),
            value=decode_value(v.value),
            version=v.version,
            constraints=Constraints.from_proto(v.constraints),
            metadata=dict(v.metadata),
            created_at=_opt_ts(v, "created_at"),
            last_updated_at=_opt_ts(v, "last_updated_at"),
            create_revision=v.create_revision,
            mod_revision=v.mod_revision,
            last_update_source=v.last_update_source,
            position=position,
        )


@dataclass
class SessionInfo:
    """A session as the server reported it. ``revision`` is the session's
    latest revision; ``incarnation`` is chosen at random when the session is
    created, and revisions mean something only together with it (a session
    created again under the same id counts from 1 again)."""

    id: str
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: Optional[datetime] = None
    last_used_at: Optional[datetime] = None
    expires_at: Optional[datetime] = None
    ttl: Optional[timedelta] = None
    variable_count: int = 0
    revision: int = 0
    incarnation: str = ""

    @classmethod
    def from_proto(cls, s: Any) -> "SessionInfo":
        return cls(
            id=s.id,
            metadata=dict(s.metadata),
            created_at=_opt_ts(s, "created_at"),
            last_used_at=_opt_ts(s, "last_used_at"),
            expires_at=_opt_ts(s, "expires_at"),
            ttl=timedelta(seconds=duration_seconds(s.ttl)) if s.HasField("ttl") else None,
            variable_count=s.variable_count,
            revision=s.revision,
            incarnation=s.incarnation,
        )


@dataclass
class Pong:
    """The answer to ping."""

    message: str
    server_time: Optional[datetime]


@dataclass
class HeartbeatInfo:
    """The answer to a session heartbeat. An unknown or expired session is
    not an error here: ``session_valid`` is then False."""

    session_valid: bool
    server_time: Optional[datetime]
    expires_at: Optional[datetime]
    incarnation: str = ""


@dataclass
class GetManyResult:
    """The answer to get_many: found variables and missing identifiers, both
    in request order, read at one revision."""

    variables: list[Variable]
    missing: list[str]
    revision: int

    def __getitem__(self, name_or_id: str) -> Variable:
        for v in self.variables:
            if v.name == name_or_id or v.id == name_or_id:
                return v
        raise KeyError(name_or_id)

    def values(self) -> dict[str, Any]:
        """Name -> value of every found variable."""
        return {v.name: v.value for v in self.variables}


class VariableList(list[Variable]):
    """The answer to list: variables sorted by name, plus the session
    revision they were read at (watch with ``start_revision=revision`` to
    follow every change after this listing)."""

    revision: int

    def __init__(self, variables: list[Variable], revision: int) -> None:
        super().__init__(variables)
        self.revision = revision


@dataclass
class SetItem:
    """One update of set_many. A plain ``(identifier, value)`` pair or a
    ``{identifier: value}`` mapping work too, when no options are needed."""

    identifier: str
    value: Any
    metadata: Optional[Mapping[str, str]] = None
    source: str = ""
    expected_version: Optional[int] = None
    type: Optional[Union[VariableType, str]] = None


@dataclass
class SetItemResult:
    """How one update of a non-atomic set_many went. ``error`` is the typed
    exception the update failed with (not raised), or None."""

    identifier: str
    ok: bool
    variable: Optional[Variable]
    revision: int
    error: Optional[VarwatchError] = None

    @classmethod
    def from_proto(cls, r: Any) -> "SetItemResult":
        info = ErrorInfo(r.error_reason, ERROR_DOMAIN, dict(r.error_metadata)) if r.error_reason else None
        err = None if r.success else from_status(r.error_code, r.error, info)
        return cls(
            identifier=r.variable_identifier,
            ok=r.success,
            variable=Variable.from_proto(r.variable) if r.HasField("variable") else None,
            revision=r.revision,
            error=err,
        )


@dataclass
class SetManyResult:
    """The answer to set_many: per-update results in request order and the
    session revision after the call; ``position`` is the log position it
    applied at, on a node of a cluster (None otherwise; not compared)."""

    results: list[SetItemResult]
    revision: int
    position: Optional[int] = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """Whether every update applied."""
        return all(r.ok for r in self.results)

    def raise_first(self) -> None:
        """Raises the first failed update's error, if any."""
        for r in self.results:
            if r.error is not None:
                raise r.error


class UpdateType(str, enum.Enum):
    """What a watch update reports. Members compare equal to the wire
    strings (``update.type == "value_change"``)."""

    INITIAL_VALUE = "initial_value"
    INITIAL_VALUES_COMPLETE = "initial_values_complete"
    VALUE_CHANGE = "value_change"
    VARIABLE_REGISTERED = "variable_registered"
    VARIABLE_DELETED = "variable_deleted"
    HEARTBEAT = "heartbeat"
    SESSION_CLOSED = "session_closed"

    def __str__(self) -> str:
        return self.value


_UPDATE_TYPES = {t.value: t for t in UpdateType}


_UNSET: Any = object()


@dataclass(eq=False)
class Update:
    """One watch update, with native values.

    Attributes:
        type: an :class:`UpdateType` (compares equal to the wire string; an
            update type this client does not know stays a plain str).
        name, variable_id: the variable ("" for initial_values_complete and
            session_closed).
        value: the value after the change (for variable_deleted: the last
            value); None when there is no variable.
        revision: the session revision of the change (the snapshot revision
            for initial values).
        source: who made the change.
        coalesced_count, coalesced_from_revision: with ``coalesce=True``, how
            many changes this update stands for and the revision of the first
            (0 when it stands only for itself).

    Decoded on first access, since a fast watch rarely reads them all:
        old_value: the value before the change (before the first merged
            change, when coalesced); None when the wire carries none.
        metadata: the metadata sent with the change.
        timestamp: when the change was made (server wall clock, UTC).
        variable: the full variable state after the change, or None.
    """

    type: Union[UpdateType, str]
    name: str
    variable_id: str
    value: Any
    revision: int
    source: str = ""
    coalesced_count: int = 0
    coalesced_from_revision: int = 0
    _raw: Any = field(default=None, repr=False)
    _old_value: Any = field(default=_UNSET, repr=False)
    _metadata: Any = field(default=_UNSET, repr=False)
    _timestamp: Any = field(default=_UNSET, repr=False)
    _variable: Any = field(default=_UNSET, repr=False)

    @classmethod
    def from_proto(cls, u: Any) -> "Update":
        # An update without a variable reads as an empty one: name "" and a
        # value with no kind (None), without the cost of HasField.
        var = u.variable
        return cls(
            _UPDATE_TYPES.get(u.update_type, u.update_type),
            var.name,
            u.variable_id,
            decode_value(var.value),
            u.revision,
            u.update_source,
            u.coalesced_count,
            u.coalesced_from_revision,
            u,
        )

    @property
    def incarnation(self) -> str:
        """The session incarnation, on initial_values_complete and
        session_closed ("" on changes)."""
        raw = self._raw
        return raw.incarnation if raw is not None else ""

    @property
    def old_value(self) -> Any:
        if self._old_value is _UNSET:
            raw = self._raw
            self._old_value = decode_value(raw.old_value) if raw is not None and raw.HasField("old_value") else None
        return self._old_value

    @property
    def metadata(self) -> dict[str, str]:
        if self._metadata is _UNSET:
            self._metadata = dict(self._raw.update_metadata) if self._raw is not None else {}
        return self._metadata

    @property
    def timestamp(self) -> Optional[datetime]:
        if self._timestamp is _UNSET:
            raw = self._raw
            self._timestamp = ts_to_datetime(raw.timestamp) if raw is not None and raw.HasField("timestamp") else None
        return self._timestamp

    @property
    def variable(self) -> Optional[Variable]:
        if self._variable is _UNSET:
            raw = self._raw
            self._variable = Variable.from_proto(raw.variable) if raw is not None and raw.HasField("variable") else None
        return self._variable

    def __repr__(self) -> str:
        return (
            f"Update(type={str(self.type)!r}, name={self.name!r}, value={self.value!r}, "
            f"old_value={self.old_value!r}, revision={self.revision})"
        )
