"""The watch's resume logic, free of I/O so the sync and async iterators
share it and tests can drive it with made-up updates.

What the caller must see: every change exactly once, in revision order,
across any number of reconnects. How:

- ``rev`` is the revision up to which every change has been handed to the
  caller. It advances when a later revision arrives (changes of one
  revision, an atomic multi-set, arrive together and in order), on a
  heartbeat (the server vouches that everything up to it was delivered),
  and when the server ends a stream with a status that names the last
  delivered revision (it only ends between whole revisions).
- Changes at a revision not yet known complete are counted
  (``partial_rev``, ``partial_count``). A transport drop in the middle of
  an atomic set leaves that revision partial: the resume then starts one
  revision earlier and skips as many changes of it as were already handed
  out. Otherwise a resume is ``start_revision = rev``.
- Anything at or below ``rev`` that a replay sends again is dropped.
- Heartbeats are trusted, also on a stream the server then ends as a slow
  consumer: the server drops what was queued and ends the stream in one
  step, so no heartbeat can vouch for a dropped change (engine
  ``TestCutOffIsAtomicForHeartbeats``).
- Initial values are held back until ``initial_values_complete`` arrives,
  so a drop in the middle of a snapshot restarts the snapshot rather than
  handing out half of one.
- Revisions count within one incarnation of the session. The incarnation is
  learnt from the stream (its header, then the updates that tell a
  position) and named on every resume, so a session created again while the
  watch was away ends the watch with ``IncarnationChanged`` (or, with
  ``resnapshot_on_compacted``, starts a fresh snapshot) instead of handing
  out another history's changes under the same revision numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

import grpc

from . import _requests
from .errors import (
    Compacted,
    IncarnationChanged,
    InternalError,
    InvalidValue,
    ResourceExhausted,
    SlowConsumer,
    Unavailable,
    VarwatchError,
)
from .models import Update

SNAPSHOT_REVISION_HEADER = "varwatch-snapshot-revision"
"""Response header of every watch stream: the revision the subscription
was registered at (every later change reaches the stream)."""

INCARNATION_HEADER = "varwatch-session-incarnation"
"""Response header of every watch stream: the watched session's
incarnation, the history its revisions belong to."""


@dataclass
class WatchOptions:
    """Everything a watch was asked for; see ``Session.watch``."""

    session_id: str
    variables: tuple[str, ...] = ()
    pattern: str = ""
    include_initial_values: bool = False
    start_revision: Optional[int] = None
    incarnation: Optional[str] = None
    heartbeat_interval: Optional[_requests.Seconds] = None
    batched: Optional[bool] = None
    max_batch_size: int = 0
    max_batch_delay: Optional[_requests.Seconds] = None
    coalesce: bool = False
    filters: Optional[Iterable[Any]] = None
    options: Optional[Mapping[str, str]] = None
    resume: bool = True
    max_retries: Optional[int] = 10
    initial_backoff: float = 0.05
    max_backoff: float = 5.0
    resnapshot_on_compacted: bool = False
    dedicated: bool = False
    view: str = "full"
    jitter: float = 0.5
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def validate(self) -> None:
        if self.batched is None:
            # Asking for batch tuning implies the batched RPC.
            self.batched = bool(self.max_batch_size or self.max_batch_delay)
        elif not self.batched and (self.max_batch_size or self.max_batch_delay):
            raise InvalidValue("max_batch_size and max_batch_delay apply to batched watches: pass batched=True")
        if self.batched:
            self.dedicated = True  # WatchVariablesBatched is a stream of its own
        if self.view not in ("full", "value"):
            raise InvalidValue(f"view {self.view!r} is not 'full' or 'value'")
        if self.dedicated and self.view != "full":
            raise InvalidValue("view='value' needs the shared stream: a dedicated stream is always full")
        if self.max_batch_size < 0:
            raise InvalidValue(f"max_batch_size {self.max_batch_size} is negative")
        if self.include_initial_values and self.start_revision is not None:
            raise InvalidValue(
                "include_initial_values and start_revision are exclusive: a resumed watch replays changes instead"
            )
        if self.start_revision is not None and self.start_revision < 0:
            raise InvalidValue(f"start_revision {self.start_revision} is negative")
        if self.max_retries is not None and self.max_retries < 0:
            raise InvalidValue("max_retries must be >= 0 or None (no cap)")
        if self.initial_backoff < 0 or self.max_backoff < 0:
            raise InvalidValue("backoff must not be negative")


class ResumeState:
    """Tracks what a watch has handed out and builds each attempt's request.

    # Notes
    Not thread-safe: owned by the one iterator that drives it.
    """

    def __init__(self, opts: WatchOptions) -> None:
        opts.validate()
        self.opts = opts
        # Every change up to rev has been handed out (None: no base yet).
        self.rev: Optional[int] = opts.start_revision
        # The session incarnation rev belongs to, once known.
        self.incarnation: Optional[str] = opts.incarnation or None
        # Changes handed out at partial_rev (> rev), a revision that may
        # have more changes still to come.
        self.partial_rev: Optional[int] = None
        self.partial_count = 0
        # While resuming from inside a partial revision: how many of its
        # changes to drop as already handed out.
        self.skip_rev: Optional[int] = None
        self.skip_left = 0
        # A snapshot is wanted and not complete yet: hold initial values.
        self.snapshot_pending = opts.include_initial_values
        self.held: list[Update] = []
        self.attempts = 0  # attempts made
        self.failures = 0  # consecutive failed attempts without progress
        self.resumes = 0  # reconnects after the first attempt
        self.done = False  # session_closed seen
        self.heartbeats = 0  # heartbeats received (hidden from the caller)

    # ---- requests ----

    def next_request(self) -> Any:
        """The request of the next attempt, given what was handed out."""
        o = self.opts
        start: Optional[int] = None
        initial = False
        if self.snapshot_pending:
            initial = True
            self.held = []
        elif self.rev is not None or self.partial_rev is not None:
            base = self.rev if self.rev is not None else 0
            start = base
            if self.partial_rev is not None and self.partial_count > 0:
                start = self.partial_rev - 1
                self.skip_rev = self.partial_rev
                self.skip_left = self.partial_count
        if self.attempts > 0:
            self.resumes += 1
        self.attempts += 1
        return _requests.watch_request(
            o.session_id,
            o.variables,
            pattern=o.pattern,
            include_initial_values=initial,
            start_revision=start,
            heartbeat_interval=o.heartbeat_interval,
            max_batch_size=o.max_batch_size,
            max_batch_delay=o.max_batch_delay,
            coalesce=o.coalesce,
            filters=o.filters,
            options=o.options,
            incarnation=None if initial else self.incarnation,
        )

    def on_header(self, metadata: Optional[Iterable[Any]]) -> bool:
        """Takes the stream's response headers; reports whether they carry
        the snapshot revision (the server sends it once the subscription is
        registered, so its presence means the stream is established)."""
        found: Optional[int] = None
        incarnation = ""
        for item in metadata or ():
            key, value = item[0], item[1]
            if key == SNAPSHOT_REVISION_HEADER:
                try:
                    found = int(value)
                except (TypeError, ValueError):
                    return False
            elif key == INCARNATION_HEADER:
                incarnation = value
        if found is None:
            return False
        if incarnation and self.incarnation is None:
            # A mismatch is for the first update that tells the position
            # (a heartbeat or initial_values_complete) to find.
            self.incarnation = incarnation
        # A fresh watch from now has its base here; a resume's base is its
        # start_revision, and a snapshot's comes with initial_values_complete.
        if self.rev is None and self.partial_rev is None and not self.snapshot_pending:
            self.rev = found
        return True

    # ---- updates ----

    def feed(self, u: Any) -> list[Update]:
        """Takes one wire update; returns what to hand the caller (often
        nothing or one update; a whole snapshot at initial_values_complete)."""
        self.failures = 0
        t = u.update_type
        if t in ("heartbeat", "initial_values_complete", "session_closed"):
            self._learn(u.incarnation)
        if t == "heartbeat":
            self.heartbeats += 1
            self._complete_up_to(u.revision)
            return []
        if self.snapshot_pending:
            if t == "initial_value":
                self.held.append(Update.from_proto(u))
                return []
            if t == "initial_values_complete":
                out = self.held
                out.append(Update.from_proto(u))
                self.held = []
                self.snapshot_pending = False
                self.rev = u.revision
                self.partial_rev = None
                self.partial_count = 0
                self.skip_left = 0
                return out
        if t == "session_closed":
            self.done = True
            return [Update.from_proto(u)]
        if t == "initial_values_complete" or t == "initial_value":
            # Only a snapshot sends these, and it was handed out already.
            return []
        rev = u.revision
        if self.rev is not None and rev <= self.rev:
            return []  # replayed again after a resume
        if self.skip_left > 0:
            if rev == self.skip_rev:
                self.skip_left -= 1
                return []
            self.skip_left = 0
        if self.partial_rev is None or rev > self.partial_rev:
            if self.partial_rev is not None:
                self.rev = self.partial_rev
            self.partial_rev = rev
            self.partial_count = 1
        elif rev == self.partial_rev:
            self.partial_count += 1
        else:
            return []  # older than something handed out: never go back
        return [Update.from_proto(u)]

    def _learn(self, incarnation: str) -> None:
        """Records the incarnation the stream names. Another one than the
        watch's position belongs to means a server that did not check the
        resume: nothing it sends can be trusted, so the watch ends."""
        if not incarnation or incarnation == self.incarnation:
            return
        if self.incarnation is None or self.snapshot_pending:
            self.incarnation = incarnation
            return
        raise IncarnationChanged(
            f"session {self.opts.session_id!r} is incarnation {incarnation}, not {self.incarnation}: "
            "it was created again, watch again with initial values",
            session_id=self.opts.session_id,
            current_incarnation=incarnation,
            requested_incarnation=self.incarnation,
        )

    def _complete_up_to(self, revision: int) -> None:
        if self.snapshot_pending:
            return
        if self.rev is None or revision > self.rev:
            self.rev = revision
        if self.partial_rev is not None and self.partial_rev <= revision:
            self.partial_rev = None
            self.partial_count = 0

    @property
    def revision(self) -> Optional[int]:
        """The revision up to which every change was handed out."""
        return self.rev

    @property
    def last_revision(self) -> Optional[int]:
        """The revision of the last change handed out (maybe partial)."""
        return self.partial_rev if self.partial_rev is not None else self.rev

    # ---- ends ----

    def on_error(self, err: VarwatchError) -> float:
        """Decides what a stream's end means: returns how long to wait before
        the next attempt, or raises err when the watch must end."""
        if not self.opts.resume:
            raise err
        if isinstance(err, (Compacted, IncarnationChanged)):
            if not self.opts.resnapshot_on_compacted:
                raise err
            self.snapshot_pending = True
            self.incarnation = None
            self.rev = None
            self.partial_rev = None
            self.partial_count = 0
            self.skip_left = 0
            return 0.0
        if not retryable(err):
            raise err
        delivered = getattr(err, "delivered_revision", None)
        if delivered is not None:
            # The server ends a stream only between whole drains, which
            # never split a revision: what arrived is complete. Never move
            # past what actually arrived, though.
            last = self.last_revision
            if last is not None:
                self._complete_up_to(min(delivered, last))
        return self._retry(err)

    def _retry(self, err: VarwatchError) -> float:
        self.failures += 1
        if self.opts.max_retries is not None and self.failures > self.opts.max_retries:
            raise err
        return self.backoff()

    def backoff(self) -> float:
        o = self.opts
        base = min(o.max_backoff, o.initial_backoff * (2 ** (self.failures - 1)))
        return base * (1 - o.jitter * o._rng.random())


def retryable(err: VarwatchError) -> bool:
    """Whether a watch resumes after this end: the server going away or
    cutting off a slow consumer, or the transport breaking.

    A RESOURCE_EXHAUSTED resumes only as a :class:`SlowConsumer` (reason
    ``SLOW_CONSUMER`` in the status's ErrorInfo, see ``errors.from_status``):
    any other is a limit (``LIMIT_EXCEEDED``, or gRPC's message size limits),
    which the same request would hit again, so the watch raises it.

    An INTERNAL or UNKNOWN without an ErrorInfo is grpcio's word for a
    stream the transport broke (a reset stream, a removed one): every
    status a varwatch server decides on carries a reason (a server bug is
    reason ``INTERNAL``, and is raised), so one without is the connection,
    and resumes like UNAVAILABLE."""
    if isinstance(err, (Unavailable, SlowConsumer)):
        return True
    if isinstance(err, ResourceExhausted):
        return False
    if isinstance(err, InternalError):
        return err.reason is None and err.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    return False


def stream_ended_without_close() -> VarwatchError:
    """The error for a stream that ended OK without session_closed: the
    server should never do that, so it is treated as a dropped connection."""
    return Unavailable("watch stream ended without session_closed")
