"""The shared Watch stream: all the watches of a client on one stream,
against a real server. Each watch must behave as if it had a stream of
its own (every change once, in order, across cuts), a slow one must not
hold up the others, and nothing may outlive the last watch or the client.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any, Callable, Dict, List

import grpc
import pytest

import varwatch
from varwatch import _amux, _mux
from varwatch._proto.varwatch.v1 import bridge_pb2 as pb
from helpers import TIMEOUT, atake, take, wait_for

N_WATCHES = 8


class CountCalls(grpc.UnaryStreamClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Counts the streaming RPCs a channel starts, by method."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        self.calls[details.method.rsplit("/", 1)[-1]] += 1
        return continuation(details, request)

    def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        self.calls[details.method.rsplit("/", 1)[-1]] += 1
        return continuation(details, requests)


def reader_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == _mux.READER_THREAD_NAME]


def values(updates: List[varwatch.Update]) -> List[Any]:
    return [u.value for u in updates]


# ---- sync ----

def test_watches_share_one_stream(server: Any) -> None:
    counter = CountCalls()
    channel = grpc.intercept_channel(grpc.insecure_channel(server.target), counter)
    try:
        with varwatch.Client(server.target, channel=channel) as c, c.create_session() as s:
            for i in range(N_WATCHES):
                s.register(f"x{i}", "integer", 0)
            ws = [s.watch(f"x{i}", include_initial_values=True) for i in range(N_WATCHES)]
            for i in range(N_WATCHES):
                s.set(f"x{i}", i + 1)
            for i, w in enumerate(ws):
                got = take(w, 3)
                assert [u.type for u in got] == ["initial_value", "initial_values_complete", "value_change"]
                assert got[2].value == i + 1
            assert counter.calls["Watch"] == 1 and counter.calls["WatchVariables"] == 0
            assert len(c._mux.threads()) == 1
            dedicated = s.watch("x0", dedicated=True)
            batched = s.watch("x0", batched=True)
            assert counter.calls["WatchVariables"] == 1 and counter.calls["WatchVariablesBatched"] == 1
            assert counter.calls["Watch"] == 1
            for w in ws + [dedicated, batched]:
                w.close()
            wait_for(lambda: not c._mux.threads(), what="the reader thread ends with the last watch")
            # The next watch opens a new stream.
            w = s.watch("x0")
            s.set("x0", 7)
            assert values(take(w, 1)) == [7]
            assert counter.calls["Watch"] == 2
            w.close()
    finally:
        channel.close()


def test_closing_the_client_stops_the_reader(server: Any) -> None:
    before = len(reader_threads())
    threads_before = threading.active_count()
    c = varwatch.Client(server.target)
    s = c.create_session()
    s.register("x", "integer", 0)
    ws = [s.watch("x") for _ in range(3)]
    assert len(reader_threads()) == before + 1
    c.close()  # waits for the reader
    assert len(reader_threads()) == before
    # grpc's thread that sends the stream's requests ends with it too.
    wait_for(lambda: threading.active_count() <= threads_before, what="no thread left behind")
    for w in ws:
        assert list(w) == []
    with varwatch.Client(server.target) as c2:
        c2.session(s.id).cleanup()


def test_cancel_one_watch_keeps_the_others(session: varwatch.Session) -> None:
    session.register("x", "integer", 0)
    a = session.watch("x")
    b = session.watch("x")
    session.set("x", 1)
    assert values(take(a, 1)) == [1] and values(take(b, 1)) == [1]
    a.close()
    assert a._conn is None or a._conn.cancelled()
    session.set("x", 2)
    assert values(take(b, 1)) == [2]
    assert list(a) == []
    assert len(session.client._mux.threads()) == 1
    b.close()


def test_close_inside_the_mux_lock_does_not_deadlock(server: Any, session: varwatch.Session) -> None:
    # The garbage collector may run a dropped Watch's __del__ (which closes
    # it) in any thread at any allocation: also in the reader thread while
    # it holds the mux's lock to dispatch. A client of its own, closed only
    # on success: after a deadlock its close would hang too.
    session.register("x", "integer", 0)
    c = varwatch.Client(server.target)
    s = c.session(session.id)
    w = s.watch("x")
    other = s.watch("x")
    done = threading.Event()

    def close_holding_the_lock() -> None:
        with c._mux._mu:
            w.close()
        done.set()

    threading.Thread(target=close_holding_the_lock, daemon=True).start()
    assert done.wait(TIMEOUT), "closing a watch inside the mux's lock deadlocked"
    session.set("x", 1)
    assert values(take(other, 1)) == [1]
    c.close()


def test_value_view(session: varwatch.Session) -> None:
    session.register("x", "integer", 0, metadata={"unit": "steps"}, min=0)
    full = session.watch("x")
    slim = session.watch("x", view="value")
    session.set("x", 5, metadata={"by": "test"})
    f, v = take(full, 1)[0], take(slim, 1)[0]
    assert f.value == v.value == 5 and f.revision == v.revision
    assert f._raw.variable.metadata["unit"] == "steps" and f.metadata == {"by": "test"}
    assert f._raw.variable.HasField("constraints")
    assert not v._raw.variable.metadata and v.metadata == {}
    assert not v._raw.variable.HasField("constraints")
    with pytest.raises(varwatch.InvalidValue):
        session.watch("x", view="value", dedicated=True)
    with pytest.raises(varwatch.InvalidValue):
        session.watch("x", view="slim")


def test_slow_watch_does_not_block_another(session: varwatch.Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_mux, "QUEUE_LIMIT", 4)
    session.register("x", "integer", 0)
    slow = session.watch("x")
    fast = session.watch("x")
    n = 40
    for v in range(1, n + 1):
        # fast keeps up (in lockstep, so its queue never holds more than
        # one) while slow is not read at all: slow's queue overflows.
        session.set("x", v)
        assert values(take(fast, 1)) == [v]
    got = take(slow, n)
    assert values(got) == list(range(1, n + 1))
    assert [u.revision for u in got] == sorted({u.revision for u in got})
    assert slow.resumes >= 1 and fast.resumes == 0
    slow.close()
    fast.close()


def test_dropped_connection_resumes_every_watch(server: Any, proxy: Any) -> None:
    with varwatch.Client(server.target) as direct, direct.create_session() as s, \
            varwatch.Client(proxy.target) as via:
        names = [f"x{i}" for i in range(4)]
        for n in names:
            s.register(n, "integer", 0)
        ws = {n: via.session(s.id).watch(n, include_initial_values=True, initial_backoff=0.01) for n in names}
        for w in ws.values():
            assert [u.type for u in take(w, 2)] == ["initial_value", "initial_values_complete"]
        got: Dict[str, List[varwatch.Update]] = {n: [] for n in names}
        v = 0
        for _ in range(3):
            for _ in range(10):
                v += 1
                s.set_many([(n, v) for n in names], atomic=True)  # one revision for every watch
            for n, w in ws.items():
                got[n] += take(w, 5)
            proxy.cut()
            for n, w in ws.items():
                got[n] += take(w, 5)
        s.set_many([(n, v + 1) for n in names], atomic=True)
        for n, w in ws.items():
            got[n] += take(w, 1)
        for n in names:
            assert values(got[n]) == list(range(1, v + 2)), n
            revs = [u.revision for u in got[n]]
            assert revs == list(range(revs[0], revs[0] + len(revs))), n
            assert ws[n].resumes >= 3
        assert len(via._mux.threads()) == 1  # the broken streams' readers are gone
        for w in ws.values():
            w.close()


# ---- async ----

def arun(server: Any, test: Callable) -> None:
    async def main() -> None:
        async with varwatch.AsyncClient(server.target) as c:
            s = await c.create_session()
            try:
                await asyncio.wait_for(test(c, s), TIMEOUT * 2)
            finally:
                await s.cleanup()

    asyncio.run(main())


def test_async_watches_share_one_stream_and_stop_with_the_last(server: Any) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        for i in range(N_WATCHES):
            await s.register(f"x{i}", "integer", 0)
        ws = [await s.watch(f"x{i}").start() for i in range(N_WATCHES)]
        for i in range(N_WATCHES):
            await s.set(f"x{i}", i + 1)
        for i, w in enumerate(ws):
            assert values(await atake(w, 1)) == [i + 1]
        assert len(c._mux._streams) == 1
        tasks = c._mux.tasks()
        assert len(tasks) == 2  # one reader, one writer
        for w in ws:
            await w.aclose()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
        assert not c._mux.tasks()
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith(_amux.READER_TASK_NAME)]

    arun(server, t)


def test_async_client_close_stops_the_tasks(server: Any) -> None:
    async def main() -> None:
        c = varwatch.AsyncClient(server.target)
        s = await c.create_session()
        await s.register("x", "integer", 0)
        ws = [await s.watch("x").start() for _ in range(3)]
        assert len(c._mux.tasks()) == 2
        await c.close()  # waits for them
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith(_amux.READER_TASK_NAME)]
        for w in ws:
            assert [u async for u in w] == []
        async with varwatch.AsyncClient(server.target) as c2:
            await c2.session(s.id).cleanup()

    asyncio.run(main())


def test_async_slow_watch_does_not_block_another(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_mux, "QUEUE_LIMIT", 4)

    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        await s.register("x", "integer", 0)
        slow = await s.watch("x").start()
        fast = await s.watch("x").start()
        n = 40
        for v in range(1, n + 1):
            await s.set("x", v)
            assert values(await atake(fast, 1)) == [v]
        assert values(await atake(slow, n)) == list(range(1, n + 1))
        assert slow.resumes >= 1 and fast.resumes == 0
        await slow.aclose()
        await fast.aclose()

    arun(server, t)


def test_async_dropped_connection_resumes_every_watch(server: Any, proxy: Any) -> None:
    async def main() -> None:
        async with varwatch.AsyncClient(server.target) as direct, varwatch.AsyncClient(proxy.target) as via:
            s = await direct.create_session()
            try:
                names = ["a", "b", "c"]
                for n in names:
                    await s.register(n, "integer", 0)
                ws = {n: await via.session(s.id).watch(n, initial_backoff=0.01).start() for n in names}
                got: Dict[str, List[varwatch.Update]] = {n: [] for n in names}
                v = 0
                for _ in range(3):
                    for _ in range(10):
                        v += 1
                        await s.set_many([(n, v) for n in names], atomic=True)
                    for n, w in ws.items():
                        got[n] += await atake(w, 5)
                    proxy.cut()
                    for n, w in ws.items():
                        got[n] += await atake(w, 5)
                await s.set_many([(n, v + 1) for n in names], atomic=True)
                for n, w in ws.items():
                    got[n] += await atake(w, 1)
                for n in names:
                    assert values(got[n]) == list(range(1, v + 2)), n
                    assert ws[n].resumes >= 3
                assert len(via._mux.tasks()) == 2
                for w in ws.values():
                    await w.aclose()
            finally:
                await s.cleanup()

    asyncio.run(main())


# ---- a WatchEnded is the status WatchVariables would have ended with ----

@pytest.mark.parametrize("ended,cls,check", [
    (pb.WatchEnded(code=8, message="behind", reason="SLOW_CONSUMER", metadata={"resume_revision": "12"}),
     varwatch.SlowConsumer, lambda e: e.delivered_revision == 12),
    (pb.WatchEnded(code=14, message="server is shutting down", reason="SHUTTING_DOWN", metadata={"resume_revision": "7"}),
     varwatch.Unavailable, lambda e: e.delivered_revision == 7),
    (pb.WatchEnded(code=9, message="incarnation", reason="SESSION_INCARNATION_CHANGED",
                   metadata={"session_id": "s", "current_incarnation": "b", "requested_incarnation": "a"}),
     varwatch.IncarnationChanged, lambda e: e.current_incarnation == "b" and e.requested_incarnation == "a"),
    (pb.WatchEnded(code=11, message="compacted", reason="REVISION_COMPACTED"), varwatch.Compacted, lambda e: True),
    (pb.WatchEnded(code=5, message='session not found: session "s" not found', reason="SESSION_NOT_FOUND"), varwatch.SessionNotFound,
     lambda e: True),
    (pb.WatchEnded(code=0), varwatch.Unavailable, lambda e: True),  # OK without session_closed
], ids=["slow_consumer", "shutting_down", "incarnation", "compacted", "not_found", "ok"])
def test_ended_error(ended: Any, cls: type, check: Callable) -> None:
    err = _mux.ended_error(ended)
    assert type(err) is cls, err
    assert check(err)
