"""The synchronous client: :class:`Client` and its :class:`Session` handles.

A Client owns one gRPC channel; a Session is a light handle (client plus
session id) carrying the variable methods. Every method answers native
Python values or raises a typed :mod:`varwatch.errors` exception.

# Notes
A Client and its Sessions may be shared between threads (grpc channels
are thread-safe); a :class:`~varwatch.watch.Watch` is iterated by one
thread.
"""

from __future__ import annotations

import builtins
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Mapping, Optional, TypeVar, Union

import grpc

from . import _requests as rq
from ._proto.varwatch.v1 import bridge_pb2 as pb
from ._proto.varwatch.v1 import bridge_pb2_grpc as pb_grpc
from ._channel import DEFAULT_TARGET, channel_setup, resolve_target
from ._consistency import Positions, position_of, read_metadata, watch_metadata
from ._mux import Mux
from ._resume import WatchOptions
from .errors import InvalidValue, SessionNotFound, Unavailable, VarwatchError, from_rpc_error
from .models import (
    GetManyResult,
    HeartbeatInfo,
    Pong,
    SessionInfo,
    SetItem,
    SetItemResult,
    SetManyResult,
    Variable,
    VariableList,
    ts_to_datetime,
)
from .values import VariableType
from .watch import Watch

if TYPE_CHECKING:
    from .writer import Writer

__all__ = ["Client", "Session", "DEFAULT_TARGET"]


T = TypeVar("T")


def _opt_dt(msg: Any, name: str) -> Any:
    return ts_to_datetime(getattr(msg, name)) if msg.HasField(name) else None


def _variables_arg(variables: Union[str, Iterable[str]]) -> tuple[str, ...]:
    if isinstance(variables, str):
        return (variables,)
    return tuple(variables)


# How long close waits for the shared watch stream's reader thread, which
# ends as soon as grpc hands it the cancellation (a daemon thread, so a
# wedged one would not keep the process alive either).
CLOSE_TIMEOUT = 10.0


class Client:
    """A synchronous varwatch client over one gRPC channel.

    Args:
        target: ``host:port`` of ``varwatch serve`` (None: $VARWATCH_SERVER,
            else ``127.0.0.1:50051``, as for the ``varwatch`` command line).
        channel: an existing ``grpc.Channel`` to use instead (not closed by
            :meth:`close`).
        timeout: per-call deadline in seconds for unary calls (None: none).
            Watches have no deadline.
        credentials: channel credentials for TLS (default: plaintext), or
            use the TLS arguments below.
        tls: connect with TLS, checking the server against the system's
            roots unless ``root_certificates`` is given (implied by the
            three PEM arguments).
        root_certificates: PEM bytes of the CA certificates the server's
            must chain to.
        private_key, certificate_chain: PEM bytes of the client's key and
            certificate, for servers that require one (mutual TLS).
        server_name: the name to check in the server's certificate instead
            of the target's host.
        token: bearer token sent on every call (metadata
            ``authorization: Bearer <token>``), for ``serve
            --auth-token-file``. It is sent over plaintext too if the
            channel is plaintext: use TLS on an untrusted network.
        channel_options: extra ``grpc`` channel options. Keepalive defaults
            to a ping after 30s of silence (10s timeout), which varwatch
            serve accepts; options given here win.
        metadata: call metadata sent with every call.

    On a node of a cluster (``varwatch serve --cluster``), a write's
    result carries the log position it applied at (``position`` on the
    Variable of ``set`` and ``register``, on set_many's result and on the
    Session of create_session; :attr:`last_position` is the highest any
    write of this client got), and reads and watches take ``position=``
    (wait until the node has applied the log that far) and ``local=True``
    (answer from what the node has applied: possibly stale, but no round
    trip to the log, and it works while the log is unreachable). The
    default read is linearizable: it sees every write acknowledged before
    it began, on any node. A single server gives no positions (None) and
    ignores both.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        target: Optional[str] = None,
        *,
        channel: Optional[grpc.Channel] = None,
        timeout: Optional[float] = 30.0,
        credentials: Optional[grpc.ChannelCredentials] = None,
        tls: bool = False,
        root_certificates: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        certificate_chain: Optional[bytes] = None,
        server_name: Optional[str] = None,
        token: Optional[str] = None,
        channel_options: Optional[Iterable[tuple[str, Any]]] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.target = target = resolve_target(target)
        self.timeout = timeout
        credentials, opts, md = channel_setup(
            credentials=credentials, tls=tls, root_certificates=root_certificates, private_key=private_key,
            certificate_chain=certificate_chain, server_name=server_name, token=token,
            channel_options=channel_options, metadata=metadata)
        if channel is not None:
            self._channel = channel
            self._owns_channel = False
        elif credentials is not None:
            self._channel = grpc.secure_channel(target, credentials, options=opts)
            self._owns_channel = True
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
            self._owns_channel = True
        self._stub = pb_grpc.UnifiedBridgeStub(self._channel)
        self._md = md
        self._types = rq.TypeCache()
        self._positions = Positions()
        # The one Watch stream its watches share (see _mux.py).
        self._mux = Mux(self._stub.Watch, md)
        # Open watches, closed with the client (grpc.aio would leave their
        # reads hanging on a closed channel).
        self._watches: "weakref.WeakSet[Watch]" = weakref.WeakSet()

    # ---- plumbing ----

    def _unary(self, method: Callable[..., T], request: Any, *, position: Optional[int] = None,
               local: bool = False) -> T:
        md = read_metadata(self._md, position, local)
        try:
            return method(request, timeout=self.timeout, metadata=md)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    def _write(self, method: Callable[..., Any], request: Any) -> tuple[Any, Optional[int]]:
        """A write call: its response and the log position it applied at
        (None from a single server), noted in last_position."""
        try:
            r, call = method.with_call(request, timeout=self.timeout, metadata=self._md)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e
        pos = position_of(call.initial_metadata())
        self._positions.note(pos)
        return r, pos

    @property
    def last_position(self) -> Optional[int]:
        """The highest log position a write of this client applied at, on a
        node of a cluster (None before the first, and from a single
        server): pass it as ``position=`` to a read or watch on another
        node to see every write this client made."""
        return self._positions.last

    def close(self) -> None:
        """Ends open watches (their iteration stops) and closes the channel
        (if the client created it); the shared watch stream's reader thread
        has ended when this returns."""
        for w in builtins.list(self._watches):
            w.close()
        self._mux.close(timeout=CLOSE_TIMEOUT)
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Blocks until the channel is connected; raises Unavailable after
        timeout seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(f"{self.target} not reachable within {timeout}s") from None

    # ---- server and sessions ----

    def ping(self, message: str = "") -> Pong:
        """Echoes message with the server time."""
        r = self._unary(self._stub.Ping, pb.PingRequest(message=message))
        return Pong(r.message, _opt_dt(r, "server_time"))

    def create_session(
        self,
        session_id: Optional[str] = None,
        *,
        metadata: Optional[Mapping[str, str]] = None,
        ttl: Optional[rq.Seconds] = None,
    ) -> "Session":
        """Creates a session (id generated when None), or returns the
        existing one with that id (``session.created`` is then False and
        metadata/ttl are ignored). ttl: seconds or timedelta (None: the
        server default, 1h). Use the result as a context manager to clean
        the session up on exit."""
        r, pos = self._write(self._stub.InitializeSession, rq.init_session_request(session_id, metadata, ttl))
        info = SessionInfo.from_proto(r.session)
        return Session(self, info.id, info=info, created=r.created, position=pos)

    def session(self, session_id: str) -> "Session":
        """A handle on an existing session, without a call."""
        return Session(self, session_id)

    def get_session(self, session_id: str, *, position: Optional[int] = None, local: bool = False) -> SessionInfo:
        """The session's info; SessionNotFound if it does not exist.
        position, local: see the class doc (a node of a cluster)."""
        r = self._unary(self._stub.GetSession, pb.GetSessionRequest(session_id=session_id),
                        position=position, local=local)
        return SessionInfo.from_proto(r.session)

    def list_sessions(self, *, position: Optional[int] = None, local: bool = False) -> List[SessionInfo]:
        """Every session, sorted by id. position, local: see the class doc."""
        r = self._unary(self._stub.ListSessions, pb.ListSessionsRequest(), position=position, local=local)
        return [SessionInfo.from_proto(s) for s in r.sessions]

    def cleanup_session(self, session_id: str) -> int:
        """Deletes a session and its variables (its watchers get
        session_closed); returns how many variables were deleted."""
        r, _ = self._write(self._stub.CleanupSession, pb.CleanupSessionRequest(session_id=session_id))
        self._types.forget_session(session_id)
        return int(r.variables_deleted)

    def heartbeat(self, session_id: str) -> HeartbeatInfo:
        """Refreshes the session's TTL. An unknown session answers
        ``session_valid=False`` rather than raising."""
        r, _ = self._write(self._stub.Heartbeat, pb.HeartbeatRequest(session_id=session_id))
        return HeartbeatInfo(r.session_valid, _opt_dt(r, "server_time"), _opt_dt(r, "expires_at"), r.incarnation)


class Session:
    """A session handle: the variable methods of one session.

    Attributes:
        id: the session id.
        info: the SessionInfo from create_session (None for a bare handle;
            see :meth:`refresh`).
        created: whether create_session created it (None for a bare handle).
        position: the log position create_session applied at, on a node
            of a cluster (else None).
    """

    def __init__(self, client: Client, session_id: str, *, info: Optional[SessionInfo] = None,
                 created: Optional[bool] = None, position: Optional[int] = None) -> None:
        self.client = client
        self.id = session_id
        self.info = info
        self.created = created
        self.position = position

    def __repr__(self) -> str:
        return f"Session({self.id!r})"

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.cleanup()
        except SessionNotFound:
            pass

    # ---- session ----

    def refresh(self) -> SessionInfo:
        """Fetches the session's info (and stores it in ``info``)."""
        self.info = self.client.get_session(self.id)
        return self.info

    def heartbeat(self) -> HeartbeatInfo:
        """Refreshes the session's TTL."""
        return self.client.heartbeat(self.id)

    def cleanup(self) -> int:
        """Deletes the session and its variables; returns how many."""
        return self.client.cleanup_session(self.id)

    # ---- variables ----

    def register(
        self,
        name: str,
        type: Union[VariableType, str],
        value: Any,
        *,
        metadata: Optional[Mapping[str, str]] = None,
        min: Optional[float] = None,
        max: Optional[float] = None,
        min_length: Optional[int] = None,
        max_length: Optional[int] = None,
        pattern: Optional[str] = None,
        choices: Optional[Iterable[str]] = None,
        allowed_modules: Optional[Iterable[str]] = None,
        dimensions: Optional[int] = None,
        shape: Optional[Iterable[int]] = None,
    ) -> Variable:
        """Registers a variable of the given type with its initial value and
        constraints (min/max are inclusive; for integer variables they are
        integer bounds). AlreadyExists for a taken name; InvalidValue for a
        value or constraint that does not fit the type."""
        req, _ = rq.register_request(
            self.id, name, type, value, metadata,
            dict(min=min, max=max, min_length=min_length, max_length=max_length, pattern=pattern,
                 choices=choices, allowed_modules=allowed_modules, dimensions=dimensions, shape=shape),
        )
        r, pos = self.client._write(self.client._stub.RegisterVariable, req)
        return self._remember(Variable.from_proto(r.variable, position=pos))

    def get(self, identifier: str, *, position: Optional[int] = None, local: bool = False) -> Variable:
        """The variable with this id or name. position, local: on a node
        of a cluster, wait until it has applied the log that far, or read
        what it has applied (see :class:`Client`)."""
        r = self.client._unary(
            self.client._stub.GetVariable,
            pb.GetVariableRequest(session_id=self.id, variable_identifier=identifier),
            position=position, local=local,
        )
        return self._remember(Variable.from_proto(r.variable))

    def get_many(self, identifiers: Iterable[str], *, position: Optional[int] = None,
                 local: bool = False) -> GetManyResult:
        """Several variables read at one revision; unknown identifiers are
        listed in ``missing`` rather than raising. position, local: as for
        :meth:`get`."""
        r = self.client._unary(
            self.client._stub.GetVariables,
            pb.GetVariablesRequest(session_id=self.id, variable_identifiers=builtins.list(identifiers)),
            position=position, local=local,
        )
        found = [self._remember(Variable.from_proto(v)) for v in r.variables]
        return GetManyResult(found, builtins.list(r.missing), r.revision)

    def set(
        self,
        identifier: str,
        value: Any,
        *,
        metadata: Optional[Mapping[str, str]] = None,
        source: str = "",
        expected_version: Optional[int] = None,
        type: Optional[Union[VariableType, str]] = None,
    ) -> Variable:
        """Sets a variable to a native value; returns its new state (its
        ``mod_revision`` is the change's revision).

        The value is encoded for the variable's type, which the client
        learns from any variable it has seen (or asks for once); pass
        ``type=`` to skip that. ``expected_version``: apply only if the
        variable's version equals it, else VersionConflict."""
        typ, cached = self._type_for(identifier, type)
        try:
            req = rq.set_request(self.id, identifier, typ, value, metadata, source, expected_version)
        except InvalidValue:
            if not cached:
                raise
            # The value does not fit the cached type: maybe the variable was
            # re-registered with another type since. Ask once.
            self.client._types.forget(self.id, identifier)
            typ = self.get(identifier).type
            req = rq.set_request(self.id, identifier, typ, value, metadata, source, expected_version)
            cached = False
        try:
            r, pos = self.client._write(self.client._stub.SetVariable, req)
        except InvalidValue as e:
            fixed = rq.wrong_type(e) if cached else None
            if fixed is None or fixed == typ:
                raise
            # The cached type was stale and the value fits the real one.
            self.client._types.forget(self.id, identifier)
            req = rq.set_request(self.id, identifier, fixed, value, metadata, source, expected_version)
            r, pos = self.client._write(self.client._stub.SetVariable, req)
        return self._remember(Variable.from_proto(r.variable, position=pos))

    def set_many(self, updates: rq.SetUpdates, *, atomic: bool = False) -> SetManyResult:
        """Sets several variables in one call.

        updates: ``{identifier: value}``, ``(identifier, value)`` pairs or
        :class:`SetItem` objects. ``atomic=True``: all apply at one revision
        or none does, and the first failure is raised. Otherwise each
        applies on its own and the result says how each went."""
        items = rq.normalize_updates(updates)
        self._resolve_types(items)
        req = self._set_many_request(items, atomic)
        try:
            r, pos = self.client._write(self.client._stub.SetVariables, req)
        except InvalidValue as e:
            if not atomic or not self._refresh_stale_types(items, [e]):
                raise
            r, pos = self.client._write(self.client._stub.SetVariables, self._set_many_request(items, atomic))
        result = self._set_many_result(r, pos)
        if not atomic:
            stale = [i for i, res in enumerate(result.results)
                     if isinstance(res.error, InvalidValue) and rq.wrong_type(res.error)]
            if stale and self._refresh_stale_types([items[i] for i in stale], None):
                retry = [items[i] for i in stale]
                r2, pos2 = self.client._write(self.client._stub.SetVariables, self._set_many_request(retry, False))
                again = self._set_many_result(r2, pos2)
                for i, res in zip(stale, again.results):
                    result.results[i] = res
                result.revision = again.revision
                result.position = pos2  # None only from a single server, as pos
        return result

    def _set_many_request(self, items: List[SetItem], atomic: bool) -> Any:
        req = pb.SetVariablesRequest(session_id=self.id, atomic=atomic)
        for it in items:
            typ = self._item_type(it)
            req.updates.append(rq.set_request(self.id, it.identifier, typ, it.value, it.metadata,
                                              it.source, it.expected_version))
        return req

    def _set_many_result(self, r: Any, position: Optional[int]) -> SetManyResult:
        results = [SetItemResult.from_proto(x) for x in r.results]
        for res in results:
            if res.variable is not None:
                self._remember(res.variable)
        return SetManyResult(results, r.revision, position)

    def list(self, pattern: str = "", *, position: Optional[int] = None, local: bool = False) -> VariableList:
        """Variables whose names match the glob (``*``, ``?``, ``[...]``,
        anchored; empty: all), sorted by name, with the revision read at.
        position, local: as for :meth:`get`."""
        r = self.client._unary(
            self.client._stub.ListVariables, pb.ListVariablesRequest(session_id=self.id, pattern=pattern),
            position=position, local=local,
        )
        return VariableList([self._remember(Variable.from_proto(v)) for v in r.variables], r.revision)

    def delete(self, identifier: str) -> int:
        """Deletes a variable (watchers get variable_deleted); returns the
        deletion's revision."""
        r, _ = self.client._write(
            self.client._stub.DeleteVariable,
            pb.DeleteVariableRequest(session_id=self.id, variable_identifier=identifier),
        )
        self.client._types.forget(self.id, identifier)
        return int(r.revision)

    # ---- write stream ----

    def writer(self, *, window: int = 32, max_batch: int = 1000) -> "Writer":
        """Opens an ordered write stream to this session (see
        :class:`varwatch.Writer`): ``with session.writer() as w:
        w.set("loss", 0.5)``; leaving the block flushes and closes it."""
        from .writer import Writer as cls

        return cls(self, window=window, max_batch=max_batch)

    # ---- watching ----

    def watch(
        self,
        variables: Union[str, Iterable[str]] = (),
        *,
        pattern: str = "",
        include_initial_values: bool = False,
        start_revision: Optional[int] = None,
        incarnation: Optional[str] = None,
        heartbeat_interval: Optional[rq.Seconds] = None,
        batched: Optional[bool] = None,
        max_batch_size: int = 0,
        max_batch_delay: Optional[rq.Seconds] = None,
        coalesce: bool = False,
        filters: Optional[Iterable[Any]] = None,
        options: Optional[Mapping[str, str]] = None,
        resume: bool = True,
        max_retries: Optional[int] = 10,
        initial_backoff: float = 0.05,
        max_backoff: float = 5.0,
        resnapshot_on_compacted: bool = False,
        dedicated: bool = False,
        view: str = "full",
        position: Optional[int] = None,
        local: bool = False,
    ) -> Watch:
        """Watches variables: returns an iterator of :class:`~varwatch.Update`
        once the server has registered the watch.

        variables: ids or names (a str is one name); with pattern (a glob
        that also covers variables registered later). Neither: the whole
        session. include_initial_values: first one initial_value per
        variable, then initial_values_complete. start_revision: instead,
        replay every change after it (e.g. a saved ``watch.revision``),
        naming the session incarnation it belongs to (a saved
        ``watch.incarnation``) so that a session created again since is
        refused with IncarnationChanged instead of replayed.
        batched: use the batched RPC (updates are still handed out one by
        one); None: batched when max_batch_size (updates per message) or
        max_batch_delay (how long the server may wait to fill one) is given.
        coalesce: when behind, get only the latest value per variable (see
        coalesced_count).
        filters: server-side filter chain, as names or (name, params).
        dedicated: give the watch a stream of its own (WatchVariables)
        instead of a place on the client's one shared Watch stream (the
        default: every watch of the client is multiplexed on it, opened with
        the first and closed with the last); batched=True implies it.
        view: "full" (the default) or "value": updates whose variable
        carries only id, name, type, value, version and mod revision (no
        constraints, metadata or creation fields), cheaper to send and
        decode; shared stream only.
        position, local: on a node of a cluster, register the watch (and
        every resume of it) once the node has applied the log that far,
        or without asking the log where it ends (see :class:`Client`; a
        local watch opens and resumes while the log is unreachable). Either
        gives the watch a dedicated stream: they are metadata of a stream,
        and the shared one is every watch's.

        Resuming: when the stream breaks (connection lost, server shutting
        down, slow consumer cut off), the watch reopens from the last
        revision handed out, after ``initial_backoff * 2**n`` seconds (capped
        at max_backoff, with jitter), at most max_retries times in a row
        without progress (None: forever), then raises the last error.
        resume=False raises at the first break instead. A resume the
        server's history can no longer serve raises Compacted, and one the
        session no longer can (it was created again: a new incarnation)
        raises IncarnationChanged, unless resnapshot_on_compacted, which
        starts over with fresh initial values in both cases.
        Heartbeats are hidden. A session_closed update is the last one.
        """
        md, own_stream = watch_metadata(self.client._md, position, local)
        opts = WatchOptions(
            session_id=self.id,
            variables=_variables_arg(variables),
            pattern=pattern,
            include_initial_values=include_initial_values,
            start_revision=start_revision,
            incarnation=incarnation,
            heartbeat_interval=heartbeat_interval,
            batched=batched,
            max_batch_size=max_batch_size,
            max_batch_delay=max_batch_delay,
            coalesce=coalesce,
            filters=filters,
            options=options,
            resume=resume,
            max_retries=max_retries,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            resnapshot_on_compacted=resnapshot_on_compacted,
            dedicated=dedicated or own_stream,
            view=view,
        )
        w = Watch(self.client._stub, opts, metadata=md, mux=self.client._mux)
        self.client._watches.add(w)
        return w.start()

    # ---- types ----

    def _remember(self, var: Variable) -> Variable:
        self.client._types.remember(self.id, var)
        return var

    def _type_for(self, identifier: str, explicit: Optional[Union[VariableType, str]]) -> tuple[VariableType, bool]:
        """The type to encode a value with, and whether it came from the
        cache (and so may be stale)."""
        if explicit is not None:
            return VariableType.parse(explicit), False
        t = self.client._types.get(self.id, identifier)
        if t is None:
            return self.get(identifier).type, False
        return t, True

    def _item_type(self, it: SetItem) -> VariableType:
        if it.type is not None:
            return VariableType.parse(it.type)
        t = self.client._types.get(self.id, it.identifier)
        return t if t is not None else rq.guess_type(it.value)

    def _resolve_types(self, items: List[SetItem]) -> None:
        unknown = [it.identifier for it in items
                   if it.type is None and self.client._types.get(self.id, it.identifier) is None]
        if unknown:
            self.get_many(dict.fromkeys(unknown))  # remembers what exists

    def _refresh_stale_types(self, items: List[SetItem], errors: Optional[List[VarwatchError]]) -> bool:
        """Refetches the types of items; reports whether any cached type was
        wrong (so a retry can succeed)."""
        before = {it.identifier: self.client._types.get(self.id, it.identifier) for it in items if it.type is None}
        if not before or (errors is not None and not any(rq.wrong_type(e) for e in errors)):
            return False
        for ident in before:
            self.client._types.forget(self.id, ident)
        self.get_many(builtins.list(before))
        return any(self.client._types.get(self.id, ident) != t for ident, t in before.items())

