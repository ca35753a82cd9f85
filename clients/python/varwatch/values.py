"""Native Python values <-> the wire's typed ``Value`` message.

=============  ==========================  ==================================
type           Python value                wire
=============  ==========================  ==================================
float          float (int accepted)        float_value (double)
integer        int                         integer_value (int64)
string         str                         string_value
boolean        bool                        boolean_value
choice         str                         choice_value
module         str                         module_value
embedding      list[float] (or 1-D array)  embedding_value (float32 each)
tensor         numpy.ndarray or Tensor     tensor_value (shape, dtype, LE bytes)
=============  ==========================  ==================================

numpy is optional: when it imports, tensors decode to ``numpy.ndarray``
(except bfloat16, which numpy lacks: that stays a :class:`Tensor`);
otherwise every tensor decodes to a :class:`Tensor`.

Decoding needs no type (the wire value says its kind); encoding does, since
``3`` may be meant for a float or an integer variable and ``"a"`` for a
string, choice or module one.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import grpc

from ._proto.varwatch.v1 import bridge_pb2 as pb
from .errors import InvalidValue

try:  # numpy is optional
    import numpy as _np
except ImportError:  # pragma: no cover - exercised by the no-numpy test
    _np = None  # type: ignore[assignment]

__all__ = [
    "VariableType",
    "Tensor",
    "Constraints",
    "encode_value",
    "decode_value",
    "numpy_available",
]


class VariableType(str, enum.Enum):
    """The eight variable types. Members compare equal to their names, so
    ``"float"`` may be passed wherever a VariableType is expected."""

    FLOAT = "float"
    INTEGER = "integer"
    STRING = "string"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    MODULE = "module"
    EMBEDDING = "embedding"
    TENSOR = "tensor"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, t: Union["VariableType", str, int]) -> "VariableType":
        """Accepts a member, its name in any case ("float", "FLOAT"), the
        aliases "int", "str", "bool", a proto enum name
        ("VARIABLE_TYPE_FLOAT") or a proto enum number."""
        if isinstance(t, VariableType):
            return t
        if isinstance(t, int) and not isinstance(t, bool):
            found = _FROM_PROTO.get(t)
            if found is None:
                raise InvalidValue(f"unknown variable type number {t}", _INVALID)
            return found
        if isinstance(t, str):
            key = t.strip().lower()
            if key.startswith("variable_type_"):
                key = key[len("variable_type_"):]
            key = _ALIASES.get(key, key)
            try:
                return cls(key)
            except ValueError:
                pass
        raise InvalidValue(
            f"unknown variable type {t!r} (want one of {', '.join(m.value for m in cls)})",
            _INVALID,
        )

    @property
    def proto(self) -> int:
        """The wire enum number."""
        return _TO_PROTO[self]


_ALIASES = {"int": "integer", "str": "string", "bool": "boolean", "double": "float"}
_TO_PROTO: dict[VariableType, int] = {
    VariableType.FLOAT: pb.VARIABLE_TYPE_FLOAT,
    VariableType.INTEGER: pb.VARIABLE_TYPE_INTEGER,
    VariableType.STRING: pb.VARIABLE_TYPE_STRING,
    VariableType.BOOLEAN: pb.VARIABLE_TYPE_BOOLEAN,
    VariableType.CHOICE: pb.VARIABLE_TYPE_CHOICE,
    VariableType.MODULE: pb.VARIABLE_TYPE_MODULE,
    VariableType.EMBEDDING: pb.VARIABLE_TYPE_EMBEDDING,
    VariableType.TENSOR: pb.VARIABLE_TYPE_TENSOR,
}
_FROM_PROTO: dict[int, VariableType] = {v: k for k, v in _TO_PROTO.items()}


_INVALID = grpc.StatusCode.INVALID_ARGUMENT

# dtype name -> element size in bytes (the server's list).
DTYPE_SIZES: dict[str, int] = {
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "bool": 1,
}


def numpy_available() -> bool:
    """Whether tensors decode to numpy arrays."""
    return _np is not None


def numpy_module() -> Any:
    """The numpy module, or None when it is not installed."""
    return _np


@dataclass(frozen=True)
class Tensor:
    """A dense array as the wire carries it: ``data`` holds
    ``prod(shape)`` elements of ``dtype``, little-endian, row-major.

    Used for tensor values when numpy is not installed (and for bfloat16,
    which numpy lacks). With numpy, :meth:`to_numpy` and :meth:`from_numpy`
    convert.
    """

    shape: tuple[int, ...]
    dtype: str
    data: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "data", bytes(self.data))

    @property
    def size(self) -> int:
        """The number of elements."""
        return math.prod(self.shape)

    def tolist(self) -> list[Any]:
        """The elements as (nested) Python lists, decoded without numpy.
        float16 decodes too; bfloat16 is widened to float32 first."""
        flat = _unpack(self.dtype, self.data)
        return _nest(flat, self.shape)

    def to_numpy(self) -> Any:
        """A numpy array with this shape and dtype (needs numpy; bfloat16 is
        returned widened to float32)."""
        if _np is None:
            raise ImportError("numpy is not installed")
        if self.dtype == "bfloat16":
            raw = _np.frombuffer(self.data, dtype="<u2").astype("<u4") << 16
            return raw.view("<f4").astype(_np.float32).reshape(self.shape)
        return _np.frombuffer(self.data, dtype=_np.dtype(self.dtype).newbyteorder("<")).reshape(
            self.shape
        ).astype(_np.dtype(self.dtype))

    @classmethod
    def from_numpy(cls, array: Any) -> "Tensor":
        """The wire form of a numpy array (any byte order or memory layout)."""
        if _np is None:
            raise ImportError("numpy is not installed")
        arr = _np.asarray(array)
        name = _numpy_dtype_name(arr.dtype)
        le = _np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        return cls(tuple(arr.shape), name, le.tobytes(order="C"))

    @classmethod
    def from_list(cls, values: Sequence[Any], dtype: str, shape: Optional[Sequence[int]] = None) -> "Tensor":
        """Packs a flat or nested list without numpy. ``shape`` defaults to
        the nesting of ``values``."""
        if shape is None:
            shape = _shape_of(values)
        flat = list(_flatten(values))
        if len(flat) != math.prod(shape):
            raise InvalidValue(f"{len(flat)} elements do not fill shape {tuple(shape)}", _INVALID)
        return cls(tuple(shape), dtype, _pack(dtype, flat))


_STRUCT = {
    "float16": "e",
    "float32": "f",
    "float64": "d",
    "int8": "b",
    "int16": "h",
    "int32": "i",
    "int64": "q",
    "uint8": "B",
    "uint16": "H",
    "uint32": "I",
    "uint64": "Q",
    "bool": "?",
}


def _unpack(dtype: str, data: bytes) -> list[Any]:
    if dtype == "bfloat16":
        n = len(data) // 2
        halves = struct.unpack(f"<{n}H", data)
        return list(struct.unpack(f"<{n}f", struct.pack(f"<{n}I", *(h << 16 for h in halves))))
    code = _STRUCT.get(dtype)
    if code is None:
        raise InvalidValue(f"unknown tensor dtype {dtype!r}", _INVALID)
    n = len(data) // DTYPE_SIZES[dtype]
    return list(struct.unpack(f"<{n}{code}", data))


def _pack(dtype: str, flat: list[Any]) -> bytes:
    if dtype == "bfloat16":
        words = struct.unpack(f"<{len(flat)}I", struct.pack(f"<{len(flat)}f", *flat))
        return struct.pack(f"<{len(flat)}H", *(w >> 16 for w in words))
    code = _STRUCT.get(dtype)
    if code is None:
        raise InvalidValue(f"unknown tensor dtype {dtype!r}", _INVALID)
    try:
        return struct.pack(f"<{len(flat)}{code}", *flat)
    except struct.error as e:
        raise InvalidValue(f"cannot pack tensor elements as {dtype}: {e}", _INVALID) from None


def _shape_of(values: Any) -> tuple[int, ...]:
    shape: list[int] = []
    while isinstance(values, (list, tuple)):
        shape.append(len(values))
        if not values:
            break
        values = values[0]
    return tuple(shape)


def _flatten(values: Any) -> Iterable[Any]:
    if isinstance(values, (list, tuple)):
        for v in values:
            yield from _flatten(v)
    else:
        yield values


def _nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0] if flat else None
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _numpy_dtype_name(dt: Any) -> str:
    assert _np is not None
    if dt == _np.bool_:
        return "bool"
    name = _np.dtype(dt).newbyteorder("=").name
    if name not in DTYPE_SIZES:
        raise InvalidValue(
            f"numpy dtype {dt} has no wire dtype (want one of {', '.join(DTYPE_SIZES)})", _INVALID
        )
    return name


@dataclass(frozen=True)
class Constraints:
    """A variable's constraints, as the server holds them. Unset bounds are
    None; for integer variables ``min``/``max`` hold the integer bounds."""

    min: Optional[float] = None
    max: Optional[float] = None
    min_length: Optional[int] = None
    max_length: Optional[int] = None
    pattern: str = ""
    choices: tuple[str, ...] = ()
    allowed_modules: tuple[str, ...] = ()
    dimensions: int = 0
    shape: tuple[int, ...] = ()

    @classmethod
    def from_proto(cls, c: Any) -> "Constraints":
        has = c.HasField
        lo: Optional[float] = None
        hi: Optional[float] = None
        if has("min_integer"):
            lo = c.min_integer
        elif has("min"):
            lo = c.min
        if has("max_integer"):
            hi = c.max_integer
        elif has("max"):
            hi = c.max
        return cls(
            min=lo,
            max=hi,
            min_length=c.min_length if has("min_length") else None,
            max_length=c.max_length if has("max_length") else None,
            pattern=c.pattern,
            choices=tuple(c.choices),
            allowed_modules=tuple(c.allowed_modules),
            dimensions=c.dimensions,
            shape=tuple(c.shape),
        )


def constraints_to_proto(
    typ: VariableType,
    *,
    min: Optional[float] = None,
    max: Optional[float] = None,
    min_length: Optional[int] = None,
    max_length: Optional[int] = None,
    pattern: Optional[str] = None,
    choices: Optional[Iterable[str]] = None,
    allowed_modules: Optional[Iterable[str]] = None,
    dimensions: Optional[int] = None,
    shape: Optional[Iterable[int]] = None,
) -> Any:
    """Builds the Constraints message; min/max go to min_integer/max_integer
    for integer variables. Whether a constraint fits the type is the
    server's call (INVALID_ARGUMENT)."""
    c = pb.Constraints()
    if typ == VariableType.INTEGER:
        if min is not None:
            c.min_integer = _as_int(min, "min")
        if max is not None:
            c.max_integer = _as_int(max, "max")
    else:
        if min is not None:
            c.min = float(min)
        if max is not None:
            c.max = float(max)
    if min_length is not None:
        c.min_length = int(min_length)
    if max_length is not None:
        c.max_length = int(max_length)
    if pattern:
        c.pattern = pattern
    if choices is not None:
        c.choices.extend(_strings(choices, "choices"))
    if allowed_modules is not None:
        c.allowed_modules.extend(_strings(allowed_modules, "allowed_modules"))
    if dimensions is not None:
        c.dimensions = int(dimensions)
    if shape is not None:
        c.shape.extend(int(d) for d in shape)
    return c


def _strings(values: Iterable[str], field: str) -> list[str]:
    if isinstance(values, str):
        raise InvalidValue(f"{field} must be a list of strings, not a string", _INVALID)
    return [str(v) for v in values]


def _as_int(v: Any, field: str) -> int:
    if isinstance(v, bool):
        raise InvalidValue(f"{field}: expected an integer, got a bool", _INVALID)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if _np is not None and isinstance(v, _np.integer):
        return int(v)
    raise InvalidValue(f"{field}: expected an integer, got {v!r}", _INVALID)


def encode_value(typ: VariableType, value: Any) -> Any:
    """The wire Value for a native Python value of a variable of type typ.

    Raises InvalidValue for a Python value that cannot be that type (the
    server then never sees it). Constraints are the server's business.
    """
    v = pb.Value()
    if typ == VariableType.FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not _is_np_number(value):
            _wrong(typ, value)
        v.float_value = float(value)
    elif typ == VariableType.INTEGER:
        if isinstance(value, float) and not value.is_integer():
            _wrong(typ, value)
        try:
            v.integer_value = _as_int(value, "value")
        except InvalidValue:
            _wrong(typ, value)
    elif typ == VariableType.BOOLEAN:
        if isinstance(value, bool) or (_np is not None and isinstance(value, _np.bool_)):
            v.boolean_value = bool(value)
        else:
            _wrong(typ, value)
    elif typ in (VariableType.STRING, VariableType.CHOICE, VariableType.MODULE):
        if isinstance(value, enum.Enum) and isinstance(value.value, str):
            value = value.value
        if not isinstance(value, str):
            _wrong(typ, value)
        if typ == VariableType.STRING:
            v.string_value = value
        elif typ == VariableType.CHOICE:
            v.choice_value = value
        else:
            v.module_value = value
    elif typ == VariableType.EMBEDDING:
        if isinstance(value, (str, bytes)) or not _is_sequence(value):
            _wrong(typ, value)
        try:
            v.embedding_value.values.extend(float(x) for x in value)
        except (TypeError, ValueError):
            _wrong(typ, value)
        if not v.HasField("embedding_value"):
            v.embedding_value.SetInParent()
    elif typ == VariableType.TENSOR:
        t = _to_tensor(value)
        v.tensor_value.shape.extend(t.shape)
        v.tensor_value.dtype = t.dtype
        v.tensor_value.data = t.data
        if not v.HasField("tensor_value"):
            v.tensor_value.SetInParent()
    else:  # pragma: no cover - VariableType is closed
        raise InvalidValue(f"unknown variable type {typ!r}", _INVALID)
    return v


def _to_tensor(value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if _np is not None and (isinstance(value, _np.ndarray) or _is_sequence(value) or isinstance(value, _np.generic)):
        return Tensor.from_numpy(value)
    _wrong(VariableType.TENSOR, value)
    raise AssertionError  # unreachable


def _is_sequence(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return True
    return _np is not None and isinstance(value, _np.ndarray)


def _is_np_number(value: Any) -> bool:
    return _np is not None and isinstance(value, (_np.floating, _np.integer))


def _wrong(typ: VariableType, value: Any) -> None:
    hint = ""
    if typ == VariableType.TENSOR and _np is None:
        hint = " (numpy is not installed: pass a varwatch.Tensor)"
    raise InvalidValue(
        f"cannot use {type(value).__name__} value {_short(value)} for a {typ.value} variable{hint}",
        _INVALID,
    )


def _short(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def decode_value(v: Any) -> Any:
    """The native Python value of a wire Value (None when no kind is set)."""
    kind = v.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "embedding_value":
        return list(v.embedding_value.values)
    if kind == "tensor_value":
        t = v.tensor_value
        tensor = Tensor(tuple(t.shape), t.dtype, t.data)
        if _np is not None and t.dtype in DTYPE_SIZES and t.dtype != "bfloat16":
            return tensor.to_numpy()
        return tensor
    return getattr(v, kind)


def type_from_proto(number: int, value: Any) -> VariableType:
    """A Variable message's type; for a number this client does not know
    (a newer server), the type its value's kind stands for."""
    t = _FROM_PROTO.get(number)
    if t is None:
        t = value_type(value)
    if t is None:
        raise InvalidValue(f"unknown variable type number {number}", _INVALID)
    return t


def value_type(v: Any) -> Optional[VariableType]:
    """The VariableType a wire Value's kind stands for."""
    kind = v.WhichOneof("kind")
    return None if kind is None else VariableType(kind[: -len("_value")])


def metadata_dict(m: Mapping[str, str]) -> dict[str, str]:
    """A plain dict copy of a protobuf map."""
    return dict(m)
