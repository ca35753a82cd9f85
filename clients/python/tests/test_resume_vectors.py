"""The shared resume test vectors (clients/testdata/resume_vectors.json),
which the Go client's tests read too: ResumeState, fed each scripted
stream, must send the expected request for each and hand out the expected
updates, and end the same way.

Each case runs twice: with stream ends as a multiplexed watch gets them
(a WatchEnded, through _mux.ended_error) and as a dedicated stream does
(a status with its ErrorInfo, through from_status_info, which
from_rpc_error calls with the trailer's).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, List, Optional

import pytest

from varwatch import _mux
from varwatch._proto.varwatch.v1 import bridge_pb2 as pb
from varwatch._resume import (
    INCARNATION_HEADER,
    SNAPSHOT_REVISION_HEADER,
    ResumeState,
    WatchOptions,
    stream_ended_without_close,
)
from varwatch._details import ErrorInfo
from varwatch.errors import (
    IncarnationChanged,
    Unavailable,
    VarwatchError,
    from_status_info,
)

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "testdata" / "resume_vectors.json"
CASES: List[Dict[str, Any]] = json.loads(VECTORS.read_text())["cases"]

def update(u: Dict[str, Any]) -> Any:
    p = pb.VariableUpdate(update_type=u["type"], revision=u["revision"], variable_id=u.get("id", ""),
                          incarnation=u.get("incarnation", ""))
    if "name" in u:
        p.variable.id = u["id"]
        p.variable.name = u["name"]
        p.variable.value.integer_value = u["value"]
    return p


def end_error(end: Dict[str, Any], transport: str) -> VarwatchError:
    if end.get("break"):
        return Unavailable("connection reset")
    code = pb_code(end["code"])
    if transport == "mux":
        return _mux.ended_error(pb.WatchEnded(code=code, message=end.get("message", ""), reason=end.get("reason", ""),
                                              metadata=end.get("metadata", {})))
    if code == 0:
        return stream_ended_without_close()
    info = ErrorInfo(end["reason"], "varwatch.v1", end.get("metadata", {})) if end.get("reason") else None
    return from_status_info(code, end.get("message", ""), info)


def pb_code(name: str) -> int:
    import grpc

    return grpc.StatusCode[name].value[0]


def summary(req: Any) -> Dict[str, Any]:
    return {
        "start_revision": req.start_revision if req.HasField("start_revision") else None,
        "include_initial_values": req.include_initial_values,
        "incarnation": req.incarnation,
    }


def delivered(u: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"type": str(u.type.value if hasattr(u.type, "value") else u.type), "revision": u.revision}
    if u.variable_id:
        out["id"] = u.variable_id
        out["value"] = u.value
    return out


def run(case: Dict[str, Any], transport: str) -> tuple[List[Dict[str, Any]], List[Dict[str, Any]], Any]:
    r = case["request"]
    st = ResumeState(WatchOptions(
        session_id="s", variables=tuple(r.get("variables", ())),
        include_initial_values=r.get("include_initial_values", False),
        start_revision=r.get("start_revision"), incarnation=r.get("incarnation"),
        resnapshot_on_compacted=case["resnapshot"], max_retries=None, jitter=0))
    requests: List[Dict[str, Any]] = []
    out: List[Dict[str, Any]] = []
    for stream in case["streams"]:
        requests.append(summary(st.next_request()))
        h: Optional[Dict[str, Any]] = stream.get("header")
        if h is not None:
            st.on_header(((SNAPSHOT_REVISION_HEADER, str(h["snapshot_revision"])), (INCARNATION_HEADER, h["incarnation"])))
        err: Optional[VarwatchError] = None
        try:
            for u in stream["updates"]:
                out += [delivered(x) for x in st.feed(update(u))]
                if st.done:
                    return requests, out, "EOF"
        except IncarnationChanged as e:
            err = e
        if err is None:
            err = end_error(stream["end"], transport)
        try:
            st.on_error(err)
        except VarwatchError as e:
            return requests, out, {"code": e.code.name, "reason": e.reason or ""}  # None: no ErrorInfo, "" in the vectors
    raise AssertionError(f"the watch wants stream {len(case['streams']) + 1}, the case has {len(case['streams'])}")


@pytest.mark.parametrize("transport", ["mux", "dedicated"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_resume_vector(case: Dict[str, Any], transport: str) -> None:
    requests, out, end = run(case, transport)
    assert requests == case["requests"]
    assert out == case["delivered"]
    assert end == case["error"]
