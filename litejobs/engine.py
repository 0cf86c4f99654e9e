"""Engine: what any client (the native API, a vendor dialect, the CLI) may ask of the job system.

It validates submissions into JobSpecs, checks ownership, and ties the store to the worker pool
and the change feed. The HTTP layers above only translate requests and responses.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from litejobs import jsontext
from litejobs.config import Config
from litejobs.errors import (
    Forbidden,
    NotFound,
    QueueDisabled,
    ResultNotAvailable,
    ShuttingDown,
    SyncTimeout,
    UnsupportedKind,
    ValidationFailed,
)
from litejobs.events import ChangeFeed
from litejobs.fields import Fields
from litejobs.job_context import Resources, ResourceView
from litejobs.jobs import Job, JobResult, JobSpec, JobState
from litejobs.kinds import KindRegistry
from litejobs.store import Store, Submitted
from litejobs.worker import WorkerPool

MAX_META_BYTES = 16 * 1024
#: what a webhook may ask to be told of: a status reached, or "progress" (a progress report)
WEBHOOK_EVENTS = (*(state.value for state in JobState), "progress")
ASYNC_HINT = "submit it with POST /v1/scrape/async and poll GET /v1/jobs/{id}"
#: Retry-After of `503 shutting_down`: about what a restart takes (a load balancer may send the retry
#: to another node sooner)
SHUTDOWN_RETRY_AFTER_S = 5.0


def shutdown_refusal(message: str | None = None) -> ShuttingDown:
    """`503 shutting_down`, with a Retry-After (errors.ShuttingDown has none of its own)."""
    error = ShuttingDown(message)
    error.retry_after_s = SHUTDOWN_RETRY_AFTER_S
    return error


def request_hash(body: Any) -> str:
    """The fingerprint an Idempotency-Key is bound to: the canonical JSON of the request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class SyncContext(ResourceView):
    """A KindContext for an inline scrape: no job row; files come back as data: URLs."""

    resources: Resources
    job_id: str = "sync"
    attempt: int = 1
    timeout_s: float | None = None
    progress: list[dict[str, Any]] = field(default_factory=list)
    pages: list[dict[str, Any]] = field(default_factory=list)

    def parked(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()  # an inline run holds no worker slot

    async def save_pages(self, pages: list[dict[str, Any]]) -> None:
        self.pages.extend(pages)

    async def saved_pages(self, offset: int, limit: int) -> list[dict[str, Any]]:
        return self.pages[offset : offset + limit]

    async def saved_page_urls(self) -> list[str]:
        return [page["url"] for page in self.pages]

    async def report_progress(self, message: str, progress: float | None = None) -> None:
        self.progress.append({"message": message, "progress": progress})

    async def save_file(self, name: str, data: bytes, content_type: str) -> str:
        return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


class Engine:
    def __init__(
        self,
        config: Config,
        store: Store,
        kinds: KindRegistry,
        workers: WorkerPool | None,
        feed: ChangeFeed,
        resources: Resources,
        *,
        clock: Callable[[], int],
    ) -> None:
        self.config = config
        self.store = store
        self.kinds = kinds
        self.workers = workers
        self.feed = feed
        self.resources = resources
        self.clock = clock
        self._shutting_down = False

    # --- submit ------------------------------------------------------------------------------

    def build_spec(self, body: Any, owner: str, idempotency_key: str | None = None, prefix: str = "") -> JobSpec:
        """Validate one submission body into a JobSpec; raises ValidationFailed or UnsupportedKind."""
        f = Fields(body, prefix)
        kind_name = f.str("kind", "fetch", max_len=100)
        raw_input = f.dict("input")
        limits, queue = self.config.limits, self.config.queue
        meta = f.dict("meta", {})
        priority = f.int("priority", 0, low=-100, high=100)
        max_attempts = f.int("max_attempts", queue.max_attempts, low=1, high=20)
        timeout_s = f.number("timeout_s", limits.default_timeout_s, low=1, high=limits.max_timeout_s)
        delay_s = f.number("delay_s", 0.0, low=0, high=30 * 86400)
        webhook = self._webhook(f)
        # counted as stored, UTF-8: json.dumps would count "é" as the 6 bytes of its \u escape
        if meta and len(jsontext.encode(meta)) > MAX_META_BYTES:
            f.problem("meta", f"must be at most {MAX_META_BYTES} bytes of JSON")
        kind = self.kinds.get(kind_name or "fetch")
        if raw_input is not None:
            try:
                kind.parse(raw_input)
            except ValidationFailed as exc:  # reported with the top-level problems, all at once
                for detail in exc.details:
                    f.problems.append({**detail, "field": f"{prefix}.{detail['field']}" if prefix else detail["field"]})
        f.finish()
        return JobSpec(
            kind=kind_name,
            input=raw_input,
            owner=owner,
            meta=meta,
            priority=priority,
            max_attempts=max_attempts,
            timeout_s=min(float(timeout_s), limits.max_timeout_s),
            delay_s=float(delay_s),
            webhook=webhook,
            idempotency_key=idempotency_key,
            request_hash=request_hash(body) if idempotency_key else None,
        )

    @staticmethod
    def _webhook(f: Fields) -> dict[str, Any] | None:
        raw = f.any("webhook")
        if raw is None:
            return None
        hook = Fields(raw, f.name("webhook"))
        url = hook.url("url")
        events = hook.str_list("events", ["completed", "partial", "failed", "cancelled"], choices=WEBHOOK_EVENTS)
        if events == []:
            hook.problem("events", "must name at least one event (or be left out: the terminal statuses)")
        hook.finish()
        return {"url": url, "events": events}

    # --- shutdown ----------------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def begin_shutdown(self) -> None:
        """From now on refuse new jobs and inline runs (`503 shutting_down`), and answer every
        `?wait=` with the job as it is: a long-poll held open would outlive the server."""
        if self._shutting_down:
            return
        self._shutting_down = True
        self.feed.poke_all()  # wakes every waiter, which then sees shutting_down

    def _refuse_if_shutting_down(self) -> None:
        if self._shutting_down:
            raise shutdown_refusal()

    def check_accepting(self) -> None:
        self._refuse_if_shutting_down()
        if not self.config.queue.enabled or self.workers is None:
            raise QueueDisabled()

    async def submit(self, specs: list[JobSpec]) -> list[Submitted]:
        self.check_accepting()
        submitted = await self.store.submit(specs, self.clock(), self.config.queue.max_depth)
        fresh = [s.job for s in submitted if not s.replayed]
        if fresh:
            assert self.workers is not None
            if any(job.status == JobState.WAITING for job in fresh):
                self.workers.notify()
            delayed = [job.run_at for job in fresh if job.status == JobState.DELAYED]
            if delayed:  # the promoter's, however the batch mixes them with jobs due now
                self.workers.notify(min(delayed))
        for item in submitted:
            if not item.replayed:
                self.feed.publish(item.job)
        return submitted

    # --- read --------------------------------------------------------------------------------

    async def get(self, job_id: str, owner: str) -> Job:
        job = await self.store.get(job_id) if job_id.startswith("job_") else None
        if job is None:
            raise NotFound()
        if job.owner != owner:
            raise Forbidden()
        return job

    async def wait(self, job_id: str, owner: str, wait_s: float) -> Job:
        """The job once terminal, or as it is when `wait_s` runs out or the server begins to shut
        down. Woken by the change feed (changes made here, and those other PostgreSQL nodes
        announce); the store is re-read every `[store] recheck_s` for changes nothing announced
        (another process on SQLite)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        job = await self.get(job_id, owner)
        while not job.is_terminal and not self._shutting_down:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            changed = await self.feed.wait_change(job_id, min(remaining, self.config.store.recheck_s))
            job = changed if changed is not None else await self.get(job_id, owner)
        return job

    async def result(self, job_id: str, owner: str) -> tuple[Job, JobResult]:
        job = await self.get(job_id, owner)
        if job.status == JobState.CANCELLED and await self.store.page_count(job_id):
            # a cancelled crawl keeps the pages it finished: they are its result
            return job, JobResult(JobState.CANCELLED, {}, {"cancelled": True})
        if job.status not in (JobState.COMPLETED, JobState.PARTIAL):
            raise ResultNotAvailable(f"the job is {job.status.value}; results exist for completed and partial jobs")
        result = await self.store.get_result(job_id)
        if result is None:
            raise ResultNotAvailable()
        return job, result

    # --- steer -------------------------------------------------------------------------------

    async def cancel(self, job_id: str, owner: str) -> Job:
        await self.get(job_id, owner)
        expires = self.clock() + int(self.config.store.retention_s * 1000)
        job, previous = await self.store.cancel(job_id, self.clock(), expires)
        if previous == JobState.ACTIVE and self.workers is not None:
            await self.workers.cancel_local(job_id)
        self.feed.publish(job)
        return job

    async def retry(self, job_id: str, owner: str) -> Job:
        await self.get(job_id, owner)
        self.check_accepting()
        job = await self.store.retry(job_id, self.clock(), self.config.queue.max_depth)
        assert self.workers is not None
        self.workers.notify()
        self.feed.publish(job)
        return job

    # --- inline ------------------------------------------------------------------------------

    async def run_inline(
        self, kind_name: str, raw_input: Mapping[str, Any], hint: str = ASYNC_HINT
    ) -> tuple[JobResult, list[dict[str, Any]]]:
        """Run a kind now, outside the queue, within limits.sync_timeout_s (POST /v1/scrape and the
        dialects' inline surfaces); returns the result and the pages a multi-page kind saved.
        `hint` tells the caller of a 504 where the async form of the call is."""
        self._refuse_if_shutting_down()
        kind = self.kinds.get(kind_name)
        if not kind.sync_allowed:
            raise UnsupportedKind(f"the {kind_name!r} kind runs only as a job: {hint}")
        params = kind.parse(raw_input)
        timeout_s = self.config.limits.sync_timeout_s
        context = SyncContext(self.resources, timeout_s=timeout_s)
        try:
            result = await asyncio.wait_for(kind.run(params, context), timeout_s)
        except TimeoutError:
            raise SyncTimeout(f"the scrape took longer than {timeout_s:g} s: {hint}") from None
        return result, context.pages
