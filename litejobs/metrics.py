"""Metrics: counters and histograms fed by job changes, gauges read at scrape time → Prometheus text.

Each App has its own CollectorRegistry (never prometheus_client's global one), so two Apps in one
process, as in the tests, count apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from litejobs.jobs import TERMINAL, Job, JobState
from litejobs.store import Store

#: scraping jobs take from a fraction of a second (a cached page) to minutes (a crawl)
DURATION_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

#: the figures App hands in at scrape time, with their help text
PROCESS_GAUGES = {
    "workers_busy": "Jobs running in this process now",
    "workers_total": "Jobs this process may run at once (queue.concurrency)",
    "browser_pages_open": "Browser pages in use now",
}


class _Sampled(Collector):
    """A collector that yields the families of the last `Metrics.sample()`; collect() cannot await."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class _Children:
    """A labelled metric's children by label values, kept: prometheus_client's labels() validates
    and takes a lock on every call, and on_change calls it up to four times per job change."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class Metrics:
    """`on_change` is a ChangeFeed listener, `webhook_attempt` the Deliverer's hook; `render()` reads
    the store and answers the Prometheus text for GET /metrics."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], int],
        kinds: Callable[[], Iterable[str]] = tuple,
        process_gauges: Callable[[], dict[str, float]] = dict,
    ) -> None:
        self.store = store
        self.clock = clock
        self.kinds = kinds  #: read at each scrape: a plugin kind may be registered after start
        self.process_gauges = process_gauges
        self.registry = CollectorRegistry()
        registry = self.registry
        self.submitted = Counter("litejobs_jobs_submitted", "Jobs accepted, by kind", ["kind"], registry=registry)
        self.finished = Counter(
            "litejobs_jobs_finished", "Jobs that reached a terminal status", ["kind", "status"], registry=registry
        )
        self.duration = Histogram(
            "litejobs_job_duration_seconds",
            "Terminal jobs: from the first start to the end, retries included",
            ["kind"],
            buckets=DURATION_BUCKETS_S,
            registry=registry,
        )
        self.errors = Counter(
            "litejobs_job_errors",
            "Failed attempts (retried or final) by error code: network_error, timeout, upstream_status...",
            ["code"],
            registry=registry,
        )
        self.webhook_attempts = Counter(
            "litejobs_webhook_attempts",
            "Webhook delivery attempts by outcome: delivered, retrying (failed, will retry), failed (gave up)",
            ["outcome"],
            registry=registry,
        )
        ProcessCollector(registry=registry)
        self._submitted, self._finished = _Children(self.submitted), _Children(self.finished)
        self._duration, self._errors = _Children(self.duration), _Children(self.errors)
        #: per job not yet ended: the last attempt whose error was counted
        self._errors_counted: dict[str, int] = {}
        self._sampled = _Sampled()
        registry.register(self._sampled)

    def on_change(self, job: Job) -> None:
        """Feed listener: count submits, ends, durations and attempt errors."""
        queued = job.status is JobState.WAITING or job.status is JobState.DELAYED
        if queued and job.attempts == 0 and job.created_at == job.updated_at:
            self._submitted(job.kind).inc()  # a fresh submit: a retried job was updated since
        self._count_error(job)
        if job.status in TERMINAL:
            self._finished(job.kind, job.status.value).inc()
            if job.started_at is not None and job.completed_at is not None:
                self._duration(job.kind).observe(max(0.0, (job.completed_at - job.started_at) / 1000))

    def _count_error(self, job: Job) -> None:
        # A job is published as it is re-read after a change, so the `delayed` one of a failed
        # attempt may already show as `active` again; its error (with its attempt number) is still
        # there, so each attempt's error is counted once, from whichever publish shows it first.
        error = job.error or {}
        attempt = error.get("attempt")
        if not isinstance(attempt, int):  # an error no attempt owns (a lost worker): count it at the end
            attempt = job.attempts + 1 if error and job.status is JobState.FAILED else 0
        if attempt > self._errors_counted.get(job.id, 0):
            self._errors_counted[job.id] = attempt
            self._errors(str(error.get("code", "unknown"))).inc()
        if job.status in TERMINAL:
            self._errors_counted.pop(job.id, None)

    def webhook_attempt(self, delivery: Any, outcome: Any, state: str) -> None:
        """The Deliverer's on_attempt hook: `state` is delivered, pending (a retry is due) or failed."""
        self.webhook_attempts.labels("retrying" if state == "pending" else state).inc()

    async def render(self) -> bytes:
        """The Prometheus text, with the store's gauges read now."""
        self._sampled.families = await self.sample()
        return generate_latest(self.registry)

    async def sample(self) -> list[Metric]:
        """The gauges that are read, not counted: jobs by status and kind, the queue, this process."""
        jobs = GaugeMetricFamily("litejobs_jobs", "Jobs in the store by status and kind", labels=["status", "kind"])
        counts = {(state.value, kind): 0 for state in JobState for kind in self.kinds()}
        counts.update(await self.store.counts_by_status_kind())
        for (status, kind), count in sorted(counts.items()):
            jobs.add_metric([status, kind], count)
        stats = await self.store.stats(self.clock())
        depth = GaugeMetricFamily("litejobs_queue_depth", "Waiting and delayed jobs", value=stats["queue_depth"])
        oldest = GaugeMetricFamily(
            "litejobs_oldest_waiting_age_seconds",
            "How long the oldest due job has waited (0 when none waits)",
            value=stats["oldest_waiting_age_s"] or 0.0,
        )
        hooks = GaugeMetricFamily("litejobs_webhook_deliveries", "Webhook deliveries by state", labels=["state"])
        by_state = {"pending": 0, "delivered": 0, "failed": 0, **await self.store.delivery_counts()}
        for state, count in sorted(by_state.items()):
            hooks.add_metric([state], count)
        families: list[Metric] = [jobs, depth, oldest, hooks]
        for name, value in self.process_gauges().items():
            families.append(GaugeMetricFamily(f"litejobs_{name}", PROCESS_GAUGES.get(name, name), value=value))
        return families
