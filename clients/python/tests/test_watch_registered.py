"""``watch()`` returns once the server has registered the watch: a set
made right after it is always seen, on every kind of stream, sync and
async (``await session.watch(...)`` and ``async with session.watch(...)``).

The watches ask for no initial values, so each starts wherever the server
registered it: a set that raced the registration would be lost, and the
wait for it would time out.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import varwatch
from helpers import TIMEOUT, atake_until, take_until

ROUNDS = 40

MODES = {
    "mux": {},
    "dedicated": {"dedicated": True},
    "batched": {"batched": True},
}


def is_value(v: int) -> Any:
    return lambda u: u.type == "value_change" and u.value == v


@pytest.mark.parametrize("mode", list(MODES))
def test_sync_watch_sees_a_set_made_right_after(session: varwatch.Session, mode: str) -> None:
    session.register("x", "integer", 0)
    for i in range(1, ROUNDS + 1):
        with session.watch("x", **MODES[mode]) as w:
            session.set("x", i)
            take_until(w, is_value(i))


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("form", ["await", "async with"])
def test_async_watch_sees_a_set_made_right_after(server: Any, mode: str, form: str) -> None:
    async def main() -> None:
        async with varwatch.AsyncClient(server.target, timeout=10) as c:
            async with await c.create_session() as s:
                await s.register("x", "integer", 0)
                for i in range(1, ROUNDS + 1):
                    if form == "await":
                        w = await s.watch("x", **MODES[mode])
                        await s.set("x", i)
                        await atake_until(w, is_value(i))
                        await w.aclose()
                    else:
                        async with s.watch("x", **MODES[mode]) as w:
                            await s.set("x", i)
                            await atake_until(w, is_value(i))

    asyncio.run(asyncio.wait_for(main(), TIMEOUT * 4))


def test_awaiting_a_refused_watch_raises(server: Any) -> None:
    async def main() -> None:
        async with varwatch.AsyncClient(server.target, timeout=10) as c:
            for mode in MODES.values():
                with pytest.raises(varwatch.SessionNotFound):
                    await c.session("no-such-session").watch("x", resume=False, **mode)

    asyncio.run(main())
