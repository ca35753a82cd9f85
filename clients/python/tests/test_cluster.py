"""The client on a cluster (``varwatch serve --cluster``): a write's log
position, reads and watches that wait for one, and local reads, sync and
async, against two real nodes over a real JetStream server."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

import varwatch

from conftest import Cluster


def test_positions_and_local_reads(cluster: Cluster) -> None:
    a_node, b_node = cluster.nodes
    with varwatch.Client(a_node.target, timeout=10.0) as a, varwatch.Client(b_node.target, timeout=10.0) as b:
        assert a.last_position is None
        s = a.create_session("s")
        assert isinstance(s.position, int) and s.position > 0
        reg = s.register("x", "integer", 0)
        v = s.set("x", 1)
        many = s.set_many({"x": 2})
        assert s.position < reg.position < v.position < many.position
        assert a.last_position == many.position
        assert reg == dataclasses.replace(reg, position=None)  # equality ignores where a write landed
        pos = many.position

        bs = b.session("s")
        # On node b, without asking JetStream, once b has applied the write.
        assert bs.get("x", position=pos, local=True).value == 2
        assert [x.value for x in bs.get_many(["x"], position=pos, local=True).variables] == [2]
        assert [x.name for x in bs.list(position=pos, local=True)] == ["x"]
        assert b.get_session("s", position=pos, local=True).id == "s"
        assert [i.id for i in b.list_sessions(position=pos)] == ["s"]
        with bs.watch("x", include_initial_values=True, position=pos, local=True) as w:
            first = next(w)
            assert (first.type, first.value) == ("initial_value", 2)

        # A position the log has not reached holds a read back.
        with varwatch.Client(b_node.target, timeout=0.3) as impatient:
            with pytest.raises(varwatch.DeadlineExceeded):
                impatient.session("s").get("x", position=pos + 1000, local=True)
        with pytest.raises(ValueError):
            bs.get("x", position=-1)

        # A write stream's acks carry positions too.
        with s.writer() as w:
            pending = [w.set("x", i) for i in range(100)]
        acks = [p.result(timeout=10) for p in pending]
        assert all(ack.position is not None and ack.position > pos for ack in acks)
        assert [ack.position for ack in acks] == sorted(ack.position for ack in acks)
        assert bs.get("x", position=acks[-1].position, local=True).value == 99
        assert a.last_position == acks[-1].position  # the writer's writes count too
        pos = acks[-1].position

        s.delete("x")
        assert a.last_position > pos

        # JetStream down: default reads fail, local reads and watches go on.
        cluster.nats.stop()
        with pytest.raises(varwatch.Unavailable) as e:
            b.list_sessions()
        assert e.value.reason == "CLUSTER_UNAVAILABLE"
        assert [i.id for i in b.list_sessions(local=True)] == ["s"]
        with bs.watch(pattern="*", include_initial_values=True, local=True, resume=False) as w:
            assert next(w).type == "initial_values_complete"


def test_positions_and_local_reads_async(cluster: Cluster) -> None:
    a_node, b_node = cluster.nodes

    async def run() -> None:
        async with varwatch.AsyncClient(a_node.target, timeout=10.0) as a, \
                varwatch.AsyncClient(b_node.target, timeout=10.0) as b:
            assert a.last_position is None
            s = await a.create_session("s")
            assert isinstance(s.position, int) and s.position > 0
            reg = await s.register("x", "integer", 0)
            v = await s.set("x", 1)
            many = await s.set_many({"x": 2})
            assert s.position < reg.position < v.position < many.position
            assert a.last_position == many.position
            pos = many.position

            bs = b.session("s")
            assert (await bs.get("x", position=pos, local=True)).value == 2
            assert [x.value for x in (await bs.get_many(["x"], position=pos, local=True)).variables] == [2]
            assert (await b.get_session("s", position=pos, local=True)).id == "s"
            async with bs.watch("x", include_initial_values=True, position=pos, local=True) as w:
                first = await w.__anext__()
                assert (first.type, first.value) == ("initial_value", 2)

            async with s.writer() as w:
                pending = [await w.set("x", i) for i in range(100)]
            acks = [await p for p in pending]
            assert all(ack.position is not None and ack.position > pos for ack in acks)
            assert [ack.position for ack in acks] == sorted(ack.position for ack in acks)
            assert (await bs.get("x", position=acks[-1].position, local=True)).value == 99
            assert a.last_position == acks[-1].position  # the writer's writes count too

            async with varwatch.AsyncClient(b_node.target, timeout=0.3) as impatient:
                with pytest.raises(varwatch.DeadlineExceeded):
                    await impatient.session("s").get("x", position=pos + 1000, local=True)

            cluster.nats.stop()
            with pytest.raises(varwatch.Unavailable) as e:
                await bs.get("x")
            assert e.value.reason == "CLUSTER_UNAVAILABLE"
            assert (await bs.get("x", local=True)).value == 99

    asyncio.run(run())


def test_single_server_gives_no_position(client: varwatch.Client, session: varwatch.Session) -> None:
    v = session.register("x", "integer", 0)
    assert v.position is None and session.position is None
    assert session.set("x", 1).position is None
    assert client.last_position is None
    with session.writer() as w:
        p = w.set("x", 1)
    assert p.result(timeout=10).position is None
    # The read options mean nothing to a single server.
    assert session.get("x", position=5, local=True).value == 1
