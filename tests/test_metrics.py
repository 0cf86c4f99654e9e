"""GET /metrics: Prometheus text that parses, counts that move with jobs, a key like every route."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Http, ServerThread, TargetSite, make_config

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(http: Http) -> Samples:
    resp = http.get("/metrics")
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(resp.body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_jobs_by_kind_status_and_error(tmp_path: Path, site: TargetSite) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=410)

    hook = site.add("/hook", refuse)
    config = make_config(tmp_path, auth={"keys": ["metrics-key"]}, webhooks={"max_retries": 0})
    with ServerThread(config) as server:
        before = scrape(server.http)
        ok = server.http.submit({"url": site.add_html("/ok", "<p>ok</p>")}, webhook={"url": hook})
        bad = server.http.submit({"url": site.add_html("/bad", "down", status=500)}, max_attempts=2)
        for job in (ok, bad):
            server.http.wait(job["job_id"])
        deadline = time.monotonic() + 30  # the webhook is sent after the job ends
        while time.monotonic() < deadline:
            deliveries = server.http.get(f"/v1/jobs/{ok['job_id']}/webhook").json["deliveries"]
            if [d["state"] for d in deliveries] == ["failed"]:
                break
            time.sleep(0.02)
        after = scrape(server.http)
        anonymous = Http(server.base_url).get("/metrics")
    assert anonymous.status == 401
    assert value(before, "litejobs_jobs", status="completed", kind="fetch") == 0
    assert value(after, "litejobs_jobs", status="completed", kind="fetch") == 1
    assert value(after, "litejobs_jobs", status="failed", kind="fetch") == 1
    assert value(after, "litejobs_jobs_submitted_total", kind="fetch") == 2
    assert value(after, "litejobs_jobs_finished_total", kind="fetch", status="completed") == 1
    assert value(after, "litejobs_jobs_finished_total", kind="fetch", status="failed") == 1
    assert value(after, "litejobs_job_duration_seconds_count", kind="fetch") == 2
    assert value(after, "litejobs_job_errors_total", code="upstream_status") == 2  # one retried, one final
    assert value(after, "litejobs_webhook_attempts_total", outcome="failed") == 1
    assert value(after, "litejobs_webhook_deliveries", state="failed") == 1
    assert value(after, "litejobs_queue_depth") == 0 and value(after, "litejobs_oldest_waiting_age_seconds") == 0
    assert value(after, "litejobs_workers_total") == config.queue.concurrency
    assert value(after, "litejobs_workers_busy") == 0


def test_two_servers_in_one_process_count_apart(tmp_path: Path, site: TargetSite) -> None:
    url = site.add_html("/ok", "<p>ok</p>")
    with (
        ServerThread(make_config(tmp_path / "one")) as one,
        ServerThread(make_config(tmp_path / "two")) as two,
    ):
        one.http.wait(one.http.submit({"url": url})["job_id"])
        counted = [value(scrape(s.http), "litejobs_jobs_submitted_total", kind="fetch") for s in (one, two)]
    assert counted == [1, 0]


def test_a_queued_job_shows_in_the_queue_gauges(tmp_path: Path, site: TargetSite) -> None:
    with ServerThread(make_config(tmp_path)) as server:
        server.http.submit({"url": site.add_html("/later", "<p>later</p>")}, delay_s=600)
        samples = scrape(server.http)
    assert value(samples, "litejobs_queue_depth") == 1
    assert value(samples, "litejobs_jobs", status="delayed", kind="fetch") == 1


def test_every_end_is_announced_even_when_a_heartbeat_meets_the_finish(tmp_path: Path, site: TargetSite) -> None:
    """A heartbeat that reads a job a moment after its finish committed finds it no longer active and
    stops its task; the outcome is recorded all the same and must still be announced (metrics here;
    webhooks and waits hang on the same announcement). Short leases beat often, so many finishes meet
    a heartbeat."""

    async def steady(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)  # jobs end one after another all through the run, not in one burst
        return web.Response(text="<p>steady</p>", content_type="text/html")

    page = site.add("/steady", steady)
    config = make_config(tmp_path, queue={"lease_s": 1, "concurrency": 32})
    jobs = 6000
    with ServerThread(config) as server:
        for _ in range(jobs // 500):
            batch = {"jobs": [{"kind": "fetch", "input": {"url": page, "output": ["html"]}}] * 500}
            assert server.http.post("/v1/jobs/batch", batch).status == 202
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts = server.http.get("/v1/stats").json["counts"]
            if counts["completed"] == jobs:
                break
            time.sleep(0.05)
        samples = scrape(server.http)
    assert counts["completed"] == jobs
    assert value(samples, "litejobs_jobs_finished_total", kind="fetch", status="completed") == jobs
