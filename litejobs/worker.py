"""WorkerPool: claim due jobs, run each kind under its timeout and lease, and record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from litejobs import jsontext
from litejobs.errors import ApiError, JobError, JobTimeout, StorageFull, StoreUnavailable
from litejobs.events import ChangeFeed

# Resources is also imported from here (tests)
from litejobs.job_context import JobContext, Resources
from litejobs.jobs import Job, JobResult, JobState, backoff_s, should_retry
from litejobs.kinds import KindRegistry
from litejobs.leases import LeaseKeeper
from litejobs.promotion import Promoter
from litejobs.store import Store
from litejobs.worker_ids import new_worker_id

log = logging.getLogger("litejobs.worker")

#: how often an idle dispatcher looks at the database anyway: another process may have submitted
IDLE_POLL_S = 1.0
#: how long a kind gets to stop once cancelled (timeout, shutdown) before the worker moves on without it
ABANDON_AFTER_S = 2.0
#: an outcome the database could not take is written again after this, doubling up to OUTCOME_RETRY_MAX_S
OUTCOME_RETRY_FIRST_S = 0.2
OUTCOME_RETRY_MAX_S = 5.0


def _cancelled_from_outside() -> bool:
    """Whether the running task was asked to stop (a cancel, the lease lost, a shutdown), as opposed
    to a CancelledError that escaped the kind (it awaited a task that something else cancelled)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def error_of(exc: BaseException) -> tuple[dict[str, str], bool]:
    """An attempt's exception → (the job's `error`, whether another attempt may help)."""
    if isinstance(exc, asyncio.CancelledError):
        log.error("job crashed: CancelledError escaped its kind, though nobody cancelled the job", exc_info=exc)
        message = "CancelledError escaped the kind, though the job was not cancelled (it awaited something cancelled)"
        return {"code": "internal_error", "message": message}, True
    if isinstance(exc, StoreUnavailable):  # the kind's own store call (saving pages) met an outage
        return {"code": exc.code, "message": exc.message}, True
    if isinstance(exc, TimeoutError):
        exc = JobTimeout()
    if isinstance(exc, JobError):
        return {"code": exc.code, "message": exc.message}, exc.retryable
    if isinstance(exc, ApiError):  # a stored input that no longer validates: retrying cannot help
        return {"code": exc.code, "message": exc.message}, False
    log.exception("job crashed", exc_info=exc)
    return {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}, True


class WorkerPool:
    """`concurrency` jobs at once in this process. Woken at once by `notify()` after a submit, by
    the promoter when delayed jobs come due, and every IDLE_POLL_S for jobs submitted by another
    process."""

    def __init__(
        self,
        store: Store,
        kinds: KindRegistry,
        resources: Resources,
        feed: ChangeFeed,
        *,
        clock: Callable[[], int],
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.kinds = kinds
        self.resources = resources
        self.feed = feed
        self.clock = clock
        self.worker_id = worker_id or new_worker_id()
        queue = resources.config.queue
        self.concurrency = queue.concurrency
        self.lease_ms = int(queue.lease_s * 1000)
        self._running: dict[str, asyncio.Task[None]] = {}
        #: the attempt number each running job runs here (an outcome retried past a newer one is void)
        self._attempt_running: dict[str, int] = {}
        #: running jobs that wait for a shared resource: their slots are lent out (at most
        #: `concurrency` of them, so parked jobs never pile up past twice the pool)
        self._parked: set[str] = set()
        #: the job recovered from a dead worker that runs here alone, if any: nothing is claimed beside it
        self._isolated: str | None = None
        #: runs of kinds that ignored their cancellation; kept so that they are not garbage-collected mid-run
        self._abandoned: set[asyncio.Task[Any]] = set()
        #: outcome writes under way (retried while the database is away); stop() ends them
        self._writes: set[asyncio.Task[Job | None]] = set()
        self._wake = asyncio.Event()
        self._leases = LeaseKeeper(
            store,
            self.worker_id,
            self._running,
            lease_ms=self.lease_ms,
            recheck_s=resources.config.store.recheck_s,
            clock=clock,
        )
        self._promoter = Promoter(store, feed, clock=clock, on_promoted=self._wake.set)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def busy(self) -> int:
        return len(self._running)

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._stopping

    async def __aenter__(self) -> WorkerPool:
        self._tasks = [
            asyncio.create_task(self._dispatch_forever(), name="litejobs-dispatcher"),
            asyncio.create_task(self._leases.keep_forever(), name="litejobs-heartbeat"),
            asyncio.create_task(self._promoter.promote_forever(), name="litejobs-promoter"),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(self.resources.config.server.shutdown_grace_s)

    def notify(self, due_at_ms: int | None = None) -> None:
        """A job is due at `due_at_ms` (None: now): claim without waiting for the next poll; one due
        later is the promoter's (a submit of delayed jobs costs no claim)."""
        if due_at_ms is not None and due_at_ms > self.clock():
            self._promoter.expect(due_at_ms)
            return
        self._wake.set()

    def changed_elsewhere(self, job_id: str, owner: str) -> None:
        """Another node changed this job (PostgreSQL's change notices). If it runs here, it may have
        been cancelled there, or recovered as lost: check the leases now, so that its work stops at
        once rather than at the next heartbeat (up to a third of lease_s later)."""
        if job_id in self._running:
            self._leases.check_now()

    def recheck_leases(self) -> None:
        """Notices may have been missed (the LISTEN connection came back): check every lease now."""
        if self._running:
            self._leases.check_now()

    async def cancel_local(self, job_id: str, timeout_s: float = 2.0) -> None:
        """Stop the task running `job_id` here, if any (its job was cancelled in the store)."""
        task = self._running.get(job_id)
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=timeout_s)

    async def stop(self, grace_s: float) -> None:
        """Claim nothing more; give running jobs `grace_s`, then hand the rest back to the queue."""
        if self._stopping:
            return
        self._stopping = True
        self._promoter.stop()
        self._wake.set()
        if self._running:
            await asyncio.wait(set(self._running.values()), timeout=grace_s)
        leftover = dict(self._running)
        for task in leftover.values():
            task.cancel()
        if leftover:
            await asyncio.wait(set(leftover.values()), timeout=5)
            with contextlib.suppress(Exception):
                await self.store.release(list(leftover), self.worker_id, self.clock())
            log.info("handed %d active jobs back to the queue", len(leftover))
        for task in [*self._tasks, *self._abandoned, *self._writes]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _dispatch_forever(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._running) + min(len(self._parked), self.concurrency)
            can_claim = free > 0 and self._isolated is None
            if can_claim:
                try:
                    # the promoter makes due jobs waiting, and announces them: a claim does not
                    jobs = await self.store.claim(
                        free, self.worker_id, self.clock(), self.lease_ms, idle=not self._running, promote=False
                    )
                except Exception as exc:
                    # an outage, or a full disk, is logged once by the store, as is its end
                    if not isinstance(exc, (StoreUnavailable, StorageFull)):
                        log.exception("claim failed; retrying")
                    jobs = []
                    await asyncio.sleep(0.5)
                for job in jobs:
                    self._start(job)
                if len(jobs) == free:
                    continue
            # until a submit, a freed slot or the promoter wakes it; the poll finds other processes' jobs
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)

    def _start(self, job: Job) -> None:
        if job.recoveries:
            self._isolated = job.id
        self.feed.publish(job)
        earlier = self._running.get(job.id)
        if earlier is not None:  # an attempt of ours whose lease was recovered meanwhile: it is void
            earlier.cancel()
        task = asyncio.create_task(self._run(job), name=f"litejobs-job-{job.id}")
        self._running[job.id] = task
        self._attempt_running[job.id] = job.attempts
        task.add_done_callback(lambda ended: self._finished(job.id, ended))

    def _set_parked(self, job_id: str, parked: bool) -> None:
        if parked:
            self._parked.add(job_id)
        else:
            self._parked.discard(job_id)
        self._wake.set()  # a slot was lent out (claim more) or taken back

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._running.get(job_id) is not task:
            return  # a void earlier attempt: the job's later attempt runs on
        del self._running[job_id]
        self._attempt_running.pop(job_id, None)
        self._parked.discard(job_id)
        if self._isolated == job_id:
            self._isolated = None
        self._wake.set()

    async def _run(self, job: Job) -> None:
        context = JobContext(
            job.id,
            job.attempts,
            self.resources,
            self.store,
            self.feed,
            self.clock,
            _park=self._set_parked,
            timeout_s=job.timeout_s,
        )
        try:
            kind = self.kinds.get(job.kind)
            context.clock_stops_while_parked = kind.clock_stops_while_parked
            params = kind.parse(job.input)
            result = await self._run_kind(kind.run(params, context), job, context)
        except asyncio.CancelledError as exc:
            if _cancelled_from_outside():
                return  # cancelled by its owner, or shutdown: the store already knows, or stop() releases it
            await self._record_failure(job, exc)  # it escaped the kind: a crash, not a cancel
            return
        except Exception as exc:
            await self._record_failure(job, exc)
            return
        if context.files_saved:
            result.stats.setdefault("files", context.files_saved)
        await self._record(job, lambda at: self.store.finish(job.id, self.worker_id, result, at, self._expiry(at)))

    async def _run_kind(self, run: Awaitable[JobResult], job: Job, context: JobContext) -> JobResult:
        """The kind's result within the job's timeout, time spent parked not counted. Unlike wait_for,
        this does not wait for ever for a kind that swallows its cancellation: such a run is abandoned
        after ABANDON_AFTER_S, and the job's worker slot (and lease) with it."""
        task = asyncio.ensure_future(run)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + job.timeout_s
        counted_parked_s = 0.0
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
                if not task.done() and context.clock_stands_still():
                    await context.while_parked(task)  # one wake-up per park, no spinning
                parked_s = context.parked_s()
                if task.done() or parked_s <= counted_parked_s:
                    break
                deadline += parked_s - counted_parked_s  # the clock stood still while it was parked
                counted_parked_s = parked_s
        except asyncio.CancelledError:
            await self._stop_kind(task, job)
            raise
        if task.done():
            return task.result()
        await self._stop_kind(task, job)
        raise JobTimeout()

    async def _stop_kind(self, task: asyncio.Task[Any], job: Job) -> None:
        task.cancel()
        await asyncio.wait({task}, timeout=ABANDON_AFTER_S)
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: a late error after the timeout is not "never retrieved"
            return
        log.warning("job %s: kind %r ignored its cancellation; it is abandoned, still running", job.id, job.kind)
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)

    async def _record_failure(self, job: Job, exc: BaseException) -> None:
        error, retryable = error_of(exc)
        error = jsontext.without_surrogates(error)  # a message may quote a page's script (a thrown Error)
        error["attempt"] = job.attempts  # type: ignore[assignment]
        retry_at = None
        if should_retry(job.attempts, job.max_attempts, retryable):
            queue = self.resources.config.queue
            delay_s = backoff_s(job.attempts, queue.backoff_base_s, queue.backoff_max_s, random.random())
            retry_at = self.clock() + int(delay_s * 1000)
        await self._record(
            job, lambda at: self.store.fail(job.id, self.worker_id, error, retry_at, at, self._expiry(at))
        )
        if retry_at is not None:
            self._promoter.expect(retry_at)

    async def _record(self, job: Job, write: Callable[[int], Awaitable[Job | None]]) -> None:
        """Write the outcome (`write(now_ms)`), then announce it. The write is shielded and the
        announcement hangs on the write itself, not on this task: a cancel arriving meanwhile (the
        owner's cancel, or a heartbeat that read the job just after this very write committed and so
        found it no longer active) must lose neither the outcome nor its announcement, which metrics,
        webhooks and waiting readers depend on (measured before: 76 of 360,000 ends in an hour went
        unannounced)."""
        outcome = asyncio.ensure_future(self._write_outcome(job, write, self.clock()))
        self._writes.add(outcome)
        outcome.add_done_callback(self._writes.discard)
        outcome.add_done_callback(lambda done: self._announce(job.id, done))
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(outcome)

    async def _write_outcome(self, job: Job, write: Callable[[int], Awaitable[Job | None]], at_ms: int) -> Job | None:
        """The write, tried again with growing pauses while the database cannot be reached, until it
        is written, the pool stops, or this node runs a later attempt of the job (its lease was
        recovered meanwhile: this outcome is void, and would land on that attempt). Meanwhile the job
        stays running here, so the heartbeats renew its lease as soon as the database is back: an
        outage is not a dead worker, and charging the job an attempt for it would fail (or poison)
        jobs whose work was done. Every try writes the same `at_ms`, the moment the work ended. An
        outcome no JSON can hold fails the job instead, for good (_failed_unstorable): left active, it
        would run again until its attempts were spent, then fail `worker_lost`."""
        job_id = job.id
        pause_s = OUTCOME_RETRY_FIRST_S
        tries = 0
        failing_instead = False
        while True:
            if tries and self._attempt_running.get(job_id, job.attempts) != job.attempts:
                log.warning("the outcome of %s attempt %d is void: a later attempt runs", job_id, job.attempts)
                return None
            try:
                changed = await write(at_ms)
                break
            except StoreUnavailable:
                tries += 1
                if tries == 1:
                    log.warning("could not record the outcome of %s yet: the database cannot be reached", job_id)
            except jsontext.Unencodable as exc:
                if failing_instead:
                    raise  # not even the failure could be stored: a bug, logged by _announce
                log.error("the outcome of %s cannot be stored; the job fails: %s", job_id, exc)
                write, failing_instead = self._failed_unstorable(job, exc), True
                continue
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, OUTCOME_RETRY_MAX_S)
        if tries and changed is None:
            changed = await self._written_already(job_id, at_ms)
        if tries:
            done = "recorded" if changed is not None else "not recorded (the job is no longer this worker's)"
            log.warning("the outcome of %s is %s, after %d failed tries", job_id, done, tries)
        return changed

    def _failed_unstorable(self, job: Job, exc: Exception) -> Callable[[int], Awaitable[Job | None]]:
        """The write of `job` failed `internal_error` in place of an outcome that cannot be stored (a lone
        surrogate, a value of no JSON type), not retried: the same work would make the same outcome."""
        message = f"the job's outcome cannot be stored: {exc}"
        error = {"code": "internal_error", "message": message, "attempt": job.attempts}
        return lambda at: self.store.fail(job.id, self.worker_id, error, None, at, self._expiry(at))

    async def _written_already(self, job_id: str, at_ms: int) -> Job | None:
        """The job, if an earlier try did commit though its answer was lost with the connection (the
        job's last change is then that outcome, at `at_ms`), so that the end is still announced."""
        with contextlib.suppress(Exception):
            job = await self.store.get(job_id)
            if job is not None and job.updated_at == at_ms and job.status != JobState.ACTIVE:
                return job
        return None

    def _announce(self, job_id: str, outcome: asyncio.Future[Job | None]) -> None:
        if outcome.cancelled():
            return
        if (exc := outcome.exception()) is not None:
            log.error(
                "could not record the outcome of %s; its lease will expire and it will rerun", job_id, exc_info=exc
            )
            return
        changed = outcome.result()
        if changed is not None:
            self.feed.publish(changed)

    def _expiry(self, now_ms: int) -> int:
        return now_ms + int(self.resources.config.store.retention_s * 1000)
