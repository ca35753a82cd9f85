"""session.writer(): the ordered write stream, sync and async."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import varwatch
from helpers import TIMEOUT, take

from test_client_async import run


def test_writer_orders_and_acks(session: varwatch.Session) -> None:
    session.register("x", "float", 0.0)
    w = session.watch("x")
    with session.writer(window=2, max_batch=7) as wr:
        pending = [wr.set("x", float(i)) for i in range(1, 201)]
        bad = wr.set("x", "not a float", type="string")  # the server refuses it
        after = wr.set("x", 1000.0)
        wr.flush(timeout=TIMEOUT)
        acks = [p.result(0) for p in pending]
    assert [a.version for a in acks] == list(range(2, 202))
    assert all(b.revision == a.revision + 1 for a, b in zip(acks, acks[1:]))
    with pytest.raises(varwatch.InvalidValue):
        bad.result(0)
    assert after.result(0).version == 202
    seen = take(w, 201)
    assert [u.value for u in seen] == [float(i) for i in range(1, 201)] + [1000.0]
    assert [u.revision for u in seen[:200]] == [a.revision for a in acks]
    w.close()
    with pytest.raises(varwatch.WriterClosed):
        wr.set("x", 1.0, type="float").result(0)


def test_writer_upserts(session: varwatch.Session) -> None:
    w = session.watch(pattern="m.*")
    with session.writer() as wr:
        a = wr.set("m.loss", 0.5, create=True)
        b = wr.set("m.step", 3, create=True)
        c = wr.set("m.loss", 0.25, create=True)
    assert a.result(0).version == 1 and c.result(0).version == 2 and b.result(0).version == 1
    got = [(u.type.value, u.variable.name) for u in take(w, 5)]
    assert got == [("variable_registered", "m.loss"), ("value_change", "m.loss"),
                   ("variable_registered", "m.step"), ("value_change", "m.step"), ("value_change", "m.loss")]
    assert session.get("m.step").type == varwatch.VariableType.INTEGER
    w.close()


def test_writer_unknown_session(client: varwatch.Client) -> None:
    wr = client.session("no-such-session").writer()
    p = wr.set("x", 1.0, type="float")
    with pytest.raises(varwatch.WriteStreamError) as e:
        p.result(TIMEOUT)
    assert isinstance(e.value.cause, varwatch.SessionNotFound)
    with pytest.raises(varwatch.WriteStreamError):
        wr.close()


def test_async_writer(server: Any) -> None:
    async def t(c: varwatch.AsyncClient, s: varwatch.AsyncSession) -> None:
        await s.register("x", "integer", 0)
        async with s.writer(window=3, max_batch=5) as wr:
            ps = [await wr.set("x", i) for i in range(1, 51)]
            bad = await wr.set("ghost", 1, type="integer")
            up = await wr.set("fresh", "hello", create=True)
            await wr.flush()
            acks = [await p for p in ps]
        assert [a.version for a in acks] == list(range(2, 52))
        assert all(b.revision > a.revision for a, b in zip(acks, acks[1:]))
        with pytest.raises(varwatch.VariableNotFound):
            await bad
        assert (await up).version == 1
        assert (await s.get("fresh")).value == "hello"
        assert (await s.get("x")).value == 50

    run(server, t)
