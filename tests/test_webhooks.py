"""Webhooks against the real server: signed, retried, refused, durable across a restart, re-sendable."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from litejobs.config import Config
from litejobs.jobs import Job, JobState
from litejobs.netpolicy import NetworkPolicy
from litejobs.webhooks import WebhookSender, event_of, outcome_of
from tests.support import FakeClock, Http, ServerThread, TargetSite, make_config

SECRET = "webhook-secret"


def hook_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    webhooks = {"secret": SECRET, "backoff_base_s": 0.05, "backoff_max_s": 0.2, **sections.pop("webhooks", {})}
    return make_config(tmp_path, webhooks=webhooks, **sections)


def eventually(check: Callable[[], Any], timeout_s: float = 30) -> Any:
    """The first truthy value of `check()`, polled until `timeout_s` passes (then the test fails)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout_s} s: {check()!r}")


def settled(http: Http, job_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The job's deliveries once there are `count` and none is pending."""

    seen: list[Any] = []

    def check() -> list[dict[str, Any]] | None:
        resp = http.get(f"/v1/jobs/{job_id}/webhook")
        assert resp.status == 200, resp.body
        seen[:] = [http.get(f"/v1/jobs/{job_id}").json["status"], resp.json["deliveries"]]
        found = resp.json["deliveries"]
        done = len(found) == count and all(d["state"] != "pending" for d in found)
        return found if done else None

    try:
        return eventually(check)  # type: ignore[no-any-return]
    except AssertionError:
        raise AssertionError(f"deliveries not settled; job and deliveries: {seen}") from None


def receiver(site: TargetSite, path: str, statuses: list[int]) -> tuple[str, list[tuple[CIMultiDict[str], bytes]]]:
    """A webhook endpoint answering `statuses` in turn (the last one from then on), keeping what it got."""
    received: list[tuple[CIMultiDict[str], bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        received.append((request.headers.copy(), await request.read()))
        return web.Response(status=statuses[min(len(received), len(statuses)) - 1], text="noted")

    return site.add(path, handler), received


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(hook_config(tmp_path)) as running:
        yield running


def test_a_finished_job_is_posted_to_its_webhook_signed_over_the_exact_body(
    server: ServerThread, site: TargetSite
) -> None:
    hook, received = receiver(site, "/hook", [204])
    job = server.http.submit({"url": site.add_html("/page", "<p>hi</p>")}, webhook={"url": hook})
    [delivery] = settled(server.http, job["job_id"])
    [(headers, body)] = received
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Litejobs-Signature"], expected)
    assert headers["Content-Type"] == "application/json" and headers["X-Litejobs-Event"] == "completed"
    assert headers["X-Litejobs-Delivery"] == delivery["delivery_id"]
    sent = json.loads(body)
    assert sent["job_id"] == job["job_id"] and sent["status"] == "completed" and sent["result_available"]
    assert delivery["state"] == "delivered" and delivery["attempts"] == 1 and delivery["last_status"] == 204
    assert delivery["event"] == "completed" and delivery["next_attempt_at"] is None


def test_a_webhook_must_name_events_there_are(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/page", "<p>hi</p>")
    hook = site.url("/hook")
    for events, problem in (
        (["complete"], "'complete' is not one of"),
        (["COMPLETED"], "'COMPLETED'"),
        ([], "at least"),
    ):
        resp = server.http.post("/v1/jobs", {"input": {"url": url}, "webhook": {"url": hook, "events": events}})
        assert resp.status == 422, (events, resp.body)
        [detail] = resp.json["error"]["details"]
        assert detail["field"] == "webhook.events" and problem in detail["problem"], detail
    chosen = ["failed", "progress", "completed"]
    ok = server.http.submit({"url": url}, webhook={"url": hook, "events": chosen}, delay_s=60)
    assert ok["job_id"] and server.http.get("/v1/jobs").json["jobs"][0]["job_id"] == ok["job_id"]


def test_a_5xx_answer_is_retried_with_backoff_until_delivered(server: ServerThread, site: TargetSite) -> None:
    hook, received = receiver(site, "/hook", [500, 503, 200])
    job = server.http.submit({"url": site.add_html("/page", "<p>hi</p>")}, webhook={"url": hook})
    [delivery] = settled(server.http, job["job_id"])
    assert delivery["state"] == "delivered" and delivery["attempts"] == 3 and delivery["last_status"] == 200
    assert site.hits["/hook"] == 3
    assert len({body for _, body in received}) == 1  # every retry sends the same bytes


def test_a_4xx_answer_is_not_retried(server: ServerThread, site: TargetSite) -> None:
    hook, _ = receiver(site, "/hook", [404])
    job = server.http.submit({"url": site.add_html("/page", "<p>hi</p>")}, webhook={"url": hook})
    [delivery] = settled(server.http, job["job_id"])
    assert delivery["state"] == "failed" and delivery["attempts"] == 1 and delivery["last_status"] == 404
    assert "HTTP 404" in delivery["last_error"]
    time.sleep(0.3)  # several backoffs (0.05 s base): a retry would have come
    assert site.hits["/hook"] == 1


def test_retries_stop_after_max_retries_and_the_state_shows_why(tmp_path: Path, site: TargetSite) -> None:
    hook, _ = receiver(site, "/hook", [503])
    with ServerThread(hook_config(tmp_path, webhooks={"max_retries": 2})) as server:
        job = server.http.submit(
            {"url": site.add_html("/page", "nope", status=500)}, max_attempts=1, webhook={"url": hook}
        )
        [delivery] = settled(server.http, job["job_id"])
        state = server.http.get(f"/v1/jobs/{job['job_id']}/webhook").json
    assert state["webhook"] == {"url": hook, "events": ["completed", "partial", "failed", "cancelled"]}
    assert delivery["event"] == "failed" and delivery["state"] == "failed" and delivery["attempts"] == 3
    assert delivery["last_status"] == 503 and "noted" in delivery["last_error"]
    assert site.hits["/hook"] == 3


def test_a_pending_delivery_survives_a_restart(tmp_path: Path, site: TargetSite) -> None:
    hook, _ = receiver(site, "/hook", [503, 200])
    slow = {"backoff_base_s": 60.0, "backoff_max_s": 60.0}
    with ServerThread(hook_config(tmp_path, webhooks=slow)) as first:
        job = first.http.submit({"url": site.add_html("/page", "<p>hi</p>")}, webhook={"url": hook})
        url = f"/v1/jobs/{job['job_id']}/webhook"
        [pending] = eventually(lambda: [d for d in first.http.get(url).json["deliveries"] if d["attempts"] == 1])
    assert pending["state"] == "pending" and pending["last_status"] == 503 and pending["next_attempt_at"]
    later = FakeClock()
    later.advance(61)  # past the retry's time, which the first process wrote down
    with ServerThread(hook_config(tmp_path, webhooks=slow), clock=later) as second:
        [delivery] = settled(second.http, job["job_id"])
    assert delivery["delivery_id"] == pending["delivery_id"]
    assert delivery["state"] == "delivered" and delivery["attempts"] == 2
    assert site.hits["/hook"] == 2


def test_the_owner_can_resend_a_webhook(tmp_path: Path, site: TargetSite) -> None:
    hook, received = receiver(site, "/hook", [200])
    page = site.add_html("/page", "<p>hi</p>")
    with ServerThread(hook_config(tmp_path, auth={"keys": ["k-one", "k-two"]})) as server:
        job = server.http.submit({"url": page}, webhook={"url": hook})
        settled(server.http, job["job_id"])
        resent = server.http.post(f"/v1/jobs/{job['job_id']}/webhook")
        other = Http(server.base_url, "k-two").post(f"/v1/jobs/{job['job_id']}/webhook")
        plain = server.http.submit({"url": page})
        server.http.wait(plain["job_id"])
        without = server.http.post(f"/v1/jobs/{plain['job_id']}/webhook")
        deliveries = settled(server.http, job["job_id"], count=2)
    assert resent.status == 202 and resent.json["event"] == "completed"
    assert resent.json["delivery_id"] == deliveries[1]["delivery_id"] != deliveries[0]["delivery_id"]
    assert [d["state"] for d in deliveries] == ["delivered", "delivered"]
    assert other.status == 403 and without.status == 422
    assert len(received) == 2 and received[0][1] == received[1][1]


def test_a_webhook_to_an_address_the_policy_blocks_is_never_sent(tmp_path: Path, site: TargetSite) -> None:
    blocked_site = TargetSite("127.0.0.2")
    try:
        hook, _ = receiver(blocked_site, "/hook", [200])
        config = hook_config(tmp_path, fetch={"blocked_networks": ["127.0.0.2/32"]})
        with ServerThread(config) as server:
            job = server.http.submit({"url": site.add_html("/page", "<p>hi</p>")}, webhook={"url": hook})
            [delivery] = settled(server.http, job["job_id"])
        assert delivery["state"] == "failed" and delivery["attempts"] == 1 and delivery["last_status"] is None
        assert "blocked_address" in delivery["last_error"] and "127.0.0.2" in delivery["last_error"]
        assert sum(blocked_site.hits.values()) == 0
    finally:
        blocked_site.close()


def test_the_sender_checks_the_resolved_address_of_a_name(site: TargetSite) -> None:
    hook, _ = receiver(site, "/hook", [200])

    async def post() -> Any:
        async with WebhookSender(NetworkPolicy(allow_private=False), 5.0, "test") as sender:
            return await sender.post(hook.replace("127.0.0.1", "localhost"), b"{}", {})

    outcome = asyncio.run(post())
    assert outcome.status is None and not outcome.retryable and "blocked_address" in (outcome.error or "")
    assert site.hits["/hook"] == 0


def test_which_answers_are_worth_a_retry() -> None:
    assert outcome_of(200, b"").delivered and outcome_of(299, b"").delivered
    assert [outcome_of(s, b"").retryable for s in (500, 503, 408, 429)] == [True] * 4
    assert [outcome_of(s, b"").retryable for s in (301, 400, 404, 410)] == [False] * 4
    assert "redirects are not followed" in (outcome_of(302, b"").error or "")


def test_a_progress_report_is_the_progress_event_and_other_changes_their_status() -> None:
    job = Job("job_x", "fetch", JobState.ACTIVE, {}, "", {}, 0, 1, 3, 60.0, 0, 0, 0)
    assert event_of(job) == "active"
    job.progress = {"message": "rendering", "progress": 0.5}
    assert event_of(job) == "progress"
    job.status = JobState.COMPLETED
    assert event_of(job) == "completed"


def test_a_delivery_lost_between_the_end_of_a_job_and_its_record_is_caught_up_at_start(
    tmp_path: Path, site: TargetSite
) -> None:
    import sqlite3

    hook, received = receiver(site, "/hook", [204])
    config = hook_config(tmp_path)
    with ServerThread(config) as first:
        job = first.http.submit({"url": site.add_html("/page", "<p>hi</p>")}, webhook={"url": hook})
        settled(first.http, job["job_id"])
    # as if the process had died after the job's end was stored but before its delivery row was
    conn = sqlite3.connect(config.store.path)
    with conn:
        conn.execute("DELETE FROM webhook_deliveries WHERE job_id = ?", (job["job_id"],))
    conn.close()
    with ServerThread(config) as second:
        [delivery] = settled(second.http, job["job_id"])
        assert delivery["state"] == "delivered" and delivery["event"] == "completed"
    assert len(received) == 2 and json.loads(received[1][1])["job_id"] == job["job_id"]
