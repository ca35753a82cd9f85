"""The AsyncClient against a real server: every method, every error, and
the async watch (including cancellation)."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
from typing import Any, Awaitable, Callable

import grpc
import pytest

import varwatch
from helpers import TIMEOUT, atake, atake_until
from varwatch import values

np = values.numpy_module()


def run(server: Any, test: Callable[[varwatch.AsyncClient, varwatch.AsyncSession], Awaitable[None]]) -> None:
    """Runs test with a fresh AsyncClient and session, in a new event loop."""

    async def main() -> None:
        async with varwatch.AsyncClient(server.target, timeout=10) as c:
            async with await c.create_session() as s:
                await asyncio.wait_for(test(c, s), TIMEOUT * 2)

    asyncio.run(main())


def test_ping_and_sessions(server: Any) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        await c.wait_ready(timeout=10)
        pong = await c.ping("hi")
        assert pong.message == "hi" and isinstance(pong.server_time, dt.datetime)

        assert s.created and s.info is not None
        again = await c.create_session(s.id)
        assert again.created is False
        info = await s.refresh()
        assert info.id == s.id and info.variable_count == 0
        assert s.id in [x.id for x in await c.list_sessions()]
        assert (await s.heartbeat()).session_valid

        other = await c.create_session(metadata={"k": "v"}, ttl=dt.timedelta(minutes=5))
        async with other:
            await other.register("a", "integer", 1)
            assert (await c.get_session(other.id)).metadata == {"k": "v"}
        with pytest.raises(varwatch.SessionNotFound):
            await c.get_session(other.id)
        assert not (await c.heartbeat(other.id)).session_valid
        with pytest.raises(varwatch.SessionNotFound):
            await c.cleanup_session(other.id)

        third = await c.create_session()
        await third.register("a", "integer", 1)
        assert await c.cleanup_session(third.id) == 1

    run(server, t)


ROUND_TRIPS: list[tuple[str, Any, Any, dict]] = [
    ("float", 1.5, -0.25, {}),
    ("integer", 7, -(2**63), {}),
    ("string", "a", "ß✓", {}),
    ("boolean", True, False, {}),
    ("choice", "x", "y", {"choices": ["x", "y"]}),
    ("module", "a.b", "c.d", {"allowed_modules": ["a.b", "c.d"]}),
    ("embedding", [1.0, 2.0, 3.0], [0.5, 0.5, 0.5], {"dimensions": 3}),
    ("tensor", varwatch.Tensor.from_list([[1, 2], [3, 4]], "uint8"),
     varwatch.Tensor.from_list([[0, 0], [0, 255]], "uint8"), {"shape": [2, 2]}),
]


@pytest.mark.parametrize("typ,first,second,cons", ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_native_round_trip(server: Any, monkeypatch: pytest.MonkeyPatch, typ: str, first: Any, second: Any,
                           cons: dict) -> None:
    if typ == "tensor":
        monkeypatch.setattr(values, "_np", None)  # the Tensor path; numpy is covered below

    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        v = await s.register("v", typ, first, **cons)
        assert v.value == first and v.type == typ
        assert (await s.get("v")).value == first
        assert (await s.set("v", second)).value == second
        got = (await s.get("v")).value
        assert got == second and type(got) is type(second)

    run(server, t)


def test_tensor_numpy_round_trip(server: Any) -> None:
    if np is None:
        pytest.skip("numpy is not installed (the Tensor path is tested)")

    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        arr = np.linspace(0, 1, 6, dtype=np.float64).reshape(2, 3)
        v = await s.register("t", "tensor", arr, shape=[2, 3])
        assert isinstance(v.value, np.ndarray) and np.array_equal(v.value, arr)
        w = s.watch("t")
        await w.start()
        await s.set("t", arr * 2)
        (u,) = await atake(w, 1)
        assert np.array_equal(u.value, arr * 2) and np.array_equal(u.old_value, arr)
        await w.aclose()

    run(server, t)


def test_variables(server: Any) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        await s.register("a", "integer", 1, min=0, max=100, metadata={"m": "1"})
        await s.register("b", "float", 0.5)
        v = await s.set("a", 2, source="me", metadata={"n": "2"}, expected_version=1)
        assert v.version == 2 and v.last_update_source == "me" and v.metadata == {"m": "1", "n": "2"}
        r = await s.get_many(["a", "zz", "b"])
        assert [x.name for x in r.variables] == ["a", "b"] and r.missing == ["zz"]
        r2 = await s.set_many({"a": 3, "b": 1.5}, atomic=True)
        assert r2.ok and len({x.revision for x in r2.results}) == 1
        r3 = await s.set_many([("a", 101), varwatch.SetItem("b", 2.5, source="x")])
        assert [x.ok for x in r3.results] == [False, True]
        assert isinstance(r3.results[0].error, varwatch.InvalidValue)
        lst = await s.list("?")
        assert [x.name for x in lst] == ["a", "b"] and lst.revision == r3.revision
        assert await s.delete("b") == lst.revision + 1
        assert [x.name for x in await s.list()] == ["a"]

    run(server, t)


def test_errors(server: Any) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        await s.register("x", "float", 0.5, min=0, max=1)
        with pytest.raises(varwatch.AlreadyExists):
            await s.register("x", "float", 0.5)
        with pytest.raises(varwatch.InvalidValue):
            await s.set("x", 5.0)
        with pytest.raises(varwatch.InvalidValue):
            await s.set_many({"x": 5.0}, atomic=True)
        with pytest.raises(varwatch.VariableNotFound):
            await s.get("y")
        with pytest.raises(varwatch.VariableNotFound):
            await s.delete("y")
        with pytest.raises(varwatch.VersionConflict) as vc:
            await s.set("x", 0.1, expected_version=5)
        assert vc.value.current_version == 1
        gone = c.session("never-created")
        with pytest.raises(varwatch.SessionNotFound):
            await gone.list()
        with pytest.raises(varwatch.SessionNotFound):
            await gone.watch().start()
        with pytest.raises(varwatch.VariableNotFound):
            async for _ in s.watch(["nope"]):
                pass

    run(server, t)


def test_deadline_and_unavailable(black_hole: str) -> None:
    from conftest import free_port

    async def main() -> None:
        async with varwatch.AsyncClient(black_hole, timeout=0.2) as c:
            with pytest.raises(varwatch.DeadlineExceeded):
                await c.ping()
        async with varwatch.AsyncClient(f"127.0.0.1:{free_port()}", timeout=5) as c:
            with pytest.raises(varwatch.Unavailable) as ei:
                await c.ping()
            assert ei.value.code == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(varwatch.Unavailable):
                await c.wait_ready(timeout=0.2)

    asyncio.run(main())


# ---- watching ----

def test_watch_initial_values_then_changes_from_another_client(server: Any) -> None:
    """The seed's example, against this package."""

    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        await s.register("temperature", "float", 20.0)
        await s.register("pressure", "float", 1.0)
        seen: list[varwatch.Update] = []
        initial_done = asyncio.Event()

        async def consume() -> None:
            async for update in s.watch(["temperature", "pressure"], include_initial_values=True):
                seen.append(update)
                if update.type == "initial_values_complete":
                    initial_done.set()
                if update.type == "value_change" and update.name == "pressure":
                    return

        task = asyncio.create_task(consume())
        await asyncio.wait_for(initial_done.wait(), TIMEOUT)
        async with varwatch.AsyncClient(server.target) as other:
            o = other.session(s.id)
            await o.set("temperature", 25.0, source="sensor-1")
            await o.set("pressure", 1.2, source="sensor-2")
        await asyncio.wait_for(task, TIMEOUT)
        assert [(u.type, u.name, u.value) for u in seen] == [
            ("initial_value", "temperature", 20.0), ("initial_value", "pressure", 1.0),
            ("initial_values_complete", "", None),
            ("value_change", "temperature", 25.0), ("value_change", "pressure", 1.2)]
        assert seen[3].old_value == 20.0 and seen[3].source == "sensor-1"
        assert [u.revision for u in seen] == [2, 2, 2, 3, 4]

    run(server, t)


def test_watch_context_manager_and_pattern(server: Any) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        async with s.watch(pattern="m.*") as w:
            assert w.revision == 0
            await s.register("m.a", "integer", 1)
            await s.register("z", "integer", 1)
            await s.set("m.a", 2)
            await s.delete("m.a")
            got = await atake(w, 3)
            assert [(u.type, u.name, u.value) for u in got] == [
                ("variable_registered", "m.a", 1), ("value_change", "m.a", 2), ("variable_deleted", "m.a", 2)]

    run(server, t)


def test_session_closed_ends_async_iteration(server: Any) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        other = await c.create_session()
        await other.register("x", "integer", 1)
        w = await other.watch().start()
        await other.cleanup()
        got = await atake_until(w, lambda u: u.type == "session_closed")
        assert [u.type for u in got] == ["session_closed"]
        assert [u async for u in w] == []

    run(server, t)


def test_batched_and_coalesced(server: Any) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        await s.register("x", "integer", 0)
        w = await s.watch("x", batched=True, max_batch_size=3).start()
        await s.set_many([("x", i) for i in range(1, 11)])
        assert [u.value for u in await atake(w, 10)] == list(range(1, 11))
        await w.aclose()

        w = await s.watch("x", batched=True, coalesce=True).start()
        for i in range(11, 111):
            await s.set("x", i)
        got = await atake_until(w, lambda u: u.value == 110)
        assert sum(max(u.coalesced_count, 1) for u in got) == 100
        await w.aclose()

    run(server, t)


# ---- cancellation ----

@pytest.mark.parametrize("dedicated", [False, True])
def test_aclose_cancels_the_rpc(server: Any, dedicated: bool) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        await s.register("x", "integer", 0)
        w = await s.watch("x", dedicated=dedicated).start()
        call = w._conn  # the RPC, or the place on the shared stream
        await w.aclose()
        assert call.cancelled()
        assert [u async for u in w] == []

    run(server, t)


@pytest.mark.parametrize("dedicated", [False, True])
def test_break_cancels_the_rpc(server: Any, dedicated: bool) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        await s.register("x", "integer", 0)
        w = await s.watch("x", dedicated=dedicated).start()
        call = w._conn  # the RPC, or the place on the shared stream
        await s.set("x", 1)
        await s.set("x", 2)
        async for u in w:
            assert u.value == 1
            break
        del w  # dropping the iterator after break cancels its stream
        gc.collect()
        assert call.cancelled()

    run(server, t)


@pytest.mark.parametrize("dedicated", [False, True])
def test_task_cancel_cancels_the_rpc(server: Any, dedicated: bool) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        await s.register("x", "integer", 0)
        w = await s.watch("x", dedicated=dedicated).start()
        call = w._conn  # the RPC, or the place on the shared stream
        reading = asyncio.Event()

        async def consume() -> None:
            reading.set()
            async for _ in w:
                pass

        task = asyncio.create_task(consume())
        await reading.wait()
        await asyncio.sleep(0)  # let it block in read()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert call.cancelled()

    run(server, t)


def test_closing_the_client_ends_its_watches(server: Any) -> None:
    async def main() -> None:
        c = varwatch.AsyncClient(server.target)
        s = await c.create_session()
        await s.register("x", "integer", 0)
        w = await s.watch("x").start()
        reading = asyncio.Event()
        got: list[varwatch.Update] = []

        async def consume() -> None:
            reading.set()
            async for u in w:
                got.append(u)

        task = asyncio.create_task(consume())
        await reading.wait()
        await asyncio.sleep(0)  # let it block in read()
        await c.close()
        await asyncio.wait_for(task, TIMEOUT)  # the iteration ended
        assert got == []
        async with varwatch.AsyncClient(server.target) as other:
            await other.cleanup_session(s.id)

    asyncio.run(main())
