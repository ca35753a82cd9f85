"""The asyncio client: :class:`AsyncClient` and its :class:`AsyncSession`
handles, over ``grpc.aio``. The same methods as the sync
:class:`~varwatch.Client`, as coroutines; ``watch`` returns an async
iterator.

# Notes
Create the AsyncClient inside the event loop that uses it (``grpc.aio``
channels belong to one loop), e.g. ``async with AsyncClient(...) as c:``.
"""

from __future__ import annotations

import asyncio
import builtins
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Mapping, Optional, Union

import grpc

from . import _requests as rq
from ._proto.varwatch.v1 import bridge_pb2 as pb
from ._proto.varwatch.v1 import bridge_pb2_grpc as pb_grpc
from ._channel import channel_setup, resolve_target
from ._consistency import Positions, position_of, read_metadata, watch_metadata
from ._amux import AsyncMux
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
)
from .client import _opt_dt, _variables_arg
from .values import VariableType
from .watch import AsyncWatch

if TYPE_CHECKING:
    from .writer import AsyncWriter

__all__ = ["AsyncClient", "AsyncSession"]


class AsyncClient:
    """An asyncio varwatch client over one ``grpc.aio`` channel.

    Args:
        target: ``host:port`` of ``varwatch serve`` (None: $VARWATCH_SERVER,
            else ``127.0.0.1:50051``).
        channel: an existing ``grpc.aio.Channel`` to use instead (not closed by
            :meth:`close`).
        timeout, credentials, tls, root_certificates, private_key,
        certificate_chain, server_name, token, channel_options, metadata:
            as for :class:`varwatch.Client`.

    On a node of a cluster, write results carry ``position``, the client
    :attr:`last_position`, and reads and watches take ``position=`` and
    ``local=True``, as for :class:`varwatch.Client`.

    Use as an async context manager, or await :meth:`close`.
    """

    def __init__(
        self,
        target: Optional[str] = None,
        *,
        channel: Optional[grpc.aio.Channel] = None,
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
            self._channel = grpc.aio.secure_channel(target, credentials, options=opts)
            self._owns_channel = True
        else:
            self._channel = grpc.aio.insecure_channel(target, options=opts)
            self._owns_channel = True
        self._stub = pb_grpc.UnifiedBridgeStub(self._channel)
        self._md = md
        self._types = rq.TypeCache()
        self._positions = Positions()
        # The one Watch stream its watches share (see _mux.py).
        self._mux = AsyncMux(self._stub.Watch, md)
        # Open watches, closed with the client (grpc.aio would leave their
        # reads hanging on a closed channel).
        self._watches: "weakref.WeakSet[AsyncWatch]" = weakref.WeakSet()

    # ---- plumbing ----

    async def _unary(self, method: Callable[..., Any], request: Any, *, position: Optional[int] = None,
                     local: bool = False) -> Any:
        md = read_metadata(self._md, position, local)
        try:
            return await method(request, timeout=self.timeout, metadata=md)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    async def _write(self, method: Callable[..., Any], request: Any) -> tuple[Any, Optional[int]]:
        """A write call: its response and the log position it applied at
        (None from a single server), noted in last_position."""
        try:
            call = method(request, timeout=self.timeout, metadata=self._md)
            r = await call
            pos = position_of(await call.initial_metadata())
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e
        self._positions.note(pos)
        return r, pos

    @property
    def last_position(self) -> Optional[int]:
        """The highest log position a write of this client applied at, on a
        node of a cluster (None before the first, and from a single
        server), as for :attr:`varwatch.Client.last_position`."""
        return self._positions.last

    async def close(self) -> None:
        """Ends open watches (their iteration stops) and closes the channel
        (if the client created it); the shared watch stream's tasks have
        ended when this returns."""
        for w in builtins.list(self._watches):
            w.close()
        await self._mux.aclose()
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Waits until the channel is connected; raises Unavailable after
        timeout seconds."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            raise Unavailable(f"{self.target} not reachable within {timeout}s") from None

    # ---- server and sessions ----

    async def ping(self, message: str = "") -> Pong:
        """Echoes message with the server time."""
        r = await self._unary(self._stub.Ping, pb.PingRequest(message=message))
        return Pong(r.message, _opt_dt(r, "server_time"))

    async def create_session(
        self,
        session_id: Optional[str] = None,
        *,
        metadata: Optional[Mapping[str, str]] = None,
        ttl: Optional[rq.Seconds] = None,
    ) -> "AsyncSession":
        """Creates a session (id generated when None), or returns the
        existing one with that id (``session.created`` is then False and
        metadata/ttl are ignored). ttl: seconds or timedelta (None: the
        server default, 1h). Use the result as a context manager to clean
        the session up on exit."""
        r, pos = await self._write(self._stub.InitializeSession, rq.init_session_request(session_id, metadata, ttl))
        info = SessionInfo.from_proto(r.session)
        return AsyncSession(self, info.id, info=info, created=r.created, position=pos)

    def session(self, session_id: str) -> "AsyncSession":
        """A handle on an existing session, without a call."""
        return AsyncSession(self, session_id)

    async def get_session(self, session_id: str, *, position: Optional[int] = None,
                          local: bool = False) -> SessionInfo:
        """The session's info; SessionNotFound if it does not exist.
        position, local: as for :meth:`varwatch.Client.get_session`."""
        r = await self._unary(self._stub.GetSession, pb.GetSessionRequest(session_id=session_id),
                              position=position, local=local)
        return SessionInfo.from_proto(r.session)

    async def list_sessions(self, *, position: Optional[int] = None, local: bool = False) -> List[SessionInfo]:
        """Every session, sorted by id. position, local: as for
        :meth:`varwatch.Client.get_session`."""
        r = await self._unary(self._stub.ListSessions, pb.ListSessionsRequest(), position=position, local=local)
        return [SessionInfo.from_proto(s) for s in r.sessions]

    async def cleanup_session(self, session_id: str) -> int:
        """Deletes a session and its variables (its watchers get
        session_closed); returns how many variables were deleted."""
        r, _ = await self._write(self._stub.CleanupSession, pb.CleanupSessionRequest(session_id=session_id))
        self._types.forget_session(session_id)
        return int(r.variables_deleted)

    async def heartbeat(self, session_id: str) -> HeartbeatInfo:
        """Refreshes the session's TTL. An unknown session answers
        ``session_valid=False`` rather than raising."""
        r, _ = await self._write(self._stub.Heartbeat, pb.HeartbeatRequest(session_id=session_id))
        return HeartbeatInfo(r.session_valid, _opt_dt(r, "server_time"), _opt_dt(r, "expires_at"), r.incarnation)


class AsyncSession:
    """A session handle: the variable methods of one session.

    Attributes:
        id: the session id.
        info: the SessionInfo from create_session (None for a bare handle;
            see :meth:`refresh`).
        created: whether create_session created it (None for a bare handle).
        position: the log position create_session applied at, on a node
            of a cluster (else None).
    """

    def __init__(self, client: AsyncClient, session_id: str, *, info: Optional[SessionInfo] = None,
                 created: Optional[bool] = None, position: Optional[int] = None) -> None:
        self.client = client
        self.id = session_id
        self.info = info
        self.created = created
        self.position = position

    def __repr__(self) -> str:
        return f"Session({self.id!r})"

    async def __aenter__(self) -> "AsyncSession":
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.cleanup()
        except SessionNotFound:
            pass

    # ---- session ----

    async def refresh(self) -> SessionInfo:
        """Fetches the session's info (and stores it in ``info``)."""
        self.info = await self.client.get_session(self.id)
        return self.info

    async def heartbeat(self) -> HeartbeatInfo:
        """Refreshes the session's TTL."""
        return await self.client.heartbeat(self.id)

    async def cleanup(self) -> int:
        """Deletes the session and its variables; returns how many."""
        return await self.client.cleanup_session(self.id)

    # ---- variables ----

    async def register(
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
        r, pos = await self.client._write(self.client._stub.RegisterVariable, req)
        return self._remember(Variable.from_proto(r.variable, position=pos))

    async def get(self, identifier: str, *, position: Optional[int] = None, local: bool = False) -> Variable:
        """The variable with this id or name. position, local: as for
        :meth:`varwatch.Session.get`."""
        r = await self.client._unary(
            self.client._stub.GetVariable,
            pb.GetVariableRequest(session_id=self.id, variable_identifier=identifier),
            position=position, local=local,
        )
        return self._remember(Variable.from_proto(r.variable))

    async def get_many(self, identifiers: Iterable[str], *, position: Optional[int] = None,
                       local: bool = False) -> GetManyResult:
        """Several variables read at one revision; unknown identifiers are
        listed in ``missing`` rather than raising. position, local: as for
        :meth:`get`."""
        r = await self.client._unary(
            self.client._stub.GetVariables,
            pb.GetVariablesRequest(session_id=self.id, variable_identifiers=builtins.list(identifiers)),
            position=position, local=local,
        )
        found = [self._remember(Variable.from_proto(v)) for v in r.variables]
        return GetManyResult(found, builtins.list(r.missing), r.revision)

    async def set(
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
        typ, cached = await self._type_for(identifier, type)
        try:
            req = rq.set_request(self.id, identifier, typ, value, metadata, source, expected_version)
        except InvalidValue:
            if not cached:
                raise
            # The value does not fit the cached type: maybe the variable was
            # re-registered with another type since. Ask once.
            self.client._types.forget(self.id, identifier)
            typ = (await self.get(identifier)).type
            req = rq.set_request(self.id, identifier, typ, value, metadata, source, expected_version)
            cached = False
        try:
            r, pos = await self.client._write(self.client._stub.SetVariable, req)
        except InvalidValue as e:
            fixed = rq.wrong_type(e) if cached else None
            if fixed is None or fixed == typ:
                raise
            # The cached type was stale and the value fits the real one.
            self.client._types.forget(self.id, identifier)
            req = rq.set_request(self.id, identifier, fixed, value, metadata, source, expected_version)
            r, pos = await self.client._write(self.client._stub.SetVariable, req)
        return self._remember(Variable.from_proto(r.variable, position=pos))

    async def set_many(self, updates: rq.SetUpdates, *, atomic: bool = False) -> SetManyResult:
        """Sets several variables in one call.

        updates: ``{identifier: value}``, ``(identifier, value)`` pairs or
        :class:`SetItem` objects. ``atomic=True``: all apply at one revision
        or none does, and the first failure is raised. Otherwise each
        applies on its own and the result says how each went."""
        items = rq.normalize_updates(updates)
        await self._resolve_types(items)
        req = self._set_many_request(items, atomic)
        try:
            r, pos = await self.client._write(self.client._stub.SetVariables, req)
        except InvalidValue as e:
            if not atomic or not await self._refresh_stale_types(items, [e]):
                raise
            r, pos = await self.client._write(self.client._stub.SetVariables, self._set_many_request(items, atomic))
        result = self._set_many_result(r, pos)
        if not atomic:
            stale = [i for i, res in enumerate(result.results)
                     if isinstance(res.error, InvalidValue) and rq.wrong_type(res.error)]
            if stale and await self._refresh_stale_types([items[i] for i in stale], None):
                retry = [items[i] for i in stale]
                r2, pos2 = await self.client._write(self.client._stub.SetVariables, self._set_many_request(retry, False))
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

    async def list(self, pattern: str = "", *, position: Optional[int] = None, local: bool = False) -> VariableList:
        """Variables whose names match the glob (``*``, ``?``, ``[...]``,
        anchored; empty: all), sorted by name, with the revision read at.
        position, local: as for :meth:`get`."""
        r = await self.client._unary(
            self.client._stub.ListVariables, pb.ListVariablesRequest(session_id=self.id, pattern=pattern),
            position=position, local=local,
        )
        return VariableList([self._remember(Variable.from_proto(v)) for v in r.variables], r.revision)

    async def delete(self, identifier: str) -> int:
        """Deletes a variable (watchers get variable_deleted); returns the
        deletion's revision."""
        r, _ = await self.client._write(
            self.client._stub.DeleteVariable,
            pb.DeleteVariableRequest(session_id=self.id, variable_identifier=identifier),
        )
        self.client._types.forget(self.id, identifier)
        return int(r.revision)

    # ---- write stream ----

    def writer(self, *, window: int = 32, max_batch: int = 1000) -> "AsyncWriter":
        """Opens an ordered write stream to this session (see
        :class:`varwatch.AsyncWriter`): ``async with session.writer() as w:
        p = await w.set("loss", 0.5)``; leaving the block flushes and
        closes it."""
        from .writer import AsyncWriter as cls

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
    ) -> AsyncWatch:
        """Watches variables: returns an async iterator of
        :class:`~varwatch.Update`, to await or enter: ``w = await
        session.watch(...)`` and ``async with session.watch(...) as w:``
        return once the server has registered the watch, so every change
        made after that is seen. No I/O happens in the call itself; an
        iterator never awaited opens its stream on the first ``__anext__``.

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
        position, local: as for :meth:`varwatch.Session.watch` (either
        gives the watch a dedicated stream).

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
        w = AsyncWatch(self.client._stub, opts, metadata=md, mux=self.client._mux)
        self.client._watches.add(w)
        return w

    # ---- types ----

    def _remember(self, var: Variable) -> Variable:
        self.client._types.remember(self.id, var)
        return var

    async def _type_for(self, identifier: str, explicit: Optional[Union[VariableType, str]]) -> tuple[VariableType, bool]:
        """The type to encode a value with, and whether it came from the
        cache (and so may be stale)."""
        if explicit is not None:
            return VariableType.parse(explicit), False
        t = self.client._types.get(self.id, identifier)
        if t is None:
            return (await self.get(identifier)).type, False
        return t, True

    def _item_type(self, it: SetItem) -> VariableType:
        if it.type is not None:
            return VariableType.parse(it.type)
        t = self.client._types.get(self.id, it.identifier)
        return t if t is not None else rq.guess_type(it.value)

    async def _resolve_types(self, items: List[SetItem]) -> None:
        unknown = [it.identifier for it in items
                   if it.type is None and self.client._types.get(self.id, it.identifier) is None]
        if unknown:
            await self.get_many(dict.fromkeys(unknown))  # remembers what exists

    async def _refresh_stale_types(self, items: List[SetItem], errors: Optional[List[VarwatchError]]) -> bool:
        """Refetches the types of items; reports whether any cached type was
        wrong (so a retry can succeed)."""
        before = {it.identifier: self.client._types.get(self.id, it.identifier) for it in items if it.type is None}
        if not before or (errors is not None and not any(rq.wrong_type(e) for e in errors)):
            return False
        for ident in before:
            self.client._types.forget(self.id, ident)
        await self.get_many(builtins.list(before))
        return any(self.client._types.get(self.id, ident) != t for ident, t in before.items())

