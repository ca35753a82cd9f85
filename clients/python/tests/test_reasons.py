"""Watch ends are decided on the status's ErrorInfo reason, not its text:
a slow consumer or a shutdown resumes, a limit surfaces at once."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

import varwatch
from varwatch._details import error_info
from varwatch._resume import retryable
from varwatch.errors import from_status
from helpers import atake, take


# ---- decoding google.rpc.Status / ErrorInfo from the trailer ----

def _field(num: int, payload: bytes) -> bytes:
    assert len(payload) < 128 and num < 16
    return bytes([num << 3 | 2, len(payload)]) + payload


def status_bin(reason: str, domain: str = "varwatch.v1", **meta: str) -> bytes:
    info = _field(1, reason.encode()) + _field(2, domain.encode())
    for k, v in meta.items():
        info += _field(3, _field(1, k.encode()) + _field(2, v.encode()))
    any_ = _field(1, b"type.googleapis.com/google.rpc.ErrorInfo") + _field(2, info)
    return bytes([0x08, 8]) + _field(2, b"msg") + _field(3, any_)  # code 8, message, details


def test_error_info_is_read_from_the_trailer() -> None:
    trailers = [("x-other", "1"), ("grpc-status-details-bin", status_bin("LIMIT_EXCEEDED", limit="max_sessions", value="10"))]
    info = error_info(trailers)
    assert info is not None
    assert (info.reason, info.domain, info.metadata) == ("LIMIT_EXCEEDED", "varwatch.v1",
                                                         {"limit": "max_sessions", "value": "10"})
    assert error_info([("grpc-status-details-bin", status_bin("X", domain="other.domain"))]) is None
    assert error_info([("grpc-status-details-bin", b"\xff\xff")]) is None  # garbage is no reason to fail
    assert error_info(None) is None


def test_resource_exhausted_is_told_apart_by_reason() -> None:
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    # A limit whose text happens to say "cut off" is still a limit.
    limit = from_status(code, "watch cut off: too big (limit max_value_bytes=10)",
                        error_info([("grpc-status-details-bin", status_bin("LIMIT_EXCEEDED"))]))
    assert type(limit) is varwatch.ResourceExhausted and limit.reason == "LIMIT_EXCEEDED"
    assert not retryable(limit)
    # A slow consumer whatever its text; the revision comes from the detail.
    slow = from_status(code, "something else entirely",
                       error_info([("grpc-status-details-bin", status_bin("SLOW_CONSUMER", resume_revision="42"))]))
    assert isinstance(slow, varwatch.SlowConsumer) and slow.delivered_revision == 42
    assert slow.reason_metadata == {"resume_revision": "42"}
    assert retryable(slow)


# ---- against a real server ----

def test_watch_over_the_stream_limit_raises_at_once(start_server: Any) -> None:
    srv = start_server("--max-watch-streams-per-session", "1", "--heartbeat-interval", "100ms")
    with varwatch.Client(srv.target) as c, c.create_session() as s:
        s.register("x", "integer", 0)
        first = s.watch("x")  # holds the session's one stream
        with pytest.raises(varwatch.ResourceExhausted) as ei:
            s.watch("x", initial_backoff=0.001, max_retries=3)
        assert not isinstance(ei.value, varwatch.SlowConsumer)
        assert ei.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ei.value.reason == "LIMIT_EXCEEDED"
        assert ei.value.reason_metadata.get("limit") == "max_watch_streams_per_session"
        first.close()


def test_watch_over_the_stream_limit_raises_at_once_async(start_server: Any) -> None:
    srv = start_server("--max-watch-streams-per-session", "1", "--heartbeat-interval", "100ms")

    async def main() -> None:
        async with varwatch.AsyncClient(srv.target) as c:
            async with await c.create_session() as s:
                await s.register("x", "integer", 0)
                first = await s.watch("x").start()
                second = s.watch("x", initial_backoff=0.001, max_retries=3)
                with pytest.raises(varwatch.ResourceExhausted) as ei:
                    await atake(second, 1)
                assert ei.value.reason == "LIMIT_EXCEEDED"
                assert second.resumes == 0
                await first.aclose()

    asyncio.run(main())


def test_slow_consumer_carries_its_reason(small_buffer_server: Any) -> None:
    with varwatch.Client(small_buffer_server.target) as c, c.create_session() as s:
        s.register("x", "integer", 0)
        w = s.watch("x", resume=False)
        for _ in range(25):
            assert s.set_many([("x", i) for i in range(20)]).ok
        with pytest.raises(varwatch.SlowConsumer) as ei:
            take(w, 500)
        assert ei.value.reason == "SLOW_CONSUMER"
        assert ei.value.delivered_revision == int(ei.value.reason_metadata["resume_revision"])


# ---- identifiers are not echoed whole ----

def test_a_megabyte_identifier_gets_its_code_and_a_short_message(client: varwatch.Client,
                                                                 session: varwatch.Session) -> None:
    """grpcio refuses trailers over 8 KiB: a message quoting a 1 MiB id
    used to reach the caller as INTERNAL instead of the server's code."""
    session.register("x", "string", "start", max_length=8)
    before = session.get("x")
    huge = "x" * (1 << 20)
    calls = [
        lambda: client.get_session(huge),
        lambda: session.get(huge),
        lambda: session.set(huge, "v"),
        lambda: session.delete(huge),
        lambda: session.set("x", huge),  # a value over max_length
    ]
    for call in calls:
        with pytest.raises(varwatch.InvalidValue) as ei:
            call()
        assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert len(ei.value.message) < 2048 and "bytes" in ei.value.message
    after = session.get("x")
    assert (after.value, after.version) == (before.value, before.version)


# ---- coalesced counts after a resume ----

@pytest.mark.parametrize("batched", [False, True])
def test_coalesced_counts_add_up_after_a_resume(start_server: Any, batched: bool) -> None:
    """A coalescing watch cut right after its first change resumes from the
    revision before it (the change might be part of an atomic set) and
    skips it; the replay must not merge it into the later changes, or the
    counts add up to more than the writes. No heartbeats (default 30s):
    nothing vouches that the first change's revision is complete."""
    from conftest import Proxy

    srv = start_server()
    proxy = Proxy(srv.target)
    try:
        with varwatch.Client(srv.target) as direct, direct.create_session() as s, \
                varwatch.Client(proxy.target) as via:
            s.register("x", "integer", 0)
            w = via.session(s.id).watch("x", include_initial_values=True, coalesce=True, batched=batched,
                                        initial_backoff=0.01)
            assert [u.type for u in take(w, 2)] == ["initial_value", "initial_values_complete"]
            writes = 3
            s.set("x", 1)
            first = take(w, 1)[0]
            assert (first.type, first.value) == ("value_change", 1)
            proxy.cut()  # the watch reads nothing until the next take
            for v in range(2, writes + 1):
                s.set("x", v)
            counts = [max(first.coalesced_count, 1)]
            last = first
            while sum(counts) < writes:
                last = take(w, 1)[0]
                counts.append(max(last.coalesced_count, 1))
            assert sum(counts) == writes, counts
            assert last.value == writes
            assert w.resumes >= 1
            w.close()
    finally:
        proxy.close()
