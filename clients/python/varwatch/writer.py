"""Ordered write streams: :class:`Writer` (threads) and :class:`AsyncWriter`
(asyncio), from ``session.writer()``.

A writer queues each write and returns at once with a pending result;
writes go to the server in order, many per request, over one
``WriteVariables`` stream, and are answered in that order. A write that
fails gets its typed exception on its pending result and the others go
on; a stream that breaks fails every write it had not answered with
:class:`WriteStreamError` (what the server applied is then a prefix of
what was sent, holding every answered write).

# Notes
At most ``window`` requests are unanswered at a time and at most
``max_batch`` writes wait to be sent: past that, ``set`` waits (the
producer is held back rather than buffered without bound). Requests ask
for small acks: a result is the variable's id and version and the
revision of the write.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass
from typing import Any, Callable, Deque, List, Mapping, Optional, Union

import grpc

from . import _requests as rq
from ._consistency import Positions
from ._details import ErrorInfo
from ._proto.varwatch.v1 import bridge_pb2 as pb
from .errors import VariableNotFound, VarwatchError, from_rpc_error, from_status
from .values import VariableType

__all__ = ["Writer", "AsyncWriter", "WriteAck", "PendingWrite", "WriteStreamError", "WriterClosed"]

# How many requests may be in flight before a request that is not full
# waits to fill: a few keep the server busy, and past them a write waits
# at most one round trip while its request fills (every request costs the
# server a decode, an engine call and an answer).
EAGER_REQUESTS = 2


@dataclass(frozen=True)
class WriteAck:
    """How a write applied: its variable's id and version after it, and the
    session revision it was applied at. ``position``, from a node of a
    cluster, is a log position at or after the write's: pass it as
    ``position=`` to a read or watch on another node to see the write
    there (None from one server)."""

    variable_id: str
    version: int
    revision: int
    position: Optional[int] = None


class WriteStreamError(VarwatchError):
    """The write stream ended before the write was answered. ``cause`` is
    the stream's typed error (for instance :class:`SessionNotFound`)."""

    def __init__(self, cause: VarwatchError) -> None:
        super().__init__(f"write stream ended: {cause}", cause.code)
        self.cause = cause
        self.reason, self.reason_metadata = cause.reason, cause.reason_metadata


class WriterClosed(VarwatchError):
    """A write on a writer that was closed."""

    default_code = grpc.StatusCode.CANCELLED


class _Group:
    """The writes of one request, answered by one response."""

    __slots__ = ("requests", "pendings", "event", "future")

    def __init__(self, future: Optional[asyncio.Future] = None) -> None:
        self.requests: List[Any] = []
        self.pendings: List["PendingWrite"] = []
        self.event = threading.Event()
        self.future = future  # AsyncWriter: set when answered


class PendingWrite:
    """The result of one write, known once the server answered it."""

    __slots__ = ("_group", "_ack", "_error")

    def __init__(self, group: _Group) -> None:
        self._group = group
        self._ack: Optional[WriteAck] = None
        self._error: Optional[BaseException] = None

    def done(self) -> bool:
        """Whether the result is known."""
        return self._group.event.is_set()

    def result(self, timeout: Optional[float] = None) -> WriteAck:
        """Waits for the result: the WriteAck, or raises the write's typed
        error (or WriteStreamError). ``timeout``: seconds, else TimeoutError."""
        if not self._group.event.wait(timeout):
            raise TimeoutError("the write was not answered in time")
        if self._error is not None:
            raise self._error
        assert self._ack is not None
        return self._ack

    def __await__(self) -> Any:
        """``await pending`` (AsyncWriter): the WriteAck, or raises."""
        fut = self._group.future
        if fut is None:
            raise TypeError("await a write of an AsyncWriter; use result() for a Writer")
        yield from asyncio.shield(fut).__await__()
        return self.result(0)


def _failed(err: BaseException, future: Optional[asyncio.Future] = None) -> PendingWrite:
    g = _Group(future)
    p = PendingWrite(g)
    p._error = err
    g.event.set()
    if future is not None and not future.done():
        future.set_result(None)
    return p


def _item_error(r: Any) -> VarwatchError:
    info = ErrorInfo(r.error_reason, "varwatch.v1", dict(r.error_metadata)) if r.error_reason else None
    return from_status(r.error_code, r.error, info)


def _resolve(group: _Group, resp: Any) -> None:
    """Gives each write of group its result from resp: small acks (packed
    lists; results hold only the failures, by index) or one result each."""
    pendings = group.pendings
    position = resp.log_position or None
    if len(resp.revisions) == len(pendings) and len(resp.variable_ids) == len(pendings):
        for i, p in enumerate(pendings):
            p._ack = WriteAck(resp.variable_ids[i], resp.versions[i], resp.revisions[i], position)
        for r in resp.results:
            if 0 <= r.index < len(pendings):
                pendings[r.index]._ack, pendings[r.index]._error = None, _item_error(r)
        return
    for i, p in enumerate(pendings):
        if i >= len(resp.results):
            p._error = from_status(grpc.StatusCode.INTERNAL, "the server gave no result for this write")
            continue
        r = resp.results[i]
        if r.success:
            p._ack = WriteAck(r.variable_id, r.version, r.revision, position)
        else:
            p._error = _item_error(r)


class _Queue:
    """What both writers share: the groups waiting to be sent and those in
    flight, and the rules for when the next request goes. Guarded by the
    writer's lock (Writer) or owned by its event loop (AsyncWriter)."""

    def __init__(self, session_id: str, window: int, max_batch: int, positions: Positions) -> None:
        self.session_id = session_id
        self.positions = positions  # the client's: its last_position covers the writer's writes
        self.window = max(1, window)
        self.max_batch = max(1, max_batch)
        self.waiting: Deque[_Group] = collections.deque()
        self.inflight: Deque[_Group] = collections.deque()
        self.queued = 0  # writes in waiting
        self.last: Optional[PendingWrite] = None
        self.sent_any = False
        self.closing = False
        self.flushing = 0
        self.ended: Optional[VarwatchError] = None  # the stream's end
        self.clean = False  # ended by close, everything answered

    def add(self, req: Any, new_group: Callable[[], _Group]) -> PendingWrite:
        g = self.waiting[-1] if self.waiting and len(self.waiting[-1].requests) < self.max_batch else None
        if g is None:
            g = new_group()
            self.waiting.append(g)
        g.requests.append(req)
        p = PendingWrite(g)
        g.pendings.append(p)
        self.queued += 1
        self.last = p
        return p

    def sendable(self) -> bool:
        if not self.waiting or len(self.inflight) >= self.window:
            return False
        full = len(self.waiting) > 1 or len(self.waiting[0].requests) >= self.max_batch
        return full or self.closing or self.flushing > 0 or len(self.inflight) < EAGER_REQUESTS

    def take(self) -> Any:
        g = self.waiting.popleft()
        self.queued -= len(g.requests)
        self.inflight.append(g)
        req = pb.WriteVariablesRequest(updates=g.requests, small_acks=True)
        if not self.sent_any:
            req.session_id, self.sent_any = self.session_id, True
        return req

    def answered(self, resp: Any) -> _Group:
        g = self.inflight.popleft()
        _resolve(g, resp)
        self.positions.note(resp.log_position or None)
        return g

    def end(self, err: VarwatchError) -> List[_Group]:
        """Records the end; returns the groups whose writes fail with it."""
        self.ended = err
        groups = list(self.inflight) + list(self.waiting)
        self.inflight.clear()
        self.waiting.clear()
        self.queued = 0
        for g in groups:
            for p in g.pendings:
                p._error = WriteStreamError(err)
        return groups


def _request(session: Any, identifier: str, typ: VariableType, value: Any, create: bool,
             metadata: Optional[Mapping[str, str]], source: str, expected_version: Optional[int]) -> Any:
    req = rq.set_request("", identifier, typ, value, metadata, source, expected_version)
    if create:
        req.create_type = typ.proto
    return req


class Writer:
    """An ordered write stream to one session (see the module doc). Use it
    as a context manager: leaving the block flushes and closes it.

    Create it with ``session.writer(window=32, max_batch=1000)``. Safe for
    use from several threads; the writes of one thread keep their order.
    """

    def __init__(self, session: Any, *, window: int = 32, max_batch: int = 1000) -> None:
        self._session = session
        self._lock = threading.Condition()
        self._q = _Queue(session.id, window, max_batch, session.client._positions)
        client = session.client
        self._call = client._stub.WriteVariables(self._requests(), metadata=client._md)
        self._reader = threading.Thread(target=self._read, name="varwatch-writer", daemon=True)
        self._reader.start()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set(self, identifier: str, value: Any, *, type: Optional[Union[VariableType, str]] = None,
            create: bool = False, metadata: Optional[Mapping[str, str]] = None, source: str = "",
            expected_version: Optional[int] = None) -> PendingWrite:
        """Queues a write of a native value and returns its pending result.

        The value is encoded for the variable's type, learned as ``set``
        learns it (``type=`` skips that). ``create=True`` makes it an
        upsert: a variable of that name the session does not have is
        created with the type (given, or guessed from the value: bool,
        int, float, str, list) by this write. Waits while ``max_batch``
        writes already wait to be sent."""
        typ = self._type(identifier, type, create, value)
        req = _request(self._session, identifier, typ, value, create, metadata, source, expected_version)
        with self._lock:
            while self._q.ended is None and not self._q.closing and self._q.queued >= self._q.max_batch:
                self._lock.wait()
            if self._q.closing:
                return _failed(WriterClosed("the writer is closed"))
            if self._q.ended is not None:
                return _failed(WriteStreamError(self._q.ended))
            p = self._q.add(req, _Group)
            self._lock.notify_all()
            return p

    def _type(self, identifier: str, explicit: Any, create: bool, value: Any) -> VariableType:
        if explicit is not None:
            return VariableType.parse(explicit)
        try:
            return self._session._type_for(identifier, None)[0]
        except VariableNotFound:
            if not create:
                raise
            return rq.guess_type(value)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Waits until every write queued so far is answered. Raises the
        stream's WriteStreamError if it broke; the writes' own failures
        are on their pending results."""
        with self._lock:
            last = self._q.last
            self._q.flushing += 1
            self._lock.notify_all()
        try:
            if last is None:
                return
            if not last._group.event.wait(timeout):
                raise TimeoutError("the writes were not answered in time")
            if isinstance(last._error, WriteStreamError):
                raise last._error
        finally:
            with self._lock:
                self._q.flushing -= 1

    def close(self, timeout: Optional[float] = None) -> None:
        """Sends what waits, ends the stream and waits for its answers.
        Raises the stream's error if it did not end cleanly. Idempotent."""
        with self._lock:
            self._q.closing = True
            self._lock.notify_all()
        self._reader.join(timeout)
        with self._lock:
            err = self._q.ended
            clean = self._q.clean
        if err is not None and not clean:
            raise WriteStreamError(err)

    def _requests(self) -> Any:
        """The request iterator grpc reads from its own thread."""
        while True:
            with self._lock:
                while self._q.ended is None and not self._q.sendable() and not (self._q.closing and not self._q.waiting):
                    self._lock.wait()
                if self._q.ended is not None or not self._q.waiting:
                    return  # closing with everything sent: half-close
                req = self._q.take()
                self._lock.notify_all()
            yield req

    def _read(self) -> None:
        try:
            for resp in self._call:
                with self._lock:
                    if not self._q.inflight:
                        raise RuntimeError("the server answered a request that was not sent")
                    g = self._q.answered(resp)
                    self._lock.notify_all()
                g.event.set()
            with self._lock:
                self._q.clean = self._q.closing and not self._q.inflight and not self._q.waiting
                groups = self._q.end(WriterClosed("the write stream ended"))
                self._lock.notify_all()
        except grpc.RpcError as e:
            with self._lock:
                groups = self._q.end(from_rpc_error(e))
                self._lock.notify_all()
        for g in groups:
            g.event.set()


class AsyncWriter:
    """The asyncio write stream: ``async with session.writer() as w``, then
    ``p = await w.set(...)`` (waits only while ``max_batch`` writes wait to
    be sent) and ``ack = await p``. Leaving the block flushes and closes.
    Create it inside the event loop that uses it."""

    def __init__(self, session: Any, *, window: int = 32, max_batch: int = 1000) -> None:
        self._session = session
        self._q = _Queue(session.id, window, max_batch, session.client._positions)
        self._wake = asyncio.Event()  # something the sender or a set waits for changed
        client = session.client
        self._call = client._stub.WriteVariables(metadata=client._md)
        self._loop = asyncio.get_running_loop()
        self._sender = asyncio.ensure_future(self._send())
        self._reader = asyncio.ensure_future(self._read())

    async def __aenter__(self) -> "AsyncWriter":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _group(self) -> _Group:
        return _Group(self._loop.create_future())

    def _poke(self) -> None:
        self._wake.set()

    async def _changed(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    async def set(self, identifier: str, value: Any, *, type: Optional[Union[VariableType, str]] = None,
                  create: bool = False, metadata: Optional[Mapping[str, str]] = None, source: str = "",
                  expected_version: Optional[int] = None) -> PendingWrite:
        """As :meth:`Writer.set`; await the returned pending for the ack."""
        if type is not None:
            typ = VariableType.parse(type)
        else:
            try:
                typ = (await self._session._type_for(identifier, None))[0]
            except VariableNotFound:
                if not create:
                    raise
                typ = rq.guess_type(value)
        req = _request(self._session, identifier, typ, value, create, metadata, source, expected_version)
        while self._q.ended is None and not self._q.closing and self._q.queued >= self._q.max_batch:
            await self._changed()
        if self._q.closing:
            return _failed(WriterClosed("the writer is closed"), self._loop.create_future())
        if self._q.ended is not None:
            return _failed(WriteStreamError(self._q.ended), self._loop.create_future())
        p = self._q.add(req, self._group)
        self._poke()
        return p

    async def flush(self) -> None:
        """As :meth:`Writer.flush`."""
        last = self._q.last
        if last is None:
            return
        self._q.flushing += 1
        self._poke()
        try:
            await asyncio.shield(last._group.future)  # type: ignore[arg-type]
        finally:
            self._q.flushing -= 1
        if isinstance(last._error, WriteStreamError):
            raise last._error

    async def close(self) -> None:
        """As :meth:`Writer.close`."""
        self._q.closing = True
        self._poke()
        await asyncio.gather(self._sender, self._reader, return_exceptions=True)
        if self._q.ended is not None and not self._q.clean:
            raise WriteStreamError(self._q.ended)

    async def _send(self) -> None:
        try:
            while self._q.ended is None:
                if self._q.sendable():
                    await self._call.write(self._q.take())
                    self._poke()
                    continue
                if self._q.closing and not self._q.waiting:
                    await self._call.done_writing()
                    return
                await self._changed()
        except (grpc.RpcError, asyncio.InvalidStateError):
            return  # the reader learns why from the stream

    async def _read(self) -> None:
        try:
            while True:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    break
                if not self._q.inflight:
                    raise RuntimeError("the server answered a request that was not sent")
                self._settle(self._q.answered(resp))
                self._poke()
            self._q.clean = self._q.closing and not self._q.inflight and not self._q.waiting
            groups = self._q.end(WriterClosed("the write stream ended"))
        except grpc.RpcError as e:
            groups = self._q.end(from_rpc_error(e))
        for g in groups:
            self._settle(g)
        self._poke()

    @staticmethod
    def _settle(g: _Group) -> None:
        g.event.set()
        if g.future is not None and not g.future.done():
            g.future.set_result(None)
