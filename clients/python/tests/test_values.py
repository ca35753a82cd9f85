"""Value encoding/decoding and error mapping, without a server."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Optional

import grpc
import pytest

import varwatch
from varwatch import values
from varwatch._proto.varwatch.v1 import bridge_pb2 as pb
from varwatch._details import ErrorInfo
from varwatch.errors import from_status

np = values.numpy_module()
needs_numpy = pytest.mark.skipif(np is None, reason="numpy is not installed (the no-numpy path is tested)")


@pytest.fixture
def no_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs a test as if numpy were not installed."""
    monkeypatch.setattr(values, "_np", None)


SCALARS = [
    ("float", 0.25, "float_value"),
    ("float", 3, "float_value"),
    ("integer", -(2**63), "integer_value"),
    ("integer", 2**63 - 1, "integer_value"),
    ("string", "héllo ✓", "string_value"),
    ("boolean", True, "boolean_value"),
    ("boolean", False, "boolean_value"),
    ("choice", "adam", "choice_value"),
    ("module", "torch.nn.ReLU", "module_value"),
    ("embedding", [0.5, -1.0, 2.25], "embedding_value"),
    ("embedding", [], "embedding_value"),
]


@pytest.mark.parametrize("typ,value,kind", SCALARS, ids=[f"{t}-{v!r}"[:40] for t, v, _ in SCALARS])
def test_round_trip(typ: str, value: object, kind: str) -> None:
    v = values.encode_value(varwatch.VariableType.parse(typ), value)
    assert v.WhichOneof("kind") == kind
    wire = pb.Value.FromString(v.SerializeToString())
    back = values.decode_value(wire)
    assert back == value
    assert type(back) is (float if typ == "float" else type(value))


def test_embedding_is_float32_on_the_wire() -> None:
    v = values.encode_value(varwatch.VariableType.EMBEDDING, [0.1])
    (got,) = values.decode_value(pb.Value.FromString(v.SerializeToString()))
    assert got != 0.1 and math.isclose(got, 0.1, rel_tol=1e-7)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                   "uint8", "uint16", "uint32", "uint64", "bool"])
@needs_numpy
def test_tensor_numpy_round_trip(dtype: str) -> None:
    arr = (np.arange(6).reshape(2, 3) % 2 == 1) if dtype == "bool" else np.arange(6, dtype=dtype).reshape(2, 3)
    v = values.encode_value(varwatch.VariableType.TENSOR, arr)
    assert v.tensor_value.dtype == dtype
    assert list(v.tensor_value.shape) == [2, 3]
    back = values.decode_value(pb.Value.FromString(v.SerializeToString()))
    assert isinstance(back, np.ndarray)
    assert back.dtype == arr.dtype and back.shape == (2, 3)
    assert np.array_equal(back, arr)


@needs_numpy
def test_tensor_numpy_big_endian_and_strided_input() -> None:
    arr = np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2]
    v = values.encode_value(varwatch.VariableType.TENSOR, arr)
    assert v.tensor_value.data == np.ascontiguousarray(arr, dtype="<i4").tobytes()
    back = values.decode_value(v)
    assert np.array_equal(back, arr)


@needs_numpy
def test_bfloat16_stays_a_tensor_with_numpy() -> None:
    t = varwatch.Tensor.from_list([1.0, -2.0, 0.5], "bfloat16")
    back = values.decode_value(values.encode_value(varwatch.VariableType.TENSOR, t))
    assert isinstance(back, varwatch.Tensor)
    assert back.tolist() == [1.0, -2.0, 0.5]
    assert np.array_equal(back.to_numpy(), np.array([1.0, -2.0, 0.5], dtype=np.float32))


def test_tensor_without_numpy(no_numpy: None) -> None:
    assert not varwatch.numpy_available()
    t = varwatch.Tensor.from_list([[1.5, 2.5], [3.5, 4.5]], "float32")
    assert t.shape == (2, 2) and t.size == 4 and len(t.data) == 16
    v = values.encode_value(varwatch.VariableType.TENSOR, t)
    back = values.decode_value(pb.Value.FromString(v.SerializeToString()))
    assert isinstance(back, varwatch.Tensor)
    assert back == t
    assert back.tolist() == [[1.5, 2.5], [3.5, 4.5]]


@pytest.mark.parametrize("dtype,items", [
    ("float16", [0.5, -2.0]), ("float64", [1e300, -0.0]), ("int8", [-128, 127]), ("uint64", [2**64 - 1, 0]),
    ("bool", [True, False]), ("int64", [-(2**63), 5]),
])
def test_tensor_from_list_without_numpy(no_numpy: None, dtype: str, items: list) -> None:
    t = varwatch.Tensor.from_list(items, dtype)
    assert t.tolist() == items


def test_tensor_value_needs_numpy_or_tensor(no_numpy: None) -> None:
    with pytest.raises(varwatch.InvalidValue, match="numpy is not installed"):
        values.encode_value(varwatch.VariableType.TENSOR, [[1.0, 2.0]])


def test_import_without_numpy() -> None:
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "import varwatch\n"
        "assert not varwatch.numpy_available()\n"
        "from varwatch import values\n"
        "t = varwatch.Tensor.from_list([1, 2, 3], 'int32')\n"
        "v = values.decode_value(values.encode_value(varwatch.VariableType.TENSOR, t))\n"
        "assert isinstance(v, varwatch.Tensor) and v.tolist() == [1, 2, 3], v\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("typ,value", [
    ("float", "1.0"), ("float", True), ("integer", 1.5), ("integer", "1"), ("integer", True),
    ("boolean", 1), ("string", 3), ("choice", None), ("module", b"x"), ("embedding", "abc"),
    ("embedding", [1, "x"]), ("tensor", "t"),
])
def test_wrong_python_type_is_invalid_value(typ: str, value: object) -> None:
    with pytest.raises(varwatch.InvalidValue) as ei:
        values.encode_value(varwatch.VariableType.parse(typ), value)
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(ei.value, ValueError)


def test_variable_type_parse() -> None:
    T = varwatch.VariableType
    assert T.parse("float") is T.FLOAT
    assert T.parse("INTEGER") is T.INTEGER
    assert T.parse("int") is T.INTEGER
    assert T.parse("VARIABLE_TYPE_TENSOR") is T.TENSOR
    assert T.parse(pb.VARIABLE_TYPE_CHOICE) is T.CHOICE
    assert T.BOOLEAN == "boolean" and str(T.MODULE) == "module"
    with pytest.raises(varwatch.InvalidValue):
        T.parse("complex")


def test_integer_constraints_use_integer_fields() -> None:
    c = values.constraints_to_proto(varwatch.VariableType.INTEGER, min=0, max=10)
    assert c.HasField("min_integer") and c.HasField("max_integer")
    assert not c.HasField("min") and not c.HasField("max")
    c = values.constraints_to_proto(varwatch.VariableType.FLOAT, min=0, max=1.5)
    assert c.HasField("min") and c.max == 1.5 and not c.HasField("min_integer")
    back = varwatch.Constraints.from_proto(
        values.constraints_to_proto(varwatch.VariableType.INTEGER, min=-3, max=3))
    assert (back.min, back.max) == (-3, 3)
    with pytest.raises(varwatch.InvalidValue):
        values.constraints_to_proto(varwatch.VariableType.STRING, choices="abc")


def _info(reason: str, **meta: str) -> ErrorInfo:
    return ErrorInfo(reason, "varwatch.v1", meta)


# (code, the server's message, its ErrorInfo, the class): the class comes
# from the code and the reason, never the message.
ERRORS = [
    (grpc.StatusCode.INVALID_ARGUMENT, "value 3 violates constraint max 1", _info("CONSTRAINT_VIOLATED", constraint="max"),
     varwatch.InvalidValue),
    (grpc.StatusCode.NOT_FOUND, 'session "s" not found', _info("SESSION_NOT_FOUND"), varwatch.SessionNotFound),
    (grpc.StatusCode.NOT_FOUND, 'session "s" expired at 2026-01-01T00:00:00Z', _info("SESSION_NOT_FOUND"),
     varwatch.SessionNotFound),
    (grpc.StatusCode.NOT_FOUND, 'no variable "x" in session "s"', _info("VARIABLE_NOT_FOUND"), varwatch.VariableNotFound),
    (grpc.StatusCode.NOT_FOUND, "no such thing", None, varwatch.NotFound),
    (grpc.StatusCode.ALREADY_EXISTS, 'variable "x" already exists', _info("ALREADY_EXISTS"), varwatch.AlreadyExists),
    (grpc.StatusCode.ABORTED, 'version conflict on "x": expected version 1, current version is 3',
     _info("VERSION_CONFLICT", variable="x", expected_version="1", current_version="3"), varwatch.VersionConflict),
    (grpc.StatusCode.ABORTED, "filter deadband failed", _info("FILTER_FAILED", resume_revision="4"), varwatch.FilterFailed),
    (grpc.StatusCode.OUT_OF_RANGE, "revision compacted: start revision 2 is older than the history",
     _info("REVISION_COMPACTED", compacted_revision="40", requested_revision="2"), varwatch.Compacted),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "watch fell too far behind and was cut off",
     _info("SLOW_CONSUMER", resume_revision="7"), varwatch.SlowConsumer),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many sessions", _info("LIMIT_EXCEEDED", limit="max_sessions", value="1"),
     varwatch.ResourceExhausted),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "grpc: received message larger than max", None, varwatch.ResourceExhausted),
    (grpc.StatusCode.UNAVAILABLE, "server is shutting down", _info("SHUTTING_DOWN", resume_revision="9"),
     varwatch.Unavailable),
    (grpc.StatusCode.CANCELLED, "cancelled", _info("CANCELLED"), varwatch.Cancelled),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "deadline", None, varwatch.DeadlineExceeded),
    (grpc.StatusCode.UNIMPLEMENTED, "start_revision with filters", _info("UNIMPLEMENTED"), varwatch.Unimplemented),
    (grpc.StatusCode.INTERNAL, "boom", _info("INTERNAL"), varwatch.InternalError),
    (grpc.StatusCode.UNKNOWN, "boom", None, varwatch.InternalError),
]


@pytest.mark.parametrize("code,message,info,cls", ERRORS, ids=[f"{c.name}-{cls.__name__}" for c, _, _, cls in ERRORS])
def test_error_mapping(code: grpc.StatusCode, message: str, info: Optional[ErrorInfo], cls: type) -> None:
    e = from_status(code, message, info)
    assert type(e) is cls
    assert isinstance(e, varwatch.VarwatchError)
    assert e.code == code and e.message == message
    assert e.reason == (info.reason if info else None)
    assert message in str(e)
    assert type(from_status(code.value[0], message, info)) is cls  # numeric codes, as in set_many results
    # The message is never read: any text gives the same class.
    assert type(from_status(code, "no variable behind; current version is 5; session cut off", info)) is cls


def test_error_details_come_from_metadata() -> None:
    vc = from_status(grpc.StatusCode.ABORTED, "anything",
                     _info("VERSION_CONFLICT", variable="x", expected_version="1", current_version="3"))
    assert isinstance(vc, varwatch.VersionConflict)
    assert (vc.expected_version, vc.current_version) == (1, 3)
    # A message naming versions gives none without the metadata.
    raced = from_status(grpc.StatusCode.ABORTED, "expected version 1, current version is 3", _info("CONCURRENT_UPDATE"))
    assert isinstance(raced, varwatch.VersionConflict) and raced.current_version is None
    c = from_status(grpc.StatusCode.OUT_OF_RANGE, "anything", _info("REVISION_COMPACTED", compacted_revision="40"))
    assert isinstance(c, varwatch.Compacted) and c.oldest_revision == 40
    assert from_status(grpc.StatusCode.OUT_OF_RANGE, "resume from 40").oldest_revision is None  # type: ignore[attr-defined]
    sc = from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "anything", _info("SLOW_CONSUMER", resume_revision="0"))
    assert isinstance(sc, varwatch.SlowConsumer) and sc.delivered_revision == 0
    u = from_status(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    assert isinstance(u, varwatch.Unavailable) and u.delivered_revision is None and u.reason is None
    assert isinstance(u, ConnectionError)
    ff = from_status(grpc.StatusCode.ABORTED, "anything", _info("FILTER_FAILED", resume_revision="4"))
    assert isinstance(ff, varwatch.FilterFailed) and ff.delivered_revision == 4
