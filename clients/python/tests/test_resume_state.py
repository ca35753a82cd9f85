"""The resume logic on made-up streams (no server): what it hands out, and
what it asks for on each reconnect."""

from __future__ import annotations

from typing import Any, List, Optional

import grpc
import pytest

import varwatch
from varwatch._proto.varwatch.v1 import bridge_pb2 as pb
from varwatch._resume import INCARNATION_HEADER, SNAPSHOT_REVISION_HEADER, ResumeState, WatchOptions
from varwatch._details import ErrorInfo
from varwatch.errors import from_status


def upd(kind: str, rev: int, name: str = "x", value: Optional[float] = None) -> Any:
    u = pb.VariableUpdate(update_type=kind, revision=rev)
    if name and kind not in ("heartbeat", "initial_values_complete", "session_closed"):
        u.variable_id = name
        u.variable.name = name
        u.variable.value.float_value = float(rev if value is None else value)
    return u


def feed(st: ResumeState, *updates: Any) -> List[tuple[str, str, int]]:
    out = []
    for u in updates:
        out += [(str(x.type), x.name, x.revision) for x in st.feed(u)]
    return out


def state(**kw: Any) -> ResumeState:
    kw.setdefault("initial_backoff", 0.1)
    kw.setdefault("jitter", 0.0)
    return ResumeState(WatchOptions(session_id="s", **kw))


def slow(delivered: int) -> varwatch.VarwatchError:
    return from_status(grpc.StatusCode.RESOURCE_EXHAUSTED,
                       f"watch fell too far behind and was cut off: every change up to revision {delivered} "
                       f"was delivered; resume with start_revision={delivered}",
                       ErrorInfo("SLOW_CONSUMER", "varwatch.v1", {"resume_revision": str(delivered)}))


DROP = from_status(grpc.StatusCode.UNAVAILABLE, "Socket closed")


def test_fresh_watch_takes_its_base_from_the_header() -> None:
    st = state()
    req = st.next_request()
    assert not req.HasField("start_revision") and not req.include_initial_values
    assert st.on_header(((SNAPSHOT_REVISION_HEADER, "7"),))
    assert st.revision == 7
    st.on_error(DROP)
    req = st.next_request()
    assert req.HasField("start_revision") and req.start_revision == 7


def test_header_without_revision_is_not_established() -> None:
    st = state()
    st.next_request()
    assert not st.on_header(())
    assert st.revision is None


def test_changes_advance_and_replays_are_dropped() -> None:
    st = state(start_revision=3)
    req = st.next_request()
    assert req.start_revision == 3 and req.HasField("start_revision")
    assert feed(st, upd("value_change", 4), upd("value_change", 5)) == [
        ("value_change", "x", 4), ("value_change", "x", 5)]
    assert st.revision == 4 and st.last_revision == 5
    st.on_error(slow(5))  # the server only ends between whole revisions
    assert st.revision == 5
    req = st.next_request()
    assert req.start_revision == 5
    # A replay that overlaps is cut at the seam.
    assert feed(st, upd("value_change", 5), upd("value_change", 6)) == [("value_change", "x", 6)]


def test_start_revision_zero_is_sent() -> None:
    req = state(start_revision=0).next_request()
    assert req.HasField("start_revision") and req.start_revision == 0


def test_partial_atomic_set_resumes_one_revision_earlier_and_skips() -> None:
    st = state(start_revision=0)
    st.next_request()
    # Revision 2 is an atomic set of a, b, c; the connection drops after b.
    got = feed(st, upd("value_change", 1, "a"), upd("value_change", 2, "a"), upd("value_change", 2, "b"))
    assert [g[2] for g in got] == [1, 2, 2]
    assert st.revision == 1
    st.on_error(DROP)  # a transport drop names no revision
    req = st.next_request()
    assert req.start_revision == 1
    # The replay sends all of revision 2 again: a and b are skipped, c is new.
    got = feed(st, upd("value_change", 2, "a"), upd("value_change", 2, "b"), upd("value_change", 2, "c"),
               upd("value_change", 3, "a"))
    assert got == [("value_change", "c", 2), ("value_change", "a", 3)]
    assert st.revision == 2


def test_heartbeat_completes_a_revision() -> None:
    st = state(start_revision=0)
    st.next_request()
    feed(st, upd("value_change", 1, "a"))
    assert st.revision == 0
    assert feed(st, upd("heartbeat", 1)) == []
    assert st.revision == 1
    st.on_error(DROP)
    assert st.next_request().start_revision == 1


def test_delivered_revision_never_moves_past_what_arrived() -> None:
    st = state(start_revision=0)
    st.next_request()
    feed(st, upd("value_change", 3))
    st.on_error(slow(10))
    assert st.revision == 3
    assert st.next_request().start_revision == 3


def test_snapshot_is_held_until_complete_and_restarted_after_a_drop() -> None:
    st = state(include_initial_values=True)
    req = st.next_request()
    assert req.include_initial_values and not req.HasField("start_revision")
    st.on_header(((SNAPSHOT_REVISION_HEADER, "5"),))
    assert st.revision is None  # the snapshot brings its own base
    assert feed(st, upd("initial_value", 5, "a")) == []
    st.on_error(DROP)
    req = st.next_request()
    assert req.include_initial_values  # half a snapshot is thrown away
    got = feed(st, upd("initial_value", 6, "a"), upd("initial_value", 6, "b"), upd("initial_values_complete", 6))
    assert got == [("initial_value", "a", 6), ("initial_value", "b", 6), ("initial_values_complete", "", 6)]
    assert st.revision == 6
    st.on_error(DROP)
    req = st.next_request()
    assert not req.include_initial_values and req.start_revision == 6


def test_heartbeats_are_hidden_and_session_closed_ends() -> None:
    st = state()
    st.next_request()
    st.on_header(((SNAPSHOT_REVISION_HEADER, "0"),))
    assert feed(st, upd("heartbeat", 0)) == []
    assert feed(st, upd("session_closed", 0)) == [("session_closed", "", 0)]
    assert st.done


def test_compacted_raises_unless_resnapshot() -> None:
    compacted = from_status(grpc.StatusCode.OUT_OF_RANGE, "resume from 40 or later",
                            ErrorInfo("REVISION_COMPACTED", "varwatch.v1", {"compacted_revision": "40", "requested_revision": "1"}))
    st = state(start_revision=1)
    st.next_request()
    with pytest.raises(varwatch.Compacted) as ei:
        st.on_error(compacted)
    assert ei.value.oldest_revision == 40

    st = state(start_revision=1, resnapshot_on_compacted=True)
    st.next_request()
    assert st.on_error(compacted) == 0.0
    req = st.next_request()
    assert req.include_initial_values and not req.HasField("start_revision")


@pytest.mark.parametrize("err", [
    from_status(grpc.StatusCode.NOT_FOUND, 'session "s" not found'),
    from_status(grpc.StatusCode.INVALID_ARGUMENT, "bad"),
    from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many watches"),
    from_status(grpc.StatusCode.UNIMPLEMENTED, "no"),
    # A server's INTERNAL carries its reason (every varwatch status does).
    from_status(grpc.StatusCode.INTERNAL, "boom", ErrorInfo("INTERNAL", "varwatch.v1")),
])
def test_fatal_errors_are_raised(err: varwatch.VarwatchError) -> None:
    st = state()
    st.next_request()
    with pytest.raises(type(err)):
        st.on_error(err)


def test_backoff_grows_to_its_cap_and_retries_are_capped() -> None:
    st = state(start_revision=0, max_retries=5, initial_backoff=0.1, max_backoff=0.5)
    delays = []
    for _ in range(5):
        st.next_request()
        delays.append(st.on_error(DROP))
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    st.next_request()
    with pytest.raises(varwatch.Unavailable):
        st.on_error(DROP)


def test_progress_resets_the_retry_count() -> None:
    st = state(start_revision=0, max_retries=1)
    for rev in range(1, 5):
        st.next_request()
        feed(st, upd("value_change", rev))
        st.on_error(DROP)  # never raises: each attempt made progress
    assert st.resumes == 3


def test_resume_false_raises_at_once() -> None:
    st = state(resume=False)
    st.next_request()
    with pytest.raises(varwatch.Unavailable):
        st.on_error(DROP)


def test_options_are_validated() -> None:
    with pytest.raises(varwatch.InvalidValue):
        state(include_initial_values=True, start_revision=3)
    with pytest.raises(varwatch.InvalidValue):
        state(start_revision=-1)


def test_batch_options_imply_batched() -> None:
    assert state().opts.batched is False
    assert state(max_batch_size=10).opts.batched is True
    assert state(max_batch_delay=0.01).opts.batched is True
    with pytest.raises(varwatch.InvalidValue):
        state(batched=False, max_batch_size=10)


def test_heartbeat_before_a_slow_consumer_cut_off_is_trusted() -> None:
    # The server drops what was queued and ends the stream in one step
    # (engine TestCutOffIsAtomicForHeartbeats), so a heartbeat received
    # before the cut-off vouches only for what was delivered: the resume
    # starts from it, as the Go client's does.
    st = state(start_revision=0)
    st.next_request()
    feed(st, upd("value_change", 1), upd("value_change", 2))
    feed(st, upd("heartbeat", 6))
    assert st.revision == 6
    st.on_error(slow(6))
    assert st.revision == 6
    assert st.next_request().start_revision == 6


def test_heartbeat_followed_by_a_change_stays_trusted() -> None:
    st = state(start_revision=0)
    st.next_request()
    feed(st, upd("value_change", 1), upd("heartbeat", 5), upd("value_change", 7))
    st.on_error(slow(7))
    assert st.revision == 7
    # An unavailable server does not drop what was queued: heartbeats stand.
    feed(st, upd("heartbeat", 9))
    st.on_error(DROP)
    assert st.next_request().start_revision == 9


# ---- incarnations ----

def incarnation_changed(current: str, requested: str) -> varwatch.VarwatchError:
    return varwatch.IncarnationChanged(
        "session incarnation changed", grpc.StatusCode.FAILED_PRECONDITION,
        session_id="s", current_incarnation=current, requested_incarnation=requested,
    )


def test_resume_names_the_incarnation_learnt_from_the_stream() -> None:
    st = state()
    assert st.next_request().incarnation == ""  # nothing known yet: no check
    st.on_header([(SNAPSHOT_REVISION_HEADER, "3"), (INCARNATION_HEADER, "aaaa")])
    hb = upd("heartbeat", 3)
    hb.incarnation = "aaaa"
    feed(st, hb, upd("value_change", 4))
    st.on_error(from_status(grpc.StatusCode.UNAVAILABLE, "connection lost"))
    req = st.next_request()
    assert (req.start_revision, req.incarnation) == (3, "aaaa")  # 4 may be partial


def test_changed_incarnation_raises_unless_resnapshot() -> None:
    st = state(start_revision=5, incarnation="aaaa")
    assert st.next_request().incarnation == "aaaa"
    with pytest.raises(varwatch.IncarnationChanged):
        st.on_error(incarnation_changed("bbbb", "aaaa"))

    st = state(start_revision=5, incarnation="aaaa", resnapshot_on_compacted=True)
    st.next_request()
    assert st.on_error(incarnation_changed("bbbb", "aaaa")) == 0.0
    req = st.next_request()
    assert req.include_initial_values and not req.HasField("start_revision") and req.incarnation == ""
    done = upd("initial_values_complete", 2)
    done.incarnation = "bbbb"
    assert feed(st, upd("initial_value", 2), done) == [("initial_value", "x", 2), ("initial_values_complete", "", 2)]
    assert st.incarnation == "bbbb"


def test_an_update_of_another_incarnation_ends_the_watch() -> None:
    # A server that did not check the resume: its greeting names the new
    # incarnation, and nothing after it may be handed out.
    st = state(start_revision=5, incarnation="aaaa")
    st.next_request()
    hb = upd("heartbeat", 5)
    hb.incarnation = "bbbb"
    with pytest.raises(varwatch.IncarnationChanged) as e:
        st.feed(hb)
    assert (e.value.current_incarnation, e.value.requested_incarnation) == ("bbbb", "aaaa")


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN])
def test_a_broken_transport_resumes(code: grpc.StatusCode) -> None:
    """INTERNAL or UNKNOWN with no ErrorInfo is grpcio's reset or removed
    stream, whatever its text: the watch resumes."""
    st = state(start_revision=0)
    st.next_request()
    assert st.on_error(from_status(code, "any text at all")) >= 0.0
