"""The native API over HTTP against the real server, on each store: what goes wrong, and every error code.

Failing and flaky targets, timeouts, cancels and retries, expiry; refused requests, keys, rate limits and a
disabled or full queue. A job's way from submit to result, and the read endpoints, are in test_api_jobs.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.api_support import error_of
from tests.support import FakeClock, Http, ServerThread, TargetSite, make_config


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock, store_url: str) -> Iterator[ServerThread]:
    """The real server on SQLite, then on PostgreSQL (store_url is parametrized over both)."""
    with ServerThread(make_config(tmp_path, store={"url": store_url}), clock=clock) as running:
        yield running


def test_a_4xx_from_the_target_is_a_result_fetched_once(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/gone", "<h1>Not here</h1>", status=404)
    job = server.http.submit({"url": url})
    done = server.http.wait(job["job_id"])
    assert done["status"] == "completed" and done["attempts"] == 1
    assert server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["status_code"] == 404
    assert site.hits["/gone"] == 1


def test_a_flaky_target_is_retried_until_it_answers(server: ServerThread, site: TargetSite) -> None:
    async def flaky(request: web.Request) -> web.Response:
        if site.hits["/flaky"] < 3:
            return web.Response(status=503, text="busy")
        return web.Response(text="<p>finally</p>", content_type="text/html")

    job = server.http.submit({"url": site.add("/flaky", flaky)})
    done = server.http.wait(job["job_id"])
    assert done["status"] == "completed" and done["attempts"] == 3
    assert site.hits["/flaky"] == 3
    timeline = server.http.get(f"/v1/jobs/{job['job_id']}").json["attempts_detail"]
    assert [a["outcome"] for a in timeline] == ["retry", "retry", "completed"]
    assert timeline[0]["error"]["code"] == "upstream_status" and timeline[0]["ended_at"] <= timeline[1]["started_at"]


def test_a_target_that_keeps_failing_ends_failed_with_a_code(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/down", "oops", status=500)
    job = server.http.submit({"url": url}, max_attempts=2)
    done = server.http.wait(job["job_id"])
    assert done["status"] == "failed" and done["attempts"] == 2
    assert done["error"]["code"] == "upstream_status" and "500" in done["error"]["message"]
    assert site.hits["/down"] == 2
    resp = server.http.get(f"/v1/jobs/{job['job_id']}/result")
    assert resp.status == 409 and error_of(resp)["code"] == "result_not_available"


def test_a_job_past_its_timeout_fails_with_code_timeout(server: ServerThread, site: TargetSite) -> None:
    import asyncio

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(text="late")

    job = server.http.submit({"url": site.add("/slow", slow)}, timeout_s=1, max_attempts=1)
    started = time.monotonic()
    done = server.http.wait(job["job_id"])
    assert done["status"] == "failed" and done["error"]["code"] == "timeout"
    assert time.monotonic() - started < 8


def test_cancelling_an_active_job_stops_it_within_two_seconds(server: ServerThread, site: TargetSite) -> None:
    import asyncio

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    job = server.http.submit({"url": site.add("/slow", slow)})
    for _ in range(100):
        if server.http.get(f"/v1/jobs/{job['job_id']}").json["status"] == "active":
            break
        time.sleep(0.05)
    started = time.monotonic()
    resp = server.http.delete(f"/v1/jobs/{job['job_id']}")
    assert resp.status == 200 and resp.json["status"] == "cancelled"
    assert time.monotonic() - started < 2
    assert server.app is not None and server.app.workers is not None and server.app.workers.busy == 0
    time.sleep(0.3)
    assert server.http.get(f"/v1/jobs/{job['job_id']}").json["status"] == "cancelled"
    again = server.http.delete(f"/v1/jobs/{job['job_id']}")
    assert again.status == 409 and error_of(again)["code"] == "job_finished"


def test_a_cancelled_job_can_be_retried(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<p>x</p>")
    job = server.http.submit({"url": url}, delay_s=60)
    assert job["status"] == "delayed"
    assert server.http.delete(f"/v1/jobs/{job['job_id']}").json["status"] == "cancelled"
    resp = server.http.post(f"/v1/jobs/{job['job_id']}/retry")
    assert resp.status == 202 and resp.json["status"] == "waiting"
    assert server.http.wait(job["job_id"])["status"] == "completed"
    again = server.http.post(f"/v1/jobs/{job['job_id']}/retry")
    assert again.status == 409 and error_of(again)["code"] == "job_finished"


def test_idempotency_key_replays_and_conflicts(server: ServerThread, site: TargetSite) -> None:
    body = {"kind": "fetch", "input": {"url": site.add_html("/p", "<p>x</p>")}}
    first = server.http.post("/v1/jobs", body, headers={"Idempotency-Key": "abc"})
    again = server.http.post("/v1/jobs", body, headers={"Idempotency-Key": "abc"})
    assert first.status == 202 and again.status == 200
    assert again.headers["idempotent-replayed"] == "true" and again.json["job_id"] == first.json["job_id"]
    other = server.http.post("/v1/jobs", {**body, "meta": {"x": 1}}, headers={"Idempotency-Key": "abc"})
    assert other.status == 409 and error_of(other)["code"] == "idempotency_conflict"


def test_batches_are_all_or_nothing(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<p>x</p>")
    good = server.http.post("/v1/jobs/batch", {"jobs": [{"input": {"url": url}} for _ in range(3)]})
    assert good.status == 202 and len(good.json["jobs"]) == 3
    bad = server.http.post(
        "/v1/jobs/batch", {"jobs": [{"input": {"url": url}}, {"input": {"url": "file:///etc/passwd"}}]}
    )
    assert bad.status == 422
    assert error_of(bad)["details"][0]["field"] == "jobs[1].input.url"
    assert len(server.http.get("/v1/jobs").json["jobs"]) == 3
    huge = server.http.post("/v1/jobs/batch", {"jobs": [{"input": {"url": url}}] * 1001})
    assert huge.status == 422 and error_of(huge)["details"][0]["field"] == "jobs"


def test_a_batch_under_an_idempotency_key_replays_whole_and_conflicts(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<p>x</p>")
    batch = {"jobs": [{"input": {"url": url}, "meta": {"n": n}, "delay_s": 60} for n in range(3)]}
    first = server.http.post("/v1/jobs/batch", batch, headers={"Idempotency-Key": "nightly-1"})
    assert first.status == 202 and "idempotent-replayed" not in first.headers
    ids = [job["job_id"] for job in first.json["jobs"]]
    again = server.http.post("/v1/jobs/batch", batch, headers={"Idempotency-Key": "nightly-1"})
    assert again.status == 200 and again.headers["idempotent-replayed"] == "true"
    assert [job["job_id"] for job in again.json["jobs"]] == ids
    assert [job["meta"] for job in again.json["jobs"]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    changed = {"jobs": batch["jobs"][:2]}
    other = server.http.post("/v1/jobs/batch", changed, headers={"Idempotency-Key": "nightly-1"})
    assert other.status == 409 and error_of(other)["code"] == "idempotency_conflict"
    single = server.http.post("/v1/jobs", batch["jobs"][0], headers={"Idempotency-Key": "nightly-1"})
    assert single.status == 409 and error_of(single)["code"] == "idempotency_conflict"
    too_long = server.http.post("/v1/jobs/batch", batch, headers={"Idempotency-Key": "k" * 256})
    assert too_long.status == 422 and error_of(too_long)["details"][0]["field"] == "Idempotency-Key"
    assert len(server.http.get("/v1/jobs").json["jobs"]) == 3
    unkeyed = server.http.post("/v1/jobs/batch", batch)
    assert unkeyed.status == 202 and len(server.http.get("/v1/jobs").json["jobs"]) == 6


def test_meta_is_limited_to_16_kib_of_utf8_json(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<p>x</p>")
    greek = {"note": "λ" * 8000}  # 16,000 bytes of UTF-8 (96,000 as \u escapes)
    kept = server.http.post("/v1/jobs", {"input": {"url": url}, "meta": greek, "delay_s": 60})
    assert kept.status == 202 and kept.json["meta"] == greek
    over = server.http.post("/v1/jobs", {"input": {"url": url}, "meta": {"note": "λ" * 8200}})
    assert over.status == 422 and error_of(over)["details"][0]["field"] == "meta"
    assert "16384 bytes" in error_of(over)["details"][0]["problem"]


def test_a_batch_refuses_unknown_top_level_fields(server: ServerThread, site: TargetSite) -> None:
    jobs = [{"input": {"url": site.add_html("/p", "<p>x</p>")}}]
    typo = server.http.post("/v1/jobs/batch", {"jobs": jobs, "priorty": 5})
    assert typo.status == 422
    assert error_of(typo)["details"] == [{"field": "priorty", "problem": "is not a known field"}]
    not_an_object = server.http.post("/v1/jobs/batch", [jobs])
    assert not_an_object.status == 422 and error_of(not_an_object)["details"][0]["field"] == "body"
    assert server.http.get("/v1/jobs").json["jobs"] == []


def test_scrape_routes_name_bad_fields_as_their_body_has_them(server: ServerThread) -> None:
    for path in ("/v1/scrape", "/v1/scrape/async"):
        bad = server.http.post(path, {"url": "nope", "timeout_s": 3, "output": ["html"]})
        assert bad.status == 422, (path, bad.body)
        fields = {detail["field"] for detail in error_of(bad)["details"]}
        assert fields == {"url", "timeout_s"}, (path, fields)
        assert error_of(bad)["message"].startswith(("url: ", "timeout_s: "))
        not_an_object = server.http.post(path, ["http://127.0.0.1:9/"])
        assert not_an_object.status == 422 and error_of(not_an_object)["details"][0]["field"] == "body"


def test_bad_requests_get_clear_errors(server: ServerThread) -> None:
    http = server.http
    broken = http.request("POST", "/v1/jobs", raw=b"{nope", headers={"Content-Type": "application/json"})
    assert broken.status == 400 and error_of(broken)["code"] == "invalid_json"
    bad_utf8 = http.request("POST", "/v1/jobs", raw=b'{"a": "\xff"}', headers={"Content-Type": "application/json"})
    assert bad_utf8.status == 400
    deep = http.request(
        "POST", "/v1/jobs", raw=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert deep.status == 400
    form = http.request("POST", "/v1/jobs", raw=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 415 and error_of(form)["code"] == "unsupported_media_type"
    big = http.request(
        "POST", "/v1/jobs", raw=b'"' + b"x" * 2_000_000 + b'"', headers={"Content-Type": "application/json"}
    )
    assert big.status == 413 and error_of(big)["code"] == "payload_too_large"
    missing = http.get("/v1/jobs/job_00000000000000000000000000000000")
    assert missing.status == 404 and error_of(missing)["code"] == "not_found"
    assert http.get("/v1/jobs/not-a-job").status == 404
    assert http.get("/v1/nothing-here").status == 404 and error_of(http.get("/v1/nothing-here"))["code"] == "not_found"
    unknown_kind = http.post("/v1/jobs", {"kind": "teleport", "input": {"url": "http://127.0.0.1/"}})
    assert unknown_kind.status == 422 and error_of(unknown_kind)["code"] == "unsupported_kind"


def test_validation_names_every_bad_field(server: ServerThread) -> None:
    resp = server.http.post(
        "/v1/jobs",
        {"kind": "fetch", "input": {"url": "file:///etc/passwd", "output": ["pdf", "poem"], "headers": {"X": "a\r\nB: c"}},
         "priority": 1000, "timeout_s": 100000, "surprise": 1},
    )  # fmt: skip
    assert resp.status == 422
    error = error_of(resp)
    fields = {d["field"] for d in error["details"]}
    assert {"priority", "timeout_s", "surprise"} <= fields
    # the last three are hosts aiohttp cannot connect to (they failed as internal_error, retried)
    for url in ("javascript:alert(1)", "data:text/html,hi", "chrome://settings", "ftp://x/", "/relative",
                "http://a\u200d.test/", "http://a\u00ad.test/", "http://a\ufffd.test/"):  # fmt: skip
        bad = server.http.post("/v1/jobs", {"input": {"url": url}})
        assert bad.status == 422 and error_of(bad)["details"][0]["field"] == "input.url", url
    header = server.http.post("/v1/jobs", {"input": {"url": "http://127.0.0.1/", "headers": {"X": "a\r\nB: c"}}})
    assert header.status == 422 and error_of(header)["details"][0]["field"] == "input.headers.X"
    outputs = server.http.post("/v1/jobs", {"input": {"url": "http://127.0.0.1/", "output": ["poem"]}})
    assert outputs.status == 422 and "poem" in error_of(outputs)["details"][0]["problem"]


def test_keys_guard_every_route_but_healthz(tmp_path: Path, store_url: str, site: TargetSite) -> None:
    config = make_config(tmp_path, store={"url": store_url}, auth={"keys": ["alice-key", "bob-key"]})
    with ServerThread(config) as server:
        anonymous = Http(server.base_url)
        alice, bob = Http(server.base_url, "alice-key"), Http(server.base_url, "bob-key")
        assert anonymous.get("/healthz").status == 200
        assert anonymous.get("/readyz").status == 401 and anonymous.get("/openapi.json").status == 401
        assert alice.get("/readyz").status == 200 and alice.get("/openapi.json").status == 200
        no_key = anonymous.get("/v1/jobs")
        assert no_key.status == 401 and error_of(no_key)["code"] == "unauthorized"
        assert Http(server.base_url, "mallory").get("/v1/jobs").status == 401
        job = alice.submit({"url": site.add_html("/p", "<p>x</p>")})
        assert anonymous.get(f"/v1/jobs/{job['job_id']}", headers={"X-API-Key": "alice-key"}).status == 200
        assert anonymous.get(f"/v1/jobs/{job['job_id']}?api_key=alice-key").status == 200
        stolen = bob.get(f"/v1/jobs/{job['job_id']}")
        assert stolen.status == 403 and error_of(stolen)["code"] == "forbidden"
        assert bob.delete(f"/v1/jobs/{job['job_id']}").status == 403
        assert bob.get(f"/v1/jobs/{job['job_id']}/result").status == 403
        assert bob.get("/v1/jobs").json["jobs"] == []
        assert [j["job_id"] for j in alice.get("/v1/jobs").json["jobs"]] == [job["job_id"]]


def test_a_disabled_queue_answers_503_and_points_to_sync(tmp_path: Path, store_url: str, site: TargetSite) -> None:
    with ServerThread(make_config(tmp_path, store={"url": store_url}, queue={"enabled": False})) as server:
        for path, body in (
            ("/v1/jobs", {"input": {"url": site.url("/p")}}),
            ("/v1/scrape/async", {"url": site.url("/p")}),
        ):
            resp = server.http.post(path, body)
            assert resp.status == 503 and error_of(resp)["code"] == "queue_disabled"
            assert "POST /v1/scrape" in error_of(resp)["message"]
        batch = server.http.post("/v1/jobs/batch", {"jobs": [{"input": {"url": site.url("/p")}}]})
        assert batch.status == 503
        site.add_html("/p", "<p>still works</p>")
        assert (
            server.http.post("/v1/scrape", {"url": site.url("/p"), "output": ["text"]}).json["outputs"]["text"]
            == "still works"
        )
        assert server.http.get("/readyz").status == 200


def test_a_full_queue_answers_429_with_retry_after(tmp_path: Path, store_url: str, site: TargetSite) -> None:
    with ServerThread(make_config(tmp_path, store={"url": store_url}, queue={"max_depth": 2})) as server:
        for _ in range(2):
            server.http.submit({"url": site.url("/p")}, delay_s=60)
        full = server.http.post("/v1/jobs", {"input": {"url": site.url("/p")}})
        assert full.status == 429 and error_of(full)["code"] == "queue_full"
        assert int(full.headers["retry-after"]) >= 1


def test_rate_limit_per_key(tmp_path: Path, store_url: str) -> None:
    config = make_config(tmp_path, store={"url": store_url}, auth={"keys": ["k"], "rate_per_s": 2})
    with ServerThread(config) as server:
        statuses = [server.http.get("/v1/jobs").status for _ in range(5)]
        assert statuses[:2] == [200, 200] and 429 in statuses
        limited = next(r for r in (server.http.get("/v1/jobs") for _ in range(3)) if r.status == 429)
        assert error_of(limited)["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1


def test_terminal_jobs_expire_after_retention(server: ServerThread, site: TargetSite, clock: FakeClock) -> None:
    job = server.http.submit({"url": site.add_html("/p", "<p>x</p>")})
    server.http.wait(job["job_id"])
    waiting = server.http.submit({"url": site.url("/p")}, delay_s=10 * 86400)
    assert server.app is not None
    clock.advance(86400 - 5)
    assert server.call(server.app.sweeper.sweep_once()) == []
    clock.advance(10)
    assert server.call(server.app.sweeper.sweep_once()) == [job["job_id"]]
    gone = server.http.get(f"/v1/jobs/{job['job_id']}")
    assert gone.status == 404 and error_of(gone)["code"] == "not_found"
    assert server.http.get(f"/v1/jobs/{waiting['job_id']}").status == 200


def test_a_sane_client_request_id_is_kept_underscores_included(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path)) as running:

        def echoed(given: str) -> str:
            return running.http.get("/healthz", headers={"X-Request-Id": given}).headers["x-request-id"]

        kept = ["my-id_1", "req_9e2855c1000001ea", "snake_case_id", "myreq-1", "a" * 64]
        assert [echoed(given) for given in kept] == kept
        for replaced in ["has space", "semi;colon", "---", "__", "é", "a" * 65]:
            assert echoed(replaced).startswith("req_"), replaced
