"""The job model: states, the legal moves between them, and the job records. Pure: no I/O."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from litejobs.ids import random_hex


class JobState(str, enum.Enum):
    """Where a job is in its life; see ../shared/API.md for the diagram."""

    #: accepted and due; the next free worker claims it
    WAITING = "waiting"
    #: due later: retry backoff, or a `delay_s` at submit
    DELAYED = "delayed"
    #: a worker holds its lease and runs it
    ACTIVE = "active"
    #: finished with every output
    COMPLETED = "completed"
    #: finished, but some outputs or pages failed
    PARTIAL = "partial"
    #: every attempt used, or a failure not worth retrying; `error.code` says why
    FAILED = "failed"
    #: cancelled by its owner
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


TERMINAL: frozenset[JobState] = frozenset({JobState.COMPLETED, JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED})

#: Every legal move. The store guards each change with `WHERE status IN (legal sources)`.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.ACTIVE, JobState.CANCELLED}),
    JobState.DELAYED: frozenset({JobState.WAITING, JobState.CANCELLED}),
    # active → waiting: a lease expired (dead worker) or a graceful shutdown handed the job back
    JobState.ACTIVE: frozenset(
        {
            JobState.COMPLETED,
            JobState.PARTIAL,
            JobState.FAILED,
            JobState.DELAYED,
            JobState.CANCELLED,
            JobState.WAITING,
        }
    ),
    JobState.COMPLETED: frozenset(),
    JobState.PARTIAL: frozenset(),
    # a failed or cancelled job may be retried by its owner
    JobState.FAILED: frozenset({JobState.WAITING}),
    JobState.CANCELLED: frozenset({JobState.WAITING}),
}


def can_move(source: JobState, target: JobState) -> bool:
    """Whether `source → target` is a legal transition."""
    return target in TRANSITIONS[source]


def sources_of(target: JobState) -> frozenset[JobState]:
    """The states from which `target` may be reached."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def new_job_id() -> str:
    """An unguessable id: 128 random bits."""
    return "job_" + random_hex(16)


def backoff_s(attempt: int, base_s: float, cap_s: float, jitter: float) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, with `jitter` ∈ [0, 1)
    spreading it so that jobs failing together do not all return together."""
    delay = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    return delay * (0.5 + jitter / 2)


def iso_ms(epoch_ms: int | None) -> str | None:
    """Epoch milliseconds → `2026-11-22T10:00:00.123Z`."""
    if epoch_ms is None:
        return None
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_iso_second(seconds)}{millis:03d}Z"


@lru_cache(maxsize=4096)
def _iso_second(epoch_s: int) -> str:
    """`2026-11-22T10:00:00.` for one second: strftime cost 12 µs a call, six per job body; jobs
    come in bursts that share their seconds."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


@dataclass(frozen=True)
class JobSpec:
    """What a client asked for: a job before it has an id. Already validated."""

    kind: str
    input: dict[str, Any]
    owner: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 3
    timeout_s: float = 60.0
    delay_s: float = 0.0
    webhook: dict[str, Any] | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass
class Job:
    """A job as stored. Times are epoch milliseconds."""

    id: str
    kind: str
    status: JobState
    input: dict[str, Any]
    owner: str
    meta: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    timeout_s: float
    created_at: int
    updated_at: int
    run_at: int
    started_at: int | None = None
    completed_at: int | None = None
    expires_at: int | None = None
    lease_until: int | None = None
    progress: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    webhook: dict[str, Any] | None = None
    recoveries: int = 0
    result_available: bool = False

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass
class Attempt:
    """One attempt of a job, kept for the record (the dashboard's timeline). `run` is 1 for the job's
    first run and one more after each retry, whose attempts count from 1 again."""

    number: int
    started_at: int
    ended_at: int | None
    outcome: str | None
    error: dict[str, Any] | None
    run: int = 1


@dataclass
class JobResult:
    """What a finished attempt produced: `outputs` by name, and `stats` about the run."""

    status: JobState
    outputs: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def system_clock_ms() -> int:
    """The default clock: wall time in epoch milliseconds. Tests inject their own."""
    return time.time_ns() // 1_000_000


def recovery_error(recoveries: int, attempts: int, max_attempts: int, max_recoveries: int) -> dict[str, str] | None:
    """What ends a job whose worker died running it for the `recoveries`-th time: `poisoned` past
    max_recoveries, `worker_lost` with no attempt left; None when it goes back to the queue."""
    if recoveries > max_recoveries:
        return {"code": "poisoned", "message": f"the worker died {recoveries} times running this job"}
    if attempts >= max_attempts:
        return {"code": "worker_lost", "message": "the worker running this job died; no attempts remain"}
    return None


def should_retry(attempts: int, max_attempts: int, retryable: bool) -> bool:
    """After a failed attempt: go round again (through `delayed`) or fail for good."""
    return retryable and attempts < max_attempts
