"""The ``google.rpc.ErrorInfo`` of a status, read from its
``grpc-status-details-bin`` trailer, so that clients branch on the server's
reason and metadata rather than on message text.

The trailer is a serialized ``google.rpc.Status``. Its two messages are
decoded here by hand (a few dozen lines of protobuf wire format) instead of
shipping generated ``google/rpc`` stubs: those would register
``google/rpc/status.proto`` in the process-wide descriptor pool and clash
with ``googleapis-common-protos`` in any program that has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

DETAILS_KEY = "grpc-status-details-bin"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


@dataclass(frozen=True)
class ErrorInfo:
    """The server's reason for an error, with its metadata."""

    reason: str
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


def error_info(err: Any) -> Optional[ErrorInfo]:
    """The ErrorInfo detail of a grpc.RpcError (sync or aio), or None."""
    fn = getattr(err, "trailing_metadata", None)
    md = fn() if callable(fn) else None
    for item in md or ():
        key, value = item[0], item[1]
        if key == DETAILS_KEY and isinstance(value, (bytes, bytearray)):
            try:
                return _from_status(bytes(value))
            except (IndexError, ValueError, UnicodeDecodeError):
                return None  # malformed details: as if there were none
    return None


def _from_status(b: bytes) -> Optional[ErrorInfo]:
    # google.rpc.Status: 3 = repeated google.protobuf.Any details.
    for num, value in _fields(b):
        if num != 3 or not isinstance(value, bytes):
            continue
        type_url, body = "", b""
        for n, v in _fields(value):  # Any: 1 = type_url, 2 = value
            if n == 1 and isinstance(v, bytes):
                type_url = v.decode()
            elif n == 2 and isinstance(v, bytes):
                body = v
        if type_url == ERROR_INFO_TYPE:
            return _error_info(body)
    return None


def _error_info(b: bytes) -> ErrorInfo:
    # ErrorInfo: 1 = reason, 2 = domain, 3 = map<string, string> metadata.
    reason, domain, metadata = "", "", {}
    for num, value in _fields(b):
        if not isinstance(value, bytes):
            continue
        if num == 1:
            reason = value.decode()
        elif num == 2:
            domain = value.decode()
        elif num == 3:
            entry = {n: v for n, v in _fields(value) if isinstance(v, bytes)}
            metadata[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    return ErrorInfo(reason, domain, metadata)


def _fields(b: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) pairs of a message: bytes for length-delimited
    fields, ints for varints; fixed-width fields are skipped."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
            yield num, v
        elif wire == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ValueError("truncated field")
            yield num, b[i : i + n]
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")


def _varint(b: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
