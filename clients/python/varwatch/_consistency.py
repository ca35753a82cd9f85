"""Consistency on a node of a cluster (``varwatch serve --cluster``),
shared by :class:`~varwatch.Client` and :class:`~varwatch.AsyncClient`.

A node answers reads linearizably by default: it asks the shared log
(NATS JetStream) where it ends and waits until it has applied that far.
Two request metadata keys change that, and a response header tells where
a write landed in the log (the names are the server's,
``grpcapi.MetadataPosition`` and ``grpcapi.MetadataConsistency``):

- ``varwatch-position`` on a write's response: the log position it
  applied at. On a read or watch request: the node waits until it has
  applied the log that far (a read on one node that sees a write made on
  another).
- ``varwatch-consistency: local`` on a read or watch request: the node
  answers from what it has applied, without asking the log (it may be
  stale; it works while the log is unreachable).

A single server sends no position and ignores both.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Optional, Tuple

POSITION_KEY = "varwatch-position"
CONSISTENCY_KEY = "varwatch-consistency"

Metadata = Optional[Tuple[Tuple[str, str], ...]]


def read_metadata(md: Metadata, position: Optional[int], local: bool) -> Metadata:
    """md plus the keys a read with these options sends."""
    extra = []
    if position is not None:
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise ValueError(f"position must be a log position (an int >= 0), not {position!r}")
        if position > 0:
            extra.append((POSITION_KEY, str(position)))
    if local:
        extra.append((CONSISTENCY_KEY, "local"))
    if not extra:
        return md
    return tuple(md or ()) + tuple(extra)


def watch_metadata(md: Metadata, position: Optional[int], local: bool) -> Tuple[Metadata, bool]:
    """md plus the keys a watch with these options sends, and whether the
    watch needs a stream of its own for them: the keys are a stream's, and
    the shared stream is every watch's (the Go client's rule too)."""
    with_reads = read_metadata(md, position, local)
    return with_reads, with_reads is not md


def position_of(initial_metadata: Optional[Iterable[Any]]) -> Optional[int]:
    """The log position a response's initial metadata gives, or None (a
    single server, or a failed write)."""
    pos = None
    for item in initial_metadata or ():
        key, value = item[0], item[1]
        if key == POSITION_KEY:
            try:
                pos = int(value)
            except ValueError:
                pass
    return pos


class Positions:
    """The highest log position the writes of one client got.

    # Notes
    Guarded by its lock: the writes of a synchronous client may come from
    several threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Optional[int] = None

    def note(self, pos: Optional[int]) -> None:
        if pos is None:
            return
        with self._lock:
            if self._last is None or pos > self._last:
                self._last = pos

    @property
    def last(self) -> Optional[int]:
        with self._lock:
            return self._last
