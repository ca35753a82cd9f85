"""Watches whose streams break, against a real server: the caller must see
every change once, in order.

Breaks are forced three ways: a server with a 16-update subscription buffer
cuts off a watch that falls behind (RESOURCE_EXHAUSTED), a TCP proxy resets
the connection, and the server shuts down (UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, List

import grpc
import pytest

import varwatch
from helpers import atake, take

N_BATCHES = 25
BATCH = 20  # more than the 16-update buffer: every batch outruns the stream


def write_batches(target: str, session_id: str, start: int = 1) -> int:
    """Sets x to start, start+1, ... in non-atomic batches (one revision
    each); returns the last value."""
    v = start
    with varwatch.Client(target) as c:
        s = c.session(session_id)
        for _ in range(N_BATCHES):
            r = s.set_many([("x", v + i) for i in range(BATCH)])
            assert r.ok
            v += BATCH
    return v - 1


def assert_exact(updates: List[varwatch.Update], first_value: int, first_rev: int) -> None:
    """Consecutive values and revisions: no gap, no duplicate, in order."""
    values = [u.value for u in updates]
    revs = [u.revision for u in updates]
    assert values == list(range(first_value, first_value + len(updates))), values[:50]
    assert revs == list(range(first_rev, first_rev + len(updates))), revs[:50]
    assert all(u.type == "value_change" for u in updates)


# ---- slow consumer ----

def test_slow_consumer_resumes_without_gap_sync(small_buffer_server: Any) -> None:
    with varwatch.Client(small_buffer_server.target) as c, c.create_session() as s:
        s.register("x", "integer", 0)
        w = s.watch("x", initial_backoff=0.01)
        assert w.revision == 1
        # Nobody reads while the writes pour in.
        last = write_batches(small_buffer_server.target, s.id)
        got = take(w, last)
        assert_exact(got, 1, 2)
        assert w.resumes >= 1
        assert w.revision is not None and w.revision >= last
        w.close()


def test_slow_consumer_resumes_while_reading_sync(small_buffer_server: Any) -> None:
    with varwatch.Client(small_buffer_server.target) as c, c.create_session() as s:
        s.register("x", "integer", 0)
        with s.watch("x", initial_backoff=0.01) as w:
            errors: List[BaseException] = []

            def writer() -> None:
                try:
                    write_batches(small_buffer_server.target, s.id)
                except BaseException as e:  # reported below, not lost in the thread
                    errors.append(e)

            t = threading.Thread(target=writer, daemon=True)
            t.start()
            try:
                got = take(w, N_BATCHES * BATCH)
            finally:
                t.join(timeout=30)
            assert not errors, errors
            assert_exact(got, 1, 2)
            assert w.resumes >= 1


def test_slow_consumer_resumes_without_gap_async(small_buffer_server: Any) -> None:
    async def main() -> None:
        async with varwatch.AsyncClient(small_buffer_server.target) as c:
            async with await c.create_session() as s:
                await s.register("x", "integer", 0)
                w = await s.watch("x", initial_backoff=0.01).start()
                await asyncio.to_thread(write_batches, small_buffer_server.target, s.id)
                got = await atake(w, N_BATCHES * BATCH)
                assert_exact(got, 1, 2)
                assert w.resumes >= 1
                await w.aclose()

    asyncio.run(main())


def test_slow_consumer_without_resume_raises(small_buffer_server: Any) -> None:
    with varwatch.Client(small_buffer_server.target) as c, c.create_session() as s:
        s.register("x", "integer", 0)
        w = s.watch("x", resume=False)
        write_batches(small_buffer_server.target, s.id)
        with pytest.raises(varwatch.SlowConsumer) as ei:
            take(w, N_BATCHES * BATCH)
        assert ei.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ei.value.delivered_revision is not None and ei.value.delivered_revision >= 1


# ---- dropped connections ----

def test_dropped_connection_resumes_sync(server: Any, proxy: Any) -> None:
    with varwatch.Client(server.target) as direct, direct.create_session() as s, \
            varwatch.Client(proxy.target) as via_proxy:
        s.register("x", "integer", 0)
        w = via_proxy.session(s.id).watch("x", include_initial_values=True, initial_backoff=0.01)
        assert [u.type for u in take(w, 2)] == ["initial_value", "initial_values_complete"]
        got: List[varwatch.Update] = []
        v = 0
        for _ in range(3):
            for _ in range(30):
                v += 1
                s.set("x", v)
            got += take(w, 15)
            proxy.cut()  # the other 15 may be in flight, or not sent yet
            got += take(w, 15)
        s.set("x", v + 1)  # so the last cut is noticed too
        got += take(w, 1)
        assert_exact(got, 1, 2)
        assert w.resumes >= 3
        assert proxy.accepted >= 4
        w.close()


def test_dropped_connection_resumes_async(server: Any, proxy: Any) -> None:
    async def main() -> None:
        async with varwatch.AsyncClient(server.target) as direct, varwatch.AsyncClient(proxy.target) as via:
            s = await direct.create_session()
            try:
                await s.register("x", "integer", 0)
                w = via.session(s.id).watch(["x"], include_initial_values=True, initial_backoff=0.01)
                assert [u.type for u in await atake(w, 2)] == ["initial_value", "initial_values_complete"]
                got: List[varwatch.Update] = []
                v = 0
                for _ in range(3):
                    for _ in range(30):
                        v += 1
                        await s.set("x", v)
                    got += await atake(w, 15)
                    proxy.cut()
                    got += await atake(w, 15)
                await s.set("x", v + 1)
                got += await atake(w, 1)
                assert_exact(got, 1, 2)
                assert w.resumes >= 3
                await w.aclose()
            finally:
                await s.cleanup()

    asyncio.run(main())


def test_batched_watch_resumes(server: Any, proxy: Any) -> None:
    with varwatch.Client(server.target) as direct, direct.create_session() as s, \
            varwatch.Client(proxy.target) as via_proxy:
        s.register("x", "integer", 0)
        w = via_proxy.session(s.id).watch("x", batched=True, max_batch_size=7, initial_backoff=0.01)
        s.set_many([("x", i) for i in range(1, 51)])
        got = take(w, 20)
        proxy.cut()
        s.set_many([("x", i) for i in range(51, 101)])
        got += take(w, 80)
        assert_exact(got, 1, 2)
        assert w.resumes >= 1
        w.close()


# ---- server shutdown ----

def test_server_shutdown_ends_watch_with_unavailable(start_server: Any) -> None:
    srv = start_server()
    with varwatch.Client(srv.target) as c:
        s = c.create_session()
        s.register("x", "integer", 0)
        w = s.watch("x", resume=False)
        s.set("x", 1)
        assert take(w, 1)[0].value == 1
        srv.terminate()
        with pytest.raises(varwatch.Unavailable) as ei:
            take(w, 1)
        assert ei.value.delivered_revision == 2


def test_watch_gives_up_after_max_retries(start_server: Any) -> None:
    srv = start_server()
    with varwatch.Client(srv.target) as c:
        s = c.create_session()
        s.register("x", "integer", 0)
        w = s.watch("x", max_retries=2, initial_backoff=0.01, max_backoff=0.02)
        srv.stop()  # gone for good
        with pytest.raises(varwatch.Unavailable):
            take(w, 1)
        assert w.resumes == 2


# ---- compaction ----

@pytest.fixture
def compacted_session(client: varwatch.Client) -> Any:
    """A session whose history has dropped its first revisions (the server
    keeps 10000 revisions per session)."""
    with client.create_session() as s:
        s.register("x", "integer", 0)
        for k in range(11):
            assert s.set_many([("x", k * 1000 + i) for i in range(1000)]).ok
        yield s


def test_compacted_start_revision_raises(compacted_session: varwatch.Session) -> None:
    with pytest.raises(varwatch.Compacted) as ei:
        compacted_session.watch("x", start_revision=1)
    e = ei.value
    assert e.code == grpc.StatusCode.OUT_OF_RANGE
    assert e.oldest_revision is not None and 1 < e.oldest_revision <= 11001
    # From the oldest revision it names, the resume works.
    w = compacted_session.watch("x", start_revision=e.oldest_revision)
    first = take(w, 1)[0]
    assert first.revision == e.oldest_revision + 1
    w.close()


def test_compacted_resnapshots_when_asked(compacted_session: varwatch.Session) -> None:
    w = compacted_session.watch("x", start_revision=1, resnapshot_on_compacted=True)
    got = take(w, 2)
    assert [(u.type, u.value) for u in got] == [("initial_value", 10999), ("initial_values_complete", None)]
    assert w.revision == 11001
    w.close()


def test_start_revision_replays_and_watch_revision_resumes(session: varwatch.Session) -> None:
    session.register("x", "integer", 0)
    w = session.watch("x")
    for i in range(1, 6):
        session.set("x", i)
    assert [u.value for u in take(w, 3)] == [1, 2, 3]
    saved = w.revision  # complete up to here
    w.close()
    assert saved is not None
    again = session.watch("x", start_revision=saved)
    rest = take(again, 5 - (saved - 1))
    assert [u.value for u in rest] == list(range(saved, 6))
    again.close()


# ---- incarnations ----

def recreate(target: str, session_id: str, values: range) -> str:
    """Creates session_id again with x set to each of values; returns its
    incarnation."""
    with varwatch.Client(target) as c:
        s = c.create_session(session_id)
        s.register("x", "integer", values[0])
        for v in values[1:]:
            s.set("x", v)
        return s.refresh().incarnation


@pytest.mark.parametrize("resnapshot", [False, True])
def test_session_created_again_behind_a_cut_ends_the_watch(server: Any, proxy: Any, resnapshot: bool) -> None:
    with varwatch.Client(server.target) as direct, varwatch.Client(proxy.target) as via:
        s = direct.create_session()
        s.register("x", "integer", 0)
        first = s.refresh().incarnation
        w = via.session(s.id).watch("x", include_initial_values=True, initial_backoff=0.01,
                                     resnapshot_on_compacted=resnapshot)
        assert [u.type for u in take(w, 2)] == ["initial_value", "initial_values_complete"]
        assert w.incarnation == first
        proxy.cut()
        s.cleanup()
        # The new history passes the watch's revision: the old client
        # resumed into it without a word.
        second = recreate(server.target, s.id, range(100, 111))
        assert second != first
        try:
            if not resnapshot:
                with pytest.raises(varwatch.IncarnationChanged) as e:
                    take(w, 1)
                assert (e.value.current_incarnation, e.value.requested_incarnation) == (second, first)
                assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
                return
            got = take(w, 2)
            assert [(u.type, u.value, u.revision) for u in got] == [("initial_value", 110, 11), ("initial_values_complete", None, 11)]
            assert got[1].incarnation == second and w.incarnation == second
        finally:
            w.close()
            direct.session(s.id).cleanup()


def test_in_memory_server_restarted_ends_the_watch_async(start_server: Any, varwatch_bin: str) -> None:
    from conftest import Server

    first_server = start_server()
    target = first_server.target

    async def main() -> None:
        async with varwatch.AsyncClient(target) as c:
            s = await c.create_session("restarted")
            await s.register("x", "integer", 0)
            w = s.watch(["x"], include_initial_values=True, initial_backoff=0.01)
            assert [u.type for u in await atake(w, 2)] == ["initial_value", "initial_values_complete"]
            first = w.incarnation
            first_server.stop()
            again = Server(varwatch_bin)
            again.port, again.target = first_server.port, target
            again.start()
            try:
                second = await asyncio.to_thread(recreate, target, "restarted", range(100, 111))
                assert second != first
                with pytest.raises(varwatch.IncarnationChanged) as e:
                    await atake(w, 1)
                assert (e.value.current_incarnation, e.value.requested_incarnation) == (second, first)
            finally:
                await w.aclose()
                again.stop()

    asyncio.run(main())
