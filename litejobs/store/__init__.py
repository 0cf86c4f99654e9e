"""The store: the one narrow interface through which everything reads and writes jobs.

`Store` is what the rest of litejobs may call; `SqliteStore` is the embedded implementation,
`PostgresStore` the one several nodes share. `open_store` picks one from the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

# raised by a store whose database cannot be reached or opened; kept among the API errors (503)
from litejobs.errors import StoreUnavailable as StoreUnavailable
from litejobs.jobs import Attempt, Job, JobResult, JobSpec, JobState

if TYPE_CHECKING:
    from litejobs.config import StoreConfig


@dataclass
class Submitted:
    job: Job
    #: True when an Idempotency-Key matched an earlier job with the same request
    replayed: bool


class Change(NamedTuple):
    """One of an owner's jobs as a store read of changes finds it: its place in the keyset
    (updated_at, seq) and which version it is, without the row (event streams read a window of
    changes again and again, and need the full row only of a version they have not sent)."""

    seq: int
    job_id: str
    updated_at: int
    status: str


@dataclass
class StoredFile:
    job_id: str
    name: str
    content_type: str
    size: int


@dataclass
class Recovered:
    """Jobs found active under a dead worker's lease, and what became of them."""

    requeued: list[str]
    failed: list[str]
    #: each recovered job as the recovery left it, for the caller to announce (webhooks, metrics)
    jobs: list[Job] = field(default_factory=list)


@dataclass
class Delivery:
    """One webhook delivery: a job's event, its exact body, and how sending it went."""

    id: str
    job_id: str
    event: str
    url: str
    payload: bytes
    #: pending (due at next_at, or being sent), delivered, or failed (for good)
    state: str
    attempts: int
    next_at: int | None
    last_status: int | None
    last_error: str | None
    created_at: int
    updated_at: int


class Store(Protocol):
    """Every state change is guarded by the job's current state in the same statement, so races
    settle in the database. Times are epoch milliseconds, passed in (the clock is the caller's).

    Optional capabilities, which PostgresStore has and SqliteStore does not: keeping artefacts'
    bytes (`FileBytesStore`), telling of changes made by other nodes (`on_work_available`,
    `on_remote_change`; app.py looks them up with getattr), whether its database answers (`ping`
    for /readyz, `unreachable_within` for the sweeper), and per-host request slots shared by
    the nodes (`take_host_slot` and its kin, `shared_politeness.SharedHosts`; `host_gate_for`
    looks for them)."""

    async def submit(self, specs: list[JobSpec], now_ms: int, max_depth: int) -> list[Submitted]:
        """Insert all or none; raises QueueFull past max_depth, IdempotencyConflict on a reused key."""

    async def get(self, job_id: str) -> Job | None: ...

    async def list_jobs(
        self, owner: str | None, status: str | None, kind: str | None, limit: int, before_seq: int | None
    ) -> tuple[list[Job], int | None]:
        """Newest first; returns the jobs and the cursor for the next page (None at the end)."""

    async def claim(
        self, limit: int, worker_id: str, now_ms: int, lease_ms: int, *, idle: bool = True, promote: bool = True
    ) -> list[Job]:
        """Promote due delayed jobs (unless `promote` is False: the caller does, with promote_due, and
        announces them), then lease up to `limit` waiting jobs, best priority first. A job recovered
        from a dead worker is taken alone, and only when `idle` (the caller runs nothing)."""

    async def promote_due(self, now_ms: int, limit: int) -> list[Job]:
        """Make up to `limit` delayed jobs whose run_at has come waiting; returns them as they now are."""

    async def heartbeat(self, job_ids: list[str], worker_id: str, lease_until_ms: int) -> set[str]:
        """Extend leases; returns the ids still active under this worker (others were cancelled)."""

    async def finish(
        self, job_id: str, worker_id: str, result: JobResult, now_ms: int, expires_at_ms: int
    ) -> Job | None:
        """Record a finished attempt; the job as it now is, or None when the lease was lost."""

    async def fail(
        self,
        job_id: str,
        worker_id: str,
        error: dict[str, Any],
        retry_at_ms: int | None,
        now_ms: int,
        expires_at_ms: int,
    ) -> Job | None:
        """Record a failed attempt: to `delayed` until retry_at_ms, or `failed` when it is None;
        the job as it now is, or None when the lease was lost."""

    async def release(self, job_ids: list[str], worker_id: str, now_ms: int) -> None:
        """Hand active jobs back to the queue, the attempt not counted (graceful shutdown)."""

    async def cancel(self, job_id: str, now_ms: int, expires_at_ms: int) -> tuple[Job, JobState]:
        """Cancel; returns the job and the status it had. Raises JobFinished when terminal."""

    async def retry(self, job_id: str, now_ms: int, max_depth: int) -> Job:
        """Put a failed or cancelled job back in the queue for a new run, its earlier attempts kept.
        Raises NotFound, JobFinished for any other status, QueueFull past max_depth."""

    async def set_progress(self, job_id: str, progress: dict[str, Any], now_ms: int) -> None: ...

    async def recover_expired(
        self, now_ms: int, max_recoveries: int, dead_owners: list[str] | None = None, *, retention_ms: int
    ) -> Recovered:
        """Requeue (or fail, past their attempts or max_recoveries) active jobs whose lease lapsed or whose
        worker is in `dead_owners`; a failed one is kept retention_ms after it ends, as any ended job."""
        ...

    async def sweep_expired(self, now_ms: int, limit: int) -> list[str]:
        """Delete up to `limit` jobs past their expires_at, but not one with a pending webhook
        delivery (it goes once the delivery ends); returns their ids."""

    async def next_run_at(self) -> int | None: ...

    async def get_result(self, job_id: str) -> JobResult | None: ...

    async def attempts(self, job_id: str) -> list[Attempt]:
        """Every attempt of every run, oldest first (by run, then number)."""

    async def add_file(self, file: StoredFile) -> None: ...

    async def get_file(self, job_id: str, name: str) -> StoredFile | None: ...

    async def add_pages(self, job_id: str, pages: list[dict[str, Any]]) -> None:
        """Append result pages of a multi-page job (a crawl), in order; kept until the job expires."""

    async def pages(self, job_id: str, offset: int, limit: int) -> list[dict[str, Any]]: ...

    async def page_count(self, job_id: str) -> int: ...

    async def page_urls(self, job_id: str) -> list[str]:
        """URLs of the pages stored so far: what a resumed crawl must not fetch again."""

    async def changes_after(self, owner: str, after_ms: int, after_seq: int, limit: int) -> list[Change]:
        """Up to `limit` of the owner's jobs whose (updated_at, seq) comes after (after_ms, after_seq),
        oldest change first: a keyset, so any number of jobs changed in one ms page through."""

    async def jobs_by_seq(self, seqs: list[int]) -> dict[int, Job]:
        """The jobs with these seqs as they are now, by seq (one deleted meanwhile is missing)."""

    async def active_owners(self) -> list[str]: ...

    async def stats(self, now_ms: int) -> dict[str, Any]: ...

    async def counts_by_status_kind(self) -> dict[tuple[str, str], int]:
        """How many jobs each (status, kind) pair has: the metrics' job gauge."""

    # --- webhook deliveries ------------------------------------------------------------------

    async def add_delivery(self, job_id: str, event: str, url: str, payload: bytes, now_ms: int) -> Delivery:
        """Record a pending delivery, due now."""

    async def claim_deliveries(self, now_ms: int, limit: int, lease_ms: int) -> list[Delivery]:
        """Take up to `limit` due deliveries in turns across receivers (each receiver's oldest first,
        then each one's second...; first attempts before retries within a turn), pushing their next_at
        `lease_ms` ahead so that no other sender (another process on the file) takes them meanwhile."""

    async def record_delivery(
        self,
        delivery_id: str,
        state: str,
        next_at_ms: int | None,
        status: int | None,
        error: str | None,
        now_ms: int,
    ) -> None:
        """Record one attempt's outcome (attempts + 1): delivered, failed, or pending until next_at_ms."""

    async def release_deliveries(self, delivery_ids: list[str], now_ms: int) -> None:
        """Make claimed deliveries due again, the attempt not counted (shutdown mid-send)."""

    async def deliveries(self, job_id: str, limit: int) -> list[Delivery]:
        """A job's deliveries, oldest first (the latest `limit`)."""

    async def delivery_counts(self) -> dict[str, int]:
        """Deliveries by state."""

    async def jobs_missing_delivery(self, since_ms: int, limit: int) -> list[str]:
        """Jobs that ended since `since_ms` with a webhook but no delivery for their final status:
        the process died between recording the end and recording the delivery."""


class FileBytesStore(Protocol):
    """Optional, PostgreSQL only: a store that keeps artefacts' bytes, so that any node can serve a
    file another node wrote (files.DatabaseFiles). SqliteStore has no such methods: its files stay
    on disk under files_dir, beside the database file."""

    async def put_file_data(self, job_id: str, name: str, data: bytes) -> None:
        """Keep (or replace) a job's artefact; deleted with the job."""

    async def file_data(self, job_id: str, name: str) -> bytes | None: ...


def open_store(config: StoreConfig) -> Store:
    """The store the config names: PostgreSQL when `url` is set, else the SQLite file at `path`."""
    # imported here: each implementation imports this module's dataclasses
    if config.url:
        if not config.url.startswith(("postgresql://", "postgres://")):
            from litejobs.errors import ConfigError

            raise ConfigError(f"store.url must be a postgresql:// URL, not {config.url.split(':', 1)[0]}://")
        from litejobs.store.postgres import PostgresStore

        return PostgresStore(config.url)
    from litejobs.store.sqlite import SqliteStore

    return SqliteStore(config.path, max_db_mb=config.max_db_mb)
