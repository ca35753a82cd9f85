"""One shared ``Watch`` stream for all the watches of a :class:`~varwatch.Client`.

A watch is a ``create`` on the stream, its updates are the events that
name its id, its end is its ``WatchEnded``. The stream opens with the first
watch and closes with the last; a broken stream fails every watch on it,
and each resumes on the next stream by its own :class:`ResumeState` (the
iterator in ``watch.py`` does not know which transport it reads).

One reader thread per stream hands events out; it never blocks on a
watch: each watch has a bounded queue (:data:`QUEUE_LIMIT`), and a watch
whose caller falls that far behind is cancelled on the stream and ends
with :class:`~varwatch.SlowConsumer`, which its iterator resumes from
what the caller did take, as a server cut-off would. So one slow reader
never holds up the other watches of its client.

The pieces shared with the asyncio version (``_amux.py``) live here: the
requests, what an event means for a watch, and the queue bound.
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
from typing import Any, Callable, Iterator, Optional

import grpc

from ._proto.varwatch.v1 import bridge_pb2 as pb
from ._resume import INCARNATION_HEADER, SNAPSHOT_REVISION_HEADER, stream_ended_without_close
from ._details import ErrorInfo
from .errors import Cancelled, SlowConsumer, VarwatchError, from_rpc_error, from_status_info

QUEUE_LIMIT = 1 << 16
"""How many updates may wait for one multiplexed watch whose caller does
not take them; past it the watch is cancelled and resumes. A module
variable so tests can shrink it."""

READER_THREAD_NAME = "varwatch-watch-reader"

VIEWS = {"full": pb.VIEW_FULL, "value": pb.VIEW_VALUE}


def create_request(watch_id: int, req: Any, view: str) -> Any:
    return pb.WatchRequest(create=pb.WatchCreate(watch_id=watch_id, request=req, view=VIEWS[view]))


def cancel_request(watch_id: int) -> Any:
    return pb.WatchRequest(cancel=pb.WatchCancel(watch_id=watch_id))


def ended_error(e: Any) -> VarwatchError:
    """The exception a WatchEnded stands for: the one the watch's own
    WatchVariables stream would have raised with that status."""
    if e.code == 0:
        # OK comes only after session_closed, which ends the watch before
        # its iterator reads on; anywhere else it is a broken promise.
        return stream_ended_without_close()
    info = ErrorInfo(e.reason, "varwatch.v1", dict(e.metadata)) if e.reason else None
    return from_status_info(e.code, e.message, info)


def created_header(c: Any) -> tuple[tuple[str, str], ...]:
    """A WatchCreated as the response headers WatchVariables sends."""
    return ((SNAPSHOT_REVISION_HEADER, str(c.snapshot_revision)), (INCARNATION_HEADER, c.incarnation))


def slow_reader() -> VarwatchError:
    return SlowConsumer("the watch's caller fell too far behind its stream; resuming")


def closed() -> VarwatchError:
    return Cancelled("the watch was closed")


class Sub:
    """One watch on a shared stream, as its iterator reads it: the
    connection of ``watch.py`` (header, done, recv, cancel).

    # Notes
    The reader thread pushes; the watch's iterator takes; close may come
    from any thread. All state is guarded by ``_cond``.
    """

    def __init__(self, stream: Optional["_Stream"], watch_id: int) -> None:
        self._stream = stream
        self.id = watch_id
        self._cond = threading.Condition()
        self._q: collections.deque[Any] = collections.deque()
        self._header: Optional[tuple[tuple[str, str], ...]] = None
        self._err: Optional[VarwatchError] = None
        self.left = False  # guarded by the mux's lock: cancelled on its stream, or the stream ended

    # ---- the reader's side ----

    def created(self, c: Any) -> None:
        with self._cond:
            self._header = created_header(c)
            self._cond.notify_all()

    def push(self, u: Any) -> bool:
        """Queues u; reports False, having ended the watch, when full."""
        with self._cond:
            if self._err is not None:
                return True
            if len(self._q) >= QUEUE_LIMIT:
                self._err = slow_reader()
                self._cond.notify_all()
                return False
            self._q.append(u)
            self._cond.notify_all()
            return True

    def fail(self, err: VarwatchError) -> None:
        """Records the watch's end, once; it comes out after the queue."""
        with self._cond:
            if self._err is None:
                self._err = err
            self._cond.notify_all()

    # ---- the iterator's side ----

    def header(self) -> Optional[tuple[tuple[str, str], ...]]:
        """Waits until the server registered the watch (its headers) or
        the watch ended first (None)."""
        with self._cond:
            self._cond.wait_for(lambda: self._header is not None or self._err is not None)
            return self._header

    def done(self) -> bool:
        with self._cond:
            return self._err is not None and not self._q

    def recv(self) -> list[Any]:
        """Every update waiting, or waits for some; after the last, raises
        the watch's end."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._q) or self._err is not None)
            if self._q:
                out = list(self._q)
                self._q.clear()
                return out
            assert self._err is not None
            raise self._err

    def cancelled(self) -> bool:
        """Whether the watch left its stream: a cancel was sent, or the
        stream ended (with its last watch)."""
        return self._stream is None or self.left

    def cancel(self) -> None:
        """Ends the watch on its stream (and the stream with its last
        watch); a pending recv raises Cancelled. Idempotent."""
        if self._stream is not None:
            self._stream.release(self)
        self.fail(closed())


class _Stream:
    """One Watch call and its reader thread."""

    def __init__(self, mux: "Mux") -> None:
        self._mux = mux
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.subs: dict[int, Sub] = {}  # guarded by mux._mu
        self._ids = itertools.count(1)  # used with mux._mu held
        self.done = False  # guarded by mux._mu: no new watch goes on it
        self._call = mux._method(self._request_iterator(), metadata=mux._md)
        self.thread = threading.Thread(target=self._read, name=READER_THREAD_NAME, daemon=True)

    def _request_iterator(self) -> Iterator[Any]:
        # grpc reads this from a thread of its own; None ends it, so that
        # thread ends with the stream.
        while True:
            r = self._requests.get()
            if r is None:
                return
            yield r

    def send(self, req: Any) -> None:
        self._requests.put(req)  # never blocks: the reader thread sends cancels too

    def new_sub(self) -> Sub:
        """With mux._mu held."""
        sub = Sub(self, next(self._ids))
        self.subs[sub.id] = sub
        return sub

    def _read(self) -> None:
        try:
            for resp in self._call:
                self._dispatch(resp)
            err: VarwatchError = stream_ended_without_close()
        except grpc.RpcError as e:
            err = from_rpc_error(e)
        with self._mux._mu:
            self._retire()
            subs, self.subs = self.subs, {}
        for sub in subs.values():
            sub.left = True
            sub.fail(err)
        self._finish()

    def _dispatch(self, resp: Any) -> None:
        with self._mux._mu:
            for ev in resp.events:
                kind = ev.WhichOneof("event")
                for wid in ev.watch_ids:
                    sub = self.subs.get(wid)
                    if sub is None:
                        continue  # closed by its watch meanwhile
                    if kind == "update":
                        if not sub.push(ev.update):
                            del self.subs[wid]
                            self.send(cancel_request(wid))
                            sub.left = True
                    elif kind == "created":
                        sub.created(ev.created)
                    elif kind == "ended":
                        del self.subs[wid]
                        sub.fail(ended_error(ev.ended))
            if not self.subs:
                self._close()

    def release(self, sub: Sub) -> None:
        """Takes sub off the stream: a cancel, or the stream's end when it
        was the last."""
        with self._mux._mu:
            if self.subs.get(sub.id) is not sub:
                return
            del self.subs[sub.id]
            if self.subs:
                self.send(cancel_request(sub.id))
            else:
                self._close()
            sub.left = True

    def _retire(self) -> None:
        """With mux._mu held: no new watch goes on this stream."""
        self.done = True
        if self._mux._cur is self:
            self._mux._cur = None

    def _close(self) -> None:
        """With mux._mu held: ends the stream, which has no watch left."""
        self._retire()
        self._finish()

    def _finish(self) -> None:
        self._requests.put(None)
        self._call.cancel()


class Mux:
    """The shared stream of one sync client.

    # Notes
    Thread-safe. ``_mu`` guards which stream is current and every
    stream's watches. It is reentrant because a Watch dropped without
    close is closed by its ``__del__``, which the garbage collector may run
    in any thread at any allocation, also in one that holds ``_mu``.
    """

    def __init__(self, method: Callable[..., Any], metadata: Optional[tuple[tuple[str, str], ...]]) -> None:
        self._method = method
        self._md = metadata
        self._mu = threading.RLock()
        self._cur: Optional[_Stream] = None
        self._streams: list[_Stream] = []  # guarded by _mu: for close and tests

    def open(self, req: Any, view: str) -> Sub:
        """Creates a watch for req on the current stream, opening one if
        needed. Does not wait for the server: Sub.header does."""
        with self._mu:
            s = self._cur
            start = s is None
            if s is None:
                try:
                    s = _Stream(self)
                except grpc.RpcError as e:
                    sub = Sub(None, 0)
                    sub.fail(from_rpc_error(e))
                    return sub
                self._cur = s
                self._streams = [t for t in self._streams if t.thread.is_alive()] + [s]
            sub = s.new_sub()
            s.send(create_request(sub.id, req, view))
        if start:
            s.thread.start()
        return sub

    def threads(self) -> list[threading.Thread]:
        """The reader threads still running (for tests)."""
        with self._mu:
            return [s.thread for s in self._streams if s.thread.is_alive()]

    def close(self, timeout: Optional[float] = None) -> None:
        """Ends every stream and waits for their reader threads."""
        with self._mu:
            streams, self._streams = self._streams, []
            for s in streams:
                s._retire()
                s._finish()
        for s in streams:
            if s.thread.ident is not None and s.thread is not threading.current_thread():
                s.thread.join(timeout)
