"""Test helpers that wait with a timeout: a test waits for an event, it
never sleeps and hopes."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, List

import varwatch

TIMEOUT = 20.0


def take(watch: varwatch.Watch, n: int, timeout: float = TIMEOUT) -> List[varwatch.Update]:
    """The next n updates of a sync watch; fails after timeout (by closing
    the watch, which unblocks the pending next())."""
    got: List[varwatch.Update] = []
    timer = threading.Timer(timeout, watch.close)
    timer.daemon = True
    timer.start()
    try:
        for u in watch:
            got.append(u)
            if len(got) == n:
                return got
    finally:
        timer.cancel()
    raise AssertionError(f"watch ended or timed out after {timeout}s with {len(got)} of {n} updates: {got[-5:]}")


def take_until(watch: varwatch.Watch, pred: Callable[[varwatch.Update], bool],
               timeout: float = TIMEOUT) -> List[varwatch.Update]:
    """Updates of a sync watch up to and including the first matching pred."""
    got: List[varwatch.Update] = []
    timer = threading.Timer(timeout, watch.close)
    timer.daemon = True
    timer.start()
    try:
        for u in watch:
            got.append(u)
            if pred(u):
                return got
    finally:
        timer.cancel()
    raise AssertionError(f"watch ended or timed out after {timeout}s; last updates: {got[-5:]}")


async def atake(watch: varwatch.AsyncWatch, n: int, timeout: float = TIMEOUT) -> List[varwatch.Update]:
    """The next n updates of an async watch; fails after timeout."""
    got: List[varwatch.Update] = []

    async def run() -> None:
        async for u in watch:
            got.append(u)
            if len(got) == n:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {timeout}s with {len(got)} of {n} updates: {got[-5:]}") from None
    if len(got) != n:
        raise AssertionError(f"watch ended with {len(got)} of {n} updates: {got[-5:]}")
    return got


async def atake_until(watch: varwatch.AsyncWatch, pred: Callable[[varwatch.Update], bool],
                      timeout: float = TIMEOUT) -> List[varwatch.Update]:
    got: List[varwatch.Update] = []

    async def run() -> bool:
        async for u in watch:
            got.append(u)
            if pred(u):
                return True
        return False

    try:
        ok = await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {timeout}s; last updates: {got[-5:]}") from None
    if not ok:
        raise AssertionError(f"watch ended; last updates: {got[-5:]}")
    return got


def wait_for(pred: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    """Polls pred until it returns something truthy; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def changes(updates: List[varwatch.Update], name: str) -> List[Any]:
    """The values of the value_change updates of one variable."""
    return [u.value for u in updates if u.type == "value_change" and u.name == name]
