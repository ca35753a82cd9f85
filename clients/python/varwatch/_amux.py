"""The asyncio version of ``_mux.py``: one shared ``Watch`` stream for all
the watches of an :class:`~varwatch.AsyncClient`, read by one task.

Same rules: the stream opens with the first watch and closes with the
last (or with the client); a broken stream fails every watch on it and
each resumes by itself; each watch has a bounded queue, and one whose
caller falls behind is cancelled on the stream and resumes.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from typing import Any, Callable, Optional

import grpc

from . import _mux
from ._resume import stream_ended_without_close
from .errors import VarwatchError, from_rpc_error

READER_TASK_NAME = "varwatch-watch-reader"


class AsyncSub:
    """One watch on a shared stream: the connection ``AsyncWatch`` reads.

    # Notes
    Owned by the event loop: the reader task pushes, the watch's task
    takes; no locks needed.
    """

    def __init__(self, stream: Optional["_AsyncStream"], watch_id: int) -> None:
        self._stream = stream
        self.id = watch_id
        self._q: collections.deque[Any] = collections.deque()
        self._header: Optional[tuple[tuple[str, str], ...]] = None
        self._err: Optional[VarwatchError] = None
        self._ready = asyncio.Event()
        self.left = False  # cancelled on its stream, or the stream ended

    def created(self, c: Any) -> None:
        self._header = _mux.created_header(c)
        self._ready.set()

    def push(self, u: Any) -> bool:
        if self._err is not None:
            return True
        if len(self._q) >= _mux.QUEUE_LIMIT:
            self.fail(_mux.slow_reader())
            return False
        self._q.append(u)
        self._ready.set()
        return True

    def fail(self, err: VarwatchError) -> None:
        if self._err is None:
            self._err = err
        self._ready.set()

    async def header(self) -> Optional[tuple[tuple[str, str], ...]]:
        while self._header is None and self._err is None:
            self._ready.clear()
            await self._ready.wait()
        return self._header

    def done(self) -> bool:
        return self._err is not None and not self._q

    async def recv(self) -> list[Any]:
        while not self._q and self._err is None:
            self._ready.clear()
            await self._ready.wait()
        if self._q:
            out = list(self._q)
            self._q.clear()
            return out
        assert self._err is not None
        raise self._err

    def cancelled(self) -> bool:
        """Whether the watch left its stream (see _mux.Sub.cancelled)."""
        return self._stream is None or self.left

    def cancel(self) -> None:
        if self._stream is not None:
            self._stream.release(self)
        self.fail(_mux.closed())


class _AsyncStream:
    """One Watch call, its reader task and the task that writes to it."""

    def __init__(self, mux: "AsyncMux") -> None:
        self._mux = mux
        self.subs: dict[int, AsyncSub] = {}
        self._ids = itertools.count(1)
        self._out: asyncio.Queue[Any] = asyncio.Queue()
        self._call = mux._method(metadata=mux._md)
        # One writer: grpc.aio allows one write at a time, and the reader
        # must never wait for a write (it sends the cancels of slow watches).
        self.writer = asyncio.ensure_future(self._write())
        self.reader = asyncio.ensure_future(self._read())
        _name(self.reader, READER_TASK_NAME)
        _name(self.writer, READER_TASK_NAME + "-writer")

    def send(self, req: Any) -> None:
        self._out.put_nowait(req)

    def new_sub(self) -> AsyncSub:
        sub = AsyncSub(self, next(self._ids))
        self.subs[sub.id] = sub
        return sub

    async def _write(self) -> None:
        try:
            while True:
                req = await self._out.get()
                await self._call.write(req)
        except (grpc.RpcError, asyncio.InvalidStateError):
            pass  # the stream broke: the reader reports it

    async def _read(self) -> None:
        err: VarwatchError = _mux.closed()
        try:
            while True:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    err = stream_ended_without_close()
                    break
                self._dispatch(resp)
        except asyncio.CancelledError:
            err = _mux.closed()
        except grpc.RpcError as e:
            err = from_rpc_error(e)
        finally:
            self._retire()
            self.writer.cancel()
            self._call.cancel()
        subs, self.subs = self.subs, {}
        for sub in subs.values():
            sub.left = True
            sub.fail(err)

    def _dispatch(self, resp: Any) -> None:
        for ev in resp.events:
            kind = ev.WhichOneof("event")
            for wid in ev.watch_ids:
                sub = self.subs.get(wid)
                if sub is None:
                    continue
                if kind == "update":
                    if not sub.push(ev.update):
                        del self.subs[wid]
                        self.send(_mux.cancel_request(wid))
                        sub.left = True
                elif kind == "created":
                    sub.created(ev.created)
                elif kind == "ended":
                    del self.subs[wid]
                    sub.fail(_mux.ended_error(ev.ended))
        if not self.subs:
            self.close()

    def release(self, sub: AsyncSub) -> None:
        if self.subs.get(sub.id) is not sub:
            return
        del self.subs[sub.id]
        if self.subs:
            self.send(_mux.cancel_request(sub.id))
        else:
            self.close()
        sub.left = True

    def _retire(self) -> None:
        if self._mux._cur is self:
            self._mux._cur = None

    def close(self) -> None:
        """Ends the stream: its reader and writer tasks stop."""
        self._retire()
        self._call.cancel()
        self.writer.cancel()
        if self.reader is not asyncio.current_task():
            self.reader.cancel()


class AsyncMux:
    """The shared stream of one asyncio client.

    # Notes
    Owned by the event loop the client runs on.
    """

    def __init__(self, method: Callable[..., Any], metadata: Optional[tuple[tuple[str, str], ...]]) -> None:
        self._method = method
        self._md = metadata
        self._cur: Optional[_AsyncStream] = None
        self._streams: list[_AsyncStream] = []

    def open(self, req: Any, view: str) -> AsyncSub:
        """Creates a watch for req on the current stream, opening one if
        needed; AsyncSub.header waits for the server."""
        s = self._cur
        if s is None:
            try:
                s = _AsyncStream(self)
            except grpc.RpcError as e:
                sub = AsyncSub(None, 0)
                sub.fail(from_rpc_error(e))
                return sub
            self._cur = s
            self._streams = [t for t in self._streams if not t.reader.done()] + [s]
        sub = s.new_sub()
        s.send(_mux.create_request(sub.id, req, view))
        return sub

    def tasks(self) -> list["asyncio.Future[None]"]:
        """The reader and writer tasks still running (for tests)."""
        return [t for s in self._streams for t in (s.reader, s.writer) if not t.done()]

    async def aclose(self) -> None:
        """Ends every stream and waits for its tasks."""
        streams, self._streams = self._streams, []
        for s in streams:
            s.close()
        tasks = [t for s in streams for t in (s.reader, s.writer)]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _name(task: "asyncio.Future[Any]", name: str) -> None:
    set_name = getattr(task, "set_name", None)
    if callable(set_name):
        set_name(name)
