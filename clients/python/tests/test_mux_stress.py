"""A randomized test of the shared Watch stream against an independent
model: one writer makes atomic sets of random variables (the model is the
list of acknowledged changes, by revision); watches on random variables
are created and cancelled at random, the connection is cut at random, and
the per-watch queue is small so readers that pause fall behind and resume.
Every watch must have handed out exactly the model's changes of its
variables after its start, in revision order, with none missing or twice
(a cancelled one: a prefix of them).
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from typing import Any, List, Tuple

import pytest

import varwatch
from varwatch import _mux
from helpers import TIMEOUT, wait_for

VARS = ["a", "b", "c", "d"]
WRITES = 300
Change = Tuple[int, str, int]  # revision, variable, value


class Reader:
    """A watch and the thread that reads it, pausing now and then."""

    def __init__(self, w: varwatch.Watch, names: List[str], start: int) -> None:
        self.w, self.names, self.start = w, names, start
        self.got: List[Change] = []
        self.mu = threading.Lock()
        self.pause = threading.Event()  # set: read; clear: stall (so the queue overflows)
        self.pause.set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for u in self.w:
            if u.type == "value_change":
                with self.mu:
                    self.got.append((u.revision, u.name, u.value))
            self.pause.wait(TIMEOUT)

    def changes(self) -> List[Change]:
        with self.mu:
            return list(self.got)


def expected(model: List[Change], names: List[str], start: int) -> List[Change]:
    return [c for c in model if c[1] in names and c[0] > start]


def check(r: Any, model: List[Change], complete: bool) -> None:
    """complete: exactly the model's changes; else (a cancelled watch) a
    prefix of them: no duplicate, nothing the model lacks, and no gap
    before its last revision (within one revision the order is the
    server's, so a prefix may end anywhere inside it)."""
    got = r.changes()
    revs = [c[0] for c in got]
    assert revs == sorted(revs), f"out of order: {got[:20]}"
    assert len(set(got)) == len(got), "a change handed out twice"
    want = expected(model, r.names, r.start)
    if complete:
        assert sorted(got) == sorted(want)
        return
    assert set(got) <= set(want), f"changes the model lacks: {sorted(set(got) - set(want))[:5]}"
    if got:
        missing = {c for c in want if c[0] < got[-1][0]} - set(got)
        assert not missing, f"gap: {sorted(missing)[:5]}"


@pytest.mark.parametrize("seed", [int(os.environ.get("VARWATCH_STRESS_SEED", "0")) or random.randrange(1 << 30)])
def test_shared_stream_random_watches_cuts_and_slow_readers(server: Any, proxy: Any, seed: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    print("seed", seed)  # shown on failure; VARWATCH_STRESS_SEED replays it
    monkeypatch.setattr(_mux, "QUEUE_LIMIT", 8)
    model: List[Change] = []
    with varwatch.Client(server.target) as direct, direct.create_session() as s, \
            varwatch.Client(proxy.target) as via:
        for n in VARS:
            s.register(n, "integer", 0)
        ws = via.session(s.id)
        live: List[Reader] = []
        gone: List[Reader] = []
        for i in range(WRITES):
            names = rng.sample(VARS, rng.randint(1, len(VARS)))
            r = s.set_many([(n, i * 10 + j) for j, n in enumerate(names)], atomic=True)
            model += [(r.revision, n, i * 10 + j) for j, n in enumerate(names)]
            roll = rng.random()
            if roll < 0.06 or not live:
                names = rng.sample(VARS, rng.randint(1, 2))
                w = ws.watch(names, initial_backoff=0.01, max_retries=None)
                assert w.revision is not None
                live.append(Reader(w, names, w.revision))
            elif roll < 0.09 and len(live) > 1:
                rd = live.pop(rng.randrange(len(live)))
                rd.w.close()
                rd.pause.set()
                gone.append(rd)
            elif roll < 0.11:
                proxy.cut()
            elif roll < 0.16:
                rd = rng.choice(live)
                if rd.pause.is_set():
                    rd.pause.clear()
                else:
                    rd.pause.set()
        for rd in live:
            rd.pause.set()
        for rd in live:
            want = len(expected(model, rd.names, rd.start))
            wait_for(lambda: len(rd.changes()) >= want, what=f"watch of {rd.names} to catch up ({want} changes)")
        for rd in live + gone:
            rd.w.close()
            rd.thread.join(TIMEOUT)
            assert not rd.thread.is_alive()
        for rd in live:
            check(rd, model, complete=True)
        for rd in gone:
            check(rd, model, complete=False)
        assert sum(rd.w.resumes for rd in live + gone) > 0
    assert not via._mux.threads()


class AsyncReader:
    """An async watch and the task that reads it, stalling when told."""

    def __init__(self, w: varwatch.AsyncWatch, names: List[str], start: int) -> None:
        self.w, self.names, self.start = w, names, start
        self.got: List[Change] = []
        self.pause = asyncio.Event()
        self.pause.set()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for u in self.w:
            if u.type == "value_change":
                self.got.append((u.revision, u.name, u.value))
            await self.pause.wait()

    def changes(self) -> List[Change]:
        return list(self.got)


@pytest.mark.parametrize("seed", [int(os.environ.get("VARWATCH_STRESS_SEED", "0")) or random.randrange(1 << 30)])
def test_async_shared_stream_random_watches_cuts_and_slow_readers(server: Any, proxy: Any, seed: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    print("seed", seed)
    monkeypatch.setattr(_mux, "QUEUE_LIMIT", 8)

    async def main() -> None:
        model: List[Change] = []
        async with varwatch.AsyncClient(server.target) as direct, varwatch.AsyncClient(proxy.target) as via:
            s = await direct.create_session()
            try:
                for n in VARS:
                    await s.register(n, "integer", 0)
                ws = via.session(s.id)
                live: List[AsyncReader] = []
                gone: List[AsyncReader] = []
                for i in range(WRITES):
                    names = rng.sample(VARS, rng.randint(1, len(VARS)))
                    r = await s.set_many([(n, i * 10 + j) for j, n in enumerate(names)], atomic=True)
                    model.extend((r.revision, n, i * 10 + j) for j, n in enumerate(names))
                    roll = rng.random()
                    if roll < 0.06 or not live:
                        names = rng.sample(VARS, rng.randint(1, 2))
                        w = await ws.watch(names, initial_backoff=0.01, max_retries=None).start()
                        assert w.revision is not None
                        live.append(AsyncReader(w, names, w.revision))
                    elif roll < 0.09 and len(live) > 1:
                        rd = live.pop(rng.randrange(len(live)))
                        await rd.w.aclose()
                        rd.pause.set()
                        gone.append(rd)
                    elif roll < 0.11:
                        proxy.cut()
                    elif roll < 0.16:
                        rd = rng.choice(live)
                        if rd.pause.is_set():
                            rd.pause.clear()
                        else:
                            rd.pause.set()
                for rd in live:
                    rd.pause.set()
                for rd in live:
                    want = len(expected(model, rd.names, rd.start))
                    deadline = asyncio.get_running_loop().time() + TIMEOUT
                    while len(rd.changes()) < want:
                        assert asyncio.get_running_loop().time() < deadline, \
                            f"watch of {rd.names} has {len(rd.changes())} of {want} changes"
                        await asyncio.sleep(0.01)
                for rd in live + gone:
                    await rd.w.aclose()
                    await asyncio.wait_for(rd.task, TIMEOUT)
                for rd in live:
                    check(rd, model, complete=True)
                for rd in gone:
                    check(rd, model, complete=False)
                assert sum(rd.w.resumes for rd in live + gone) > 0
            finally:
                await s.cleanup()
            await via.close()
            assert not via._mux.tasks()

    asyncio.run(main())
