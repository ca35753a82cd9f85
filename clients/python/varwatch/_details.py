"""The ``google.rpc.ErrorInfo`` detail of a gRPC status, read from the
``grpc-status-details-bin`` trailer.

The server puts its machine-readable reasons there (domain
``varwatch.v1``: ``SLOW_CONSUMER``, ``SHUTTING_DOWN``, ``LIMIT_EXCEEDED``,
...), so that clients branch on data, never on message text. Only two
tiny messages are needed (``google.rpc.Status`` and ``ErrorInfo``), so
they are decoded here from the protobuf wire format rather than pulling in
googleapis-common-protos for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional

DETAILS_TRAILER = "grpc-status-details-bin"
ERROR_DOMAIN = "varwatch.v1"
_ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


@dataclass(frozen=True)
class ErrorInfo:
    """A status's ErrorInfo: its reason, domain and metadata."""

    reason: str
    domain: str
    metadata: dict[str, str] = field(default_factory=dict)


def error_info(trailing_metadata: Optional[Iterable[Any]]) -> Optional[ErrorInfo]:
    """The varwatch ErrorInfo of a call's trailers, or None (no details,
    another domain, or bytes that do not parse: details are a help, never
    a reason to fail)."""
    for item in trailing_metadata or ():
        key, value = item[0], item[1]
        if key != DETAILS_TRAILER or not isinstance(value, (bytes, bytearray)):
            continue
        try:
            return _from_status(bytes(value))
        except (ValueError, IndexError, UnicodeDecodeError):
            return None
    return None


def _from_status(b: bytes) -> Optional[ErrorInfo]:
    # google.rpc.Status: 3 = repeated google.protobuf.Any details.
    for num, val in _fields(b):
        if num != 3 or not isinstance(val, bytes):
            continue
        type_url, payload = "", b""
        for n, v in _fields(val):  # Any: 1 = type_url, 2 = value
            if n == 1 and isinstance(v, bytes):
                type_url = v.decode()
            elif n == 2 and isinstance(v, bytes):
                payload = v
        if type_url == _ERROR_INFO_TYPE:
            info = _error_info(payload)
            if info.domain == ERROR_DOMAIN:
                return info
    return None


def _error_info(b: bytes) -> ErrorInfo:
    # ErrorInfo: 1 = reason, 2 = domain, 3 = map<string, string> metadata.
    reason, domain, meta = "", "", {}
    for num, val in _fields(b):
        if not isinstance(val, bytes):
            continue
        if num == 1:
            reason = val.decode()
        elif num == 2:
            domain = val.decode()
        elif num == 3:
            k = v = ""
            for n, x in _fields(val):
                if n == 1 and isinstance(x, bytes):
                    k = x.decode()
                elif n == 2 and isinstance(x, bytes):
                    v = x.decode()
            meta[k] = v
    return ErrorInfo(reason, domain, meta)


def _fields(b: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) pairs of a message: ints for varints, bytes
    for length-delimited fields; fixed-width fields are skipped."""
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
            yield num, b[i:i + n]
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if c < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
