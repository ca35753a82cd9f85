"""The sync Client against a real server: every method, every error."""

from __future__ import annotations

import datetime as dt
import gc
import threading
import uuid
from typing import Any

import grpc
import pytest

import varwatch
from helpers import take, take_until, wait_for
from varwatch import values

np = values.numpy_module()


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ---- server and sessions ----

def test_ping(client: varwatch.Client) -> None:
    pong = client.ping("hello")
    assert pong.message == "hello"
    assert isinstance(pong.server_time, dt.datetime) and pong.server_time.tzinfo is not None
    assert abs((pong.server_time - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 60


def test_sessions(client: varwatch.Client) -> None:
    sid = uid("s")
    s = client.create_session(sid, metadata={"owner": "tests"}, ttl=120)
    assert s.id == sid and s.created is True
    assert s.info is not None and s.info.metadata == {"owner": "tests"}
    assert s.info.ttl == dt.timedelta(seconds=120)
    again = client.create_session(sid, metadata={"ignored": "yes"})
    assert again.created is False and again.info is not None and again.info.metadata == {"owner": "tests"}

    s.register("a", "float", 1.0)
    info = client.get_session(sid)
    assert info.id == sid and info.variable_count == 1 and info.revision == 1
    assert info.expires_at is not None and info.created_at is not None and info.expires_at > info.created_at
    assert s.refresh() == info or s.refresh().variable_count == 1
    assert sid in [x.id for x in client.list_sessions()]
    ids = [x.id for x in client.list_sessions()]
    assert ids == sorted(ids)

    hb = s.heartbeat()
    assert hb.session_valid and hb.expires_at is not None and hb.server_time is not None
    assert client.heartbeat(sid).session_valid

    assert s.cleanup() == 1
    assert not client.heartbeat(sid).session_valid
    with pytest.raises(varwatch.SessionNotFound):
        client.get_session(sid)
    with pytest.raises(varwatch.SessionNotFound):
        client.cleanup_session(sid)


def test_generated_session_id_and_context_manager(client: varwatch.Client) -> None:
    with client.create_session() as s:
        assert s.id and s.created
        s.register("x", "integer", 1)
        sid = s.id
    with pytest.raises(varwatch.SessionNotFound):
        client.get_session(sid)
    # Leaving the block after the session is gone already is fine.
    with client.create_session() as s2:
        s2.cleanup()


def test_session_handle(client: varwatch.Client, session: varwatch.Session) -> None:
    session.register("x", "string", "hi")
    h = client.session(session.id)
    assert h.info is None and h.created is None
    assert h.get("x").value == "hi"


# ---- variables ----

def test_register_get_set(session: varwatch.Session) -> None:
    v = session.register("lr", varwatch.VariableType.FLOAT, 0.5, min=0, max=1, metadata={"unit": "1"})
    assert (v.name, v.type, v.value, v.version) == ("lr", "float", 0.5, 1)
    assert v.metadata == {"unit": "1"}
    assert v.constraints.min == 0 and v.constraints.max == 1
    assert v.create_revision == v.mod_revision == 1
    assert isinstance(v.created_at, dt.datetime)

    assert session.get("lr") == v
    assert session.get(v.id).name == "lr"

    s = session.set("lr", 0.25, source="trainer", metadata={"step": "10"})
    assert s.value == 0.25 and s.version == 2 and s.mod_revision == 2
    assert s.last_update_source == "trainer"
    assert s.metadata["step"] == "10" and s.metadata["unit"] == "1"
    s = session.set("lr", 1, expected_version=2)  # an int for a float variable
    assert s.value == 1.0 and isinstance(s.value, float) and s.version == 3


def test_constraints_of_every_kind(session: varwatch.Session) -> None:
    n = session.register("n", "integer", 5, min=0, max=10)
    assert (n.constraints.min, n.constraints.max) == (0, 10)
    s = session.register("name", "string", "abc", min_length=1, max_length=5, pattern="[a-z]+")
    assert (s.constraints.min_length, s.constraints.max_length, s.constraints.pattern) == (1, 5, "[a-z]+")
    c = session.register("opt", "choice", "adam", choices=["adam", "sgd"])
    assert c.constraints.choices == ("adam", "sgd")
    m = session.register("act", "module", "torch.nn.ReLU", allowed_modules=["torch.nn.ReLU", "torch.nn.GELU"])
    assert m.constraints.allowed_modules == ("torch.nn.ReLU", "torch.nn.GELU")
    e = session.register("emb", "embedding", [0.0, 1.0, 2.0], dimensions=3)
    assert e.constraints.dimensions == 3
    t = session.register("w", "tensor", varwatch.Tensor.from_list([1.0, 2.0], "float32"), shape=[-1])
    assert t.constraints.shape == (-1,)

    for ident, bad in [("n", 11), ("name", "toolong"), ("name", "ABC"), ("opt", "rmsprop"),
                       ("act", "os.system"), ("emb", [1.0]),
                       ("w", varwatch.Tensor.from_list([[1.0]], "float32"))]:
        with pytest.raises(varwatch.InvalidValue):
            session.set(ident, bad)


ROUND_TRIPS: list[tuple[str, Any, Any, dict]] = [
    ("float", 0.125, -3.5, {}),
    ("integer", 2**62, -(2**63), {}),
    ("string", "héllo", "wörld ✓", {}),
    ("boolean", False, True, {}),
    ("choice", "a", "b", {"choices": ["a", "b"]}),
    ("module", "json.loads", "json.dumps", {}),
    ("embedding", [0.5, 0.25], [-1.0, 8.0], {"dimensions": 2}),
]


@pytest.mark.parametrize("typ,first,second,cons", ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_native_round_trip(session: varwatch.Session, typ: str, first: Any, second: Any, cons: dict) -> None:
    v = session.register("v", typ, first, **cons)
    assert v.type == typ and v.value == first and type(v.value) is type(first)
    assert session.get("v").value == first
    assert session.set("v", second).value == second
    got = session.get("v").value
    assert got == second and type(got) is type(second)


def tensor_cases() -> list[Any]:
    cases = [varwatch.Tensor.from_list([[1, 2, 3], [4, 5, 6]], "int16"),
             varwatch.Tensor.from_list([1.0, -2.0], "bfloat16")]
    return cases


def test_tensor_round_trip_numpy(session: varwatch.Session) -> None:
    if np is None:
        pytest.skip("numpy is not installed (the Tensor path is tested)")
    arr = np.arange(12, dtype=np.float32).reshape(3, 4) / 4
    v = session.register("t", "tensor", arr)
    assert isinstance(v.value, np.ndarray) and v.value.dtype == np.float32
    assert np.array_equal(v.value, arr)
    new = np.array([[True, False], [False, True]])
    got = session.set("t", new).value
    assert got.dtype == np.bool_ and np.array_equal(got, new)
    assert np.array_equal(session.get("t").value, new)
    # bfloat16 has no numpy dtype: it comes back as a Tensor.
    bf = varwatch.Tensor.from_list([1.0, -2.0], "bfloat16")
    assert session.set("t", bf).value == bf


def test_tensor_round_trip_without_numpy(session: varwatch.Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "_np", None)
    t = varwatch.Tensor.from_list([[1, 2, 3], [4, 5, 6]], "int16")
    v = session.register("t", "tensor", t, shape=[2, 3])
    assert v.value == t and v.value.tolist() == [[1, 2, 3], [4, 5, 6]]
    t2 = varwatch.Tensor.from_list([[0, 0, 0], [0, 0, 7]], "int16")
    assert session.set("t", t2).value == t2
    assert session.get("t").value == t2


def test_get_many_and_list(session: varwatch.Session) -> None:
    session.register("a.x", "integer", 1)
    session.register("a.y", "integer", 2)
    session.register("b", "integer", 3)
    r = session.get_many(["b", "nope", "a.x"])
    assert [v.name for v in r.variables] == ["b", "a.x"]
    assert r.missing == ["nope"] and r.revision == 3
    assert r["a.x"].value == 1 and r.values() == {"b": 3, "a.x": 1}

    everything = session.list()
    assert [v.name for v in everything] == ["a.x", "a.y", "b"] and everything.revision == 3
    assert [v.name for v in session.list("a.*")] == ["a.x", "a.y"]
    assert [v.name for v in session.list("?")] == ["b"]
    assert session.list("zzz*") == []


def test_set_many(session: varwatch.Session) -> None:
    session.register("a", "integer", 0, min=0)
    session.register("b", "float", 0.0)
    session.register("c", "string", "")

    r = session.set_many({"a": 1, "b": 2.5, "c": "x"}, atomic=True)
    assert r.ok and r.revision == 4
    assert [x.revision for x in r.results] == [4, 4, 4]
    assert [x.variable.value for x in r.results if x.variable] == [1, 2.5, "x"]

    with pytest.raises(varwatch.InvalidValue):
        session.set_many([("a", 2), ("a", 3)], atomic=True)  # set twice
    with pytest.raises(varwatch.InvalidValue):
        session.set_many({"a": -1, "b": 9.0}, atomic=True)  # a violates min
    assert session.get("b").value == 2.5  # nothing applied

    r = session.set_many([
        varwatch.SetItem("a", 5, source="me", metadata={"k": "v"}),
        ("nope", 1),
        varwatch.SetItem("b", 1.0, expected_version=1),
        ("c", "y"),
    ])
    assert [x.ok for x in r.results] == [True, False, False, True]
    assert isinstance(r.results[1].error, varwatch.VariableNotFound)
    assert isinstance(r.results[2].error, varwatch.VersionConflict)
    assert r.results[2].error.current_version == 2
    assert r.results[0].variable is not None and r.results[0].variable.last_update_source == "me"
    assert not r.ok
    with pytest.raises(varwatch.VariableNotFound):
        r.raise_first()


def test_delete(session: varwatch.Session) -> None:
    session.register("x", "integer", 1)
    rev = session.delete("x")
    assert rev == 2
    with pytest.raises(varwatch.VariableNotFound):
        session.get("x")
    with pytest.raises(varwatch.VariableNotFound):
        session.delete("x")


def test_set_learns_types_it_has_not_seen(client: varwatch.Client, server: Any, session: varwatch.Session) -> None:
    session.register("mode", "choice", "a", choices=["a", "b"])
    session.register("mod", "module", "json")
    with varwatch.Client(server.target) as other:
        s = other.session(session.id)
        assert s.set("mode", "b").value == "b"  # learns "choice" by asking once
        assert s.set_many({"mod": "os.path"}).ok
        # Re-registered with another type behind this client's back: the
        # cached type is stale, the client notices and retries once.
        session.delete("mode")
        session.register("mode", "string", "free text")
        assert s.set("mode", "now a string").value == "now a string"
        session.delete("mod")
        session.register("mod", "integer", 1)
        assert s.set("mod", 2).value == 2


# ---- errors ----

def test_errors(client: varwatch.Client, session: varwatch.Session) -> None:
    session.register("x", "float", 0.5, min=0, max=1)

    with pytest.raises(varwatch.AlreadyExists) as ei:
        session.register("x", "float", 0.1)
    assert ei.value.code == grpc.StatusCode.ALREADY_EXISTS and "x" in ei.value.message

    with pytest.raises(varwatch.InvalidValue) as iv:
        session.set("x", 2.0)
    assert "max" in iv.value.message
    with pytest.raises(varwatch.InvalidValue):
        session.register("1bad", "float", 0.0)
    with pytest.raises(varwatch.InvalidValue):
        session.register("y", "string", "s", min=1)  # min does not fit strings
    with pytest.raises(varwatch.InvalidValue):
        session.register("y", "choice", "a")  # choices are required
    with pytest.raises(varwatch.InvalidValue):
        session.set("x", "not a float")  # refused locally
    with pytest.raises(varwatch.InvalidValue):
        session.list("[")

    with pytest.raises(varwatch.VariableNotFound) as vn:
        session.get("nope")
    assert vn.value.code == grpc.StatusCode.NOT_FOUND and "nope" in vn.value.message
    with pytest.raises(varwatch.VariableNotFound):
        session.set("nope", 1.0, type="float")
    with pytest.raises(varwatch.VariableNotFound):
        session.watch(["nope"])

    gone = client.session(uid("gone"))
    with pytest.raises(varwatch.SessionNotFound) as sn:
        gone.get("x")
    assert gone.id in sn.value.message
    with pytest.raises(varwatch.SessionNotFound):
        gone.register("x", "float", 1.0)
    with pytest.raises(varwatch.SessionNotFound):
        gone.watch()

    with pytest.raises(varwatch.VersionConflict) as vc:
        session.set("x", 0.2, expected_version=7)
    assert vc.value.code == grpc.StatusCode.ABORTED
    assert (vc.value.expected_version, vc.value.current_version) == (7, 1)


def test_deadline_exceeded(black_hole: str) -> None:
    # A server that accepts connections and never answers: the call can only
    # end at its deadline. (A real server may answer a ping before even a
    # zero timeout takes effect: grpc's deadline timer is coarse.)
    with varwatch.Client(black_hole, timeout=0.2) as c:
        with pytest.raises(varwatch.DeadlineExceeded) as ei:
            c.ping()
        assert ei.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert isinstance(ei.value, TimeoutError)


def test_unavailable() -> None:
    from conftest import free_port

    with varwatch.Client(f"127.0.0.1:{free_port()}", timeout=5) as c:
        with pytest.raises(varwatch.Unavailable) as ei:
            c.ping()
        assert ei.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(varwatch.Unavailable):
            c.wait_ready(timeout=0.2)


# ---- watching ----

def test_watch_initial_values_then_changes_from_another_client(server: Any, session: varwatch.Session) -> None:
    session.register("temperature", "float", 20.0)
    session.register("pressure", "float", 1.0)
    session.register("other", "float", 0.0)
    with session.watch(["temperature", "pressure"], include_initial_values=True) as w:
        first = take(w, 3)
        assert [(u.type, u.name, u.value) for u in first] == [
            ("initial_value", "temperature", 20.0), ("initial_value", "pressure", 1.0),
            ("initial_values_complete", "", None)]
        assert all(u.revision == 3 for u in first)
        assert w.revision == 3

        with varwatch.Client(server.target) as other:
            s = other.session(session.id)
            s.set("temperature", 21.5, source="sensor", metadata={"unit": "C"})
            s.set("other", 1.0)  # not watched
            s.set_many({"pressure": 1.5, "temperature": 22.0}, atomic=True)
        got = take(w, 3)
        t = got[0]
        assert (t.type, t.name, t.value, t.old_value, t.revision) == ("value_change", "temperature", 21.5, 20.0, 4)
        assert t.source == "sensor" and t.metadata.get("unit") == "C"
        assert isinstance(t.timestamp, dt.datetime) and t.timestamp.tzinfo is not None
        assert t.variable is not None and t.variable.version == 2 and t.variable_id == t.variable.id
        assert sorted((u.name, u.value, u.revision) for u in got[1:]) == [
            ("pressure", 1.5, 6), ("temperature", 22.0, 6)]
        assert w.revision is not None and w.revision >= 4


def test_watch_from_now_sees_changes_after_it_returns(session: varwatch.Session) -> None:
    session.register("x", "integer", 0)
    w = session.watch("x")  # returns once the server registered the watch
    assert w.revision == 1
    session.set("x", 1)
    (u,) = take(w, 1)
    assert (u.type, u.value, u.old_value, u.revision) == ("value_change", 1, 0, 2)
    w.close()
    assert list(w) == []


def test_pattern_watch_registered_and_deleted(session: varwatch.Session) -> None:
    session.register("job.a", "integer", 1)
    session.register("other", "integer", 1)
    with session.watch(pattern="job.*", include_initial_values=True) as w:
        assert [u.name for u in take(w, 2)] == ["job.a", ""]
        session.register("job.b", "integer", 2)
        session.register("nomatch", "integer", 2)
        session.delete("job.a")
        got = take(w, 2)
        assert [(u.type, u.name) for u in got] == [("variable_registered", "job.b"), ("variable_deleted", "job.a")]
        assert got[1].value == 1


def test_session_closed_ends_the_iteration(client: varwatch.Client) -> None:
    s = client.create_session()
    s.register("x", "integer", 1)
    w = s.watch()
    s.set("x", 2)
    s.cleanup()
    got = list(take_until(w, lambda u: u.type == "session_closed"))
    assert [u.type for u in got] == ["value_change", "session_closed"]
    assert list(w) == []  # the iteration is over


def test_heartbeats_are_hidden(session: varwatch.Session) -> None:
    session.register("x", "integer", 0)
    session.register("y", "integer", 0)  # revision 2, not watched
    w = session.watch("x", heartbeat_interval=0.05)
    assert w.revision == 2

    def writer() -> None:
        # Set x only once the blocked next() has swallowed a few heartbeats.
        wait_for(lambda: w.heartbeats >= 3, what="heartbeats")
        session.set("x", 1)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    (u,) = take(w, 1)
    t.join(timeout=20)
    assert (u.type, u.value, u.revision) == ("value_change", 1, 3)
    assert w.heartbeats >= 3
    w.close()


def test_batched_watch_flattens(session: varwatch.Session) -> None:
    session.register("x", "integer", 0)
    with session.watch("x", include_initial_values=True, batched=True, max_batch_size=4) as w:
        assert [u.type for u in take(w, 2)] == ["initial_value", "initial_values_complete"]
        for i in range(1, 21):
            session.set("x", i)
        got = take(w, 20)
        assert [u.value for u in got] == list(range(1, 21))
        assert [u.revision for u in got] == list(range(2, 22))


def test_batched_watch_with_delay(session: varwatch.Session) -> None:
    session.register("x", "integer", 0)
    with session.watch("x", batched=True, max_batch_size=100, max_batch_delay=0.02) as w:
        session.set_many([("x", 1)])
        for i in range(2, 11):
            session.set("x", i)
        assert [u.value for u in take(w, 10)] == list(range(1, 11))


def test_coalesced_watch(session: varwatch.Session) -> None:
    session.register("x", "integer", 0)
    session.register("y", "integer", 0)
    with session.watch(["x", "y"], coalesce=True, batched=True) as w:
        for i in range(1, 201):
            session.set_many({"x": i, "y": -i}, atomic=True)
        got = take_until(w, lambda u: u.name == "x" and u.value == 200)
        xs = [u for u in got if u.name == "x"]
        # Every change is accounted for: counts add up, revisions chain.
        assert sum(max(u.coalesced_count, 1) for u in xs) == 200
        assert [u.value for u in xs] == sorted(u.value for u in xs)
        for u in xs:
            if u.coalesced_count > 1:
                assert u.coalesced_from_revision < u.revision
        assert xs[0].old_value == 0


# ---- cancellation ----

@pytest.mark.parametrize("dedicated", [False, True])
def test_break_cancels_the_rpc(session: varwatch.Session, dedicated: bool) -> None:
    session.register("x", "integer", 0)
    w = session.watch("x", dedicated=dedicated)
    call = w._conn  # the RPC, or the place on the shared stream
    session.set("x", 1)
    session.set("x", 2)
    for u in w:
        assert u.value == 1
        break
    del w  # dropping the iterator after break cancels its stream
    gc.collect()
    assert call.cancelled()


@pytest.mark.parametrize("dedicated", [False, True])
def test_close_from_another_thread_ends_a_blocked_next(session: varwatch.Session, dedicated: bool) -> None:
    session.register("x", "integer", 0)
    w = session.watch("x", dedicated=dedicated)
    call = w._conn  # the RPC, or the place on the shared stream
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(w), daemon=True)
    reader.start()
    w.close()
    reader.join(timeout=20)
    assert not reader.is_alive(), "next() stayed blocked after close()"
    assert got == [] and call.cancelled()


@pytest.mark.parametrize("dedicated", [False, True])
def test_with_block_closes(session: varwatch.Session, dedicated: bool) -> None:
    session.register("x", "integer", 0)
    with session.watch("x", dedicated=dedicated) as w:
        call = w._conn  # the RPC, or the place on the shared stream
    assert call.cancelled()
    assert list(w) == []


def test_closing_the_client_ends_its_watches(server: Any, client: varwatch.Client) -> None:
    c = varwatch.Client(server.target)
    s = c.session(client.create_session().id)
    s.register("x", "integer", 0)
    w = s.watch("x")
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(w), daemon=True)
    reader.start()
    c.close()
    reader.join(timeout=20)
    assert not reader.is_alive(), "the watch outlived its client"
    assert got == []
    client.cleanup_session(s.id)
