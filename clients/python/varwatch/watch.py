"""Watch iterators: :class:`Watch` (sync) and :class:`AsyncWatch` (asyncio).

Both drive one :class:`~varwatch._resume.ResumeState` over a connection:
a place on the client's shared ``Watch`` stream (``_mux.py``,
``_amux.py``; the default), or a stream of the watch's own
(``WatchVariables``, or ``WatchVariablesBatched`` when ``batched=True``)
with ``dedicated=True``. They flatten batches, hide heartbeats, and when
the connection breaks (connection lost, server shutting down, slow
consumer cut off) reopen it from the last revision handed out, with
exponential backoff, so the caller sees every change once and in order.
The resume rules are the same whichever the transport: a multiplexed
watch's end is turned into the exception its own stream's status would
have raised.

Closing the iterator (``close()`` / ``aclose()``, leaving a ``with`` block,
breaking out of the loop and dropping it, or cancelling the task that
iterates) cancels the RPC, or the watch on the shared stream.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any, AsyncIterator, Callable, Generator, Iterator, Optional

import grpc

from ._amux import AsyncMux
from ._mux import Mux
from ._resume import ResumeState, WatchOptions, stream_ended_without_close
from .errors import IncarnationChanged, VarwatchError, from_rpc_error
from .models import Update

__all__ = ["Watch", "AsyncWatch"]

Metadata = Optional[tuple[tuple[str, str], ...]]


class _CallConn:
    """A dedicated stream, as the connection a Watch reads (the same
    interface as ``_mux.Sub``: header, done, recv, cancel)."""

    def __init__(self, call: Any, batched: bool) -> None:
        self._call = call
        self._it = iter(call)
        self._batched = batched

    def header(self) -> Any:
        return self._call.initial_metadata()

    def done(self) -> bool:
        return bool(self._call.done())

    def recv(self) -> Any:
        try:
            msg = next(self._it)
        except StopIteration:
            raise stream_ended_without_close() from None
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e
        return msg.updates if self._batched else (msg,)

    def cancelled(self) -> bool:
        return bool(self._call.cancelled())

    def cancel(self) -> None:
        self._call.cancel()


class _AsyncCallConn:
    """A dedicated grpc.aio stream, as the connection an AsyncWatch reads."""

    def __init__(self, call: Any, batched: bool) -> None:
        self._call = call
        self._batched = batched

    async def header(self) -> Any:
        return await self._call.initial_metadata()

    def done(self) -> bool:
        return bool(self._call.done())

    async def recv(self) -> Any:
        try:
            msg = await self._call.read()
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e
        if msg is grpc.aio.EOF:
            raise stream_ended_without_close()
        return msg.updates if self._batched else (msg,)

    def cancelled(self) -> bool:
        return bool(self._call.cancelled())

    def cancel(self) -> None:
        self._call.cancel()


class _Base:
    def __init__(self, opts: WatchOptions) -> None:
        self._state = ResumeState(opts)  # validates opts, resolving batched
        self._batched = bool(opts.batched)
        self._pending: collections.deque[Update] = collections.deque()
        self._finished = False
        self._closed = False

    @property
    def revision(self) -> Optional[int]:
        """The revision up to which every change has been handed out (None
        before the watch has a base). Save it to resume later with
        ``start_revision=``."""
        return self._state.revision

    @property
    def incarnation(self) -> Optional[str]:
        """The incarnation of the watched session that :attr:`revision`
        belongs to (None until the server told it). Save it with the
        revision and pass both to resume later (``incarnation=``)."""
        return self._state.incarnation

    @property
    def heartbeats(self) -> int:
        """How many heartbeats arrived (they are not handed out; each one
        shows the stream is alive and advances :attr:`revision`)."""
        return self._state.heartbeats

    @property
    def resumes(self) -> int:
        """How many times the stream was reopened after the first attempt."""
        return self._state.resumes

    def _feed(self, updates: Any) -> None:
        st = self._state
        for raw in updates:
            out = st.feed(raw)
            if out:
                self._pending.extend(out)
            if st.done:
                self._finished = True
                return


class Watch(_Base, Iterator[Update]):
    """A sync iterator of :class:`~varwatch.Update`.

    Created by ``Session.watch``, which returns once
    the server has registered the watch: every change made after that is
    seen. Use it as ``for update in watch`` and, to stop early, as a
    context manager or with :meth:`close`.

    # Notes
    Iterate from one thread. :meth:`close` may be called from any thread;
    it unblocks a pending ``next()``, which then ends the iteration.
    """

    def __init__(self, stub: Any, opts: WatchOptions, metadata: Metadata = None,
                 mux: Optional[Mux] = None) -> None:
        super().__init__(opts)
        self._method: Callable[..., Any] = stub.WatchVariablesBatched if opts.batched else stub.WatchVariables
        self._md = metadata
        self._mux = None if opts.dedicated else mux
        self._conn: Any = None
        self._stop = threading.Event()
        self._mu = threading.Lock()  # guards _conn against close from another thread

    # ---- lifecycle ----

    def start(self) -> "Watch":
        """Opens the stream and waits until the server has registered the
        watch (retrying per the backoff policy). Raises the typed error of a
        watch the server refuses (SessionNotFound, VariableNotFound, ...)."""
        while self._conn is None and not self._finished:
            established = self._open()
            if established:
                break
            conn = self._conn
            if conn is not None and conn.done():
                self._fill()  # surfaces the error: raises, or schedules a retry
            else:
                break
        return self

    def close(self) -> None:
        """Cancels the stream and ends the iteration. Idempotent."""
        self._closed = True
        self._finished = True
        self._stop.set()
        with self._mu:
            conn = self._conn
        if conn is not None:
            conn.cancel()

    def __enter__(self) -> "Watch":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    # ---- iteration ----

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> Update:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._finished:
                self._cancel()
                raise StopIteration
            self._fill()

    def _open(self) -> bool:
        req = self._state.next_request()
        if self._mux is not None:
            conn: Any = self._mux.open(req, self._state.opts.view)
        else:
            conn = _CallConn(self._method(req, metadata=self._md), self._batched)
        with self._mu:
            self._conn = conn
        if self._closed:
            conn.cancel()
            return True
        return self._state.on_header(conn.header())

    def _fill(self) -> None:
        if self._conn is None:
            self._open()
        conn = self._conn
        if conn is None or self._closed:
            self._finished = True
            return
        try:
            ups = conn.recv()
        except VarwatchError as e:
            if self._closed:
                self._finished = True
                return
            err = e
        else:
            try:
                self._feed(ups)
                return
            except IncarnationChanged as e:
                err = e
        self._retry(err)

    def _retry(self, err: VarwatchError) -> None:
        self._cancel()
        try:
            delay = self._state.on_error(err)
        except VarwatchError:
            self._finished = True
            raise
        if delay > 0 and self._stop.wait(delay):
            self._finished = True

    def _cancel(self) -> None:
        with self._mu:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.cancel()


class AsyncWatch(_Base, AsyncIterator[Update]):
    """An async iterator of :class:`~varwatch.Update`.

    Returned by ``AsyncSession.watch``, which does no I/O itself: await
    it (``w = await session.watch(...)``) or enter it (``async with
    session.watch(...) as w:``) and it returns once the server has
    registered the watch, so every change made after that is seen, as
    nats-py's ``await nc.subscribe(...)``. ``await w.start()`` does the
    same; iterating an unawaited watch opens the stream on the first
    ``__anext__`` (a change made before that may be missed by a watch
    without initial values). Cancelling the task that iterates, or
    :meth:`aclose`, cancels the RPC (or the watch on the shared stream).
    """

    def __init__(self, stub: Any, opts: WatchOptions, metadata: Metadata = None,
                 mux: Optional[AsyncMux] = None) -> None:
        super().__init__(opts)
        self._method: Callable[..., Any] = stub.WatchVariablesBatched if opts.batched else stub.WatchVariables
        self._md = metadata
        self._mux = None if opts.dedicated else mux
        self._conn: Any = None

    async def start(self) -> "AsyncWatch":
        """Opens the stream and waits until the server has registered the
        watch; raises the typed error of a watch the server refuses."""
        while self._conn is None and not self._finished:
            established = await self._open()
            if established:
                break
            conn = self._conn
            if conn is not None and conn.done():
                await self._fill()
            else:
                break
        return self

    def __await__(self) -> Generator[Any, None, "AsyncWatch"]:
        """``await watch`` is ``await watch.start()``."""
        return self.start().__await__()

    async def aclose(self) -> None:
        """Cancels the stream and ends the iteration. Idempotent."""
        self.close()

    def close(self) -> None:
        """Like aclose, callable without awaiting (e.g. from a callback)."""
        self._closed = True
        self._finished = True
        self._cancel()

    async def __aenter__(self) -> "AsyncWatch":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - loop already closed
            pass

    def __aiter__(self) -> "AsyncWatch":
        return self

    async def __anext__(self) -> Update:
        try:
            while True:
                if self._pending:
                    return self._pending.popleft()
                if self._finished:
                    self._cancel()
                    raise StopAsyncIteration
                await self._fill()
        except asyncio.CancelledError:
            self.close()
            raise

    async def _open(self) -> bool:
        req = self._state.next_request()
        if self._mux is not None:
            conn: Any = self._mux.open(req, self._state.opts.view)
        else:
            conn = _AsyncCallConn(self._method(req, metadata=self._md), self._batched)
        self._conn = conn
        try:
            md = await conn.header()
        except asyncio.CancelledError:
            if self._cancelled_by_close():
                return True
            raise
        return self._state.on_header(md)

    def _cancelled_by_close(self) -> bool:
        """Whether a CancelledError came from close() cancelling the call
        rather than from this task being cancelled."""
        return self._closed and not _task_cancelling()

    async def _fill(self) -> None:
        if self._conn is None:
            await self._open()
        conn = self._conn
        if conn is None or self._closed:
            self._finished = True
            return
        try:
            ups = await conn.recv()
        except asyncio.CancelledError:
            # grpc.aio raises CancelledError for a call cancelled locally.
            if self._cancelled_by_close():
                self._finished = True
                return
            raise
        except VarwatchError as e:
            if self._closed:
                self._finished = True
                return
            err: VarwatchError = e
        else:
            try:
                self._feed(ups)
                return
            except IncarnationChanged as e:
                err = e
        self._cancel()
        try:
            delay = self._state.on_error(err)
        except VarwatchError:
            self._finished = True
            raise
        if delay > 0:
            await asyncio.sleep(delay)

    def _cancel(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.cancel()


def _task_cancelling() -> Optional[bool]:
    """Whether the current task is being cancelled; None where asyncio
    cannot tell (Python < 3.11)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    if not callable(cancelling):
        return None
    return bool(cancelling())
