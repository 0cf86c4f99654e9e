"""The SDK against the real server: both clients, paging, event streams, and every typed error."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs import errors
from litejobs.client import AsyncClient, Client, Event, ServerUnreachable, retry_after_s
from tests.support import ServerThread, TargetSite, make_config

PAGE = "<h1>Title</h1><p>Body text</p>"


def held_page(site: TargetSite, path: str = "/held") -> tuple[str, threading.Event]:
    """A page that answers only once the test sets the returned event: a job stays active till then."""
    gate = threading.Event()

    async def held(request: web.Request) -> web.Response:
        for _ in range(500):
            if gate.is_set():
                break
            await asyncio.sleep(0.01)
        return web.Response(text=PAGE, content_type="text/html")

    return site.add(path, held), gate


def slow_page(site: TargetSite, seconds: float) -> str:
    """A page that answers after `seconds`: a job fetching it runs that long."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(text=PAGE, content_type="text/html")

    return site.add("/slow", slow)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_sync_client_submits_waits_and_reads_the_result(server: ServerThread, site: TargetSite) -> None:
    client = Client(server.base_url)
    job = client.submit("fetch", {"url": site.add_html("/doc", PAGE), "output": ["markdown"]}, meta={"n": 1})
    done = client.wait(job["job_id"])
    result = client.result(job["job_id"])
    assert job["status"] == "waiting" and job["meta"] == {"n": 1}
    assert done["status"] == "completed" and done["result_available"]
    assert result["outputs"]["markdown"].startswith("# Title") and "Body text" in result["outputs"]["markdown"]


def test_the_async_client_waits_on_the_event_stream_and_hears_each_change(
    server: ServerThread, site: TargetSite
) -> None:
    url, gate = held_page(site)
    seen: list[str] = []

    def on_change(job: dict[str, Any]) -> None:
        seen.append(job["status"])
        if job["status"] == "active":
            gate.set()

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with AsyncClient(server.base_url) as client:
            job = await client.submit("fetch", {"url": url})
            done = await client.wait(job["job_id"], on_change=on_change)
            return done, await client.result(job["job_id"])

    done, result = asyncio.run(scenario())
    assert done["status"] == "completed" and "Body text" in result["outputs"]["markdown"]
    assert seen[-1] == "completed" and "active" in seen


def test_wait_with_a_timeout_returns_the_job_as_it_is(server: ServerThread, site: TargetSite) -> None:
    url, gate = held_page(site)
    client = Client(server.base_url)
    job = client.submit("fetch", {"url": url})

    async def async_wait() -> dict[str, Any]:
        async with AsyncClient(server.base_url) as client:
            return await client.wait(job["job_id"], timeout_s=0.3)  # type: ignore[no-any-return]

    try:
        assert client.wait(job["job_id"], timeout_s=0.3)["status"] in ("waiting", "active")
        assert asyncio.run(async_wait())["status"] in ("waiting", "active")
    finally:
        gate.set()
    assert client.wait(job["job_id"])["status"] == "completed"


def test_a_sync_client_waits_out_a_job_longer_than_its_request_timeout(server: ServerThread, site: TargetSite) -> None:
    client = Client(server.base_url, timeout_s=1.0)
    job = client.submit("fetch", {"url": slow_page(site, 2.5)})
    done = client.wait(job["job_id"])
    assert done["status"] == "completed"


def test_get_with_a_wait_longer_than_the_request_timeout_returns_the_ended_job(
    server: ServerThread, site: TargetSite
) -> None:
    url = slow_page(site, 2.0)
    client = Client(server.base_url, timeout_s=1.0)

    async def async_submit_and_get() -> dict[str, Any]:
        async with AsyncClient(server.base_url, timeout_s=1.0) as client:
            job = await client.submit("fetch", {"url": url})
            return await client.get(job["job_id"], wait_s=20)  # type: ignore[no-any-return]

    assert client.get(client.submit("fetch", {"url": url})["job_id"], wait_s=20)["status"] == "completed"
    assert asyncio.run(async_submit_and_get())["status"] == "completed"


def test_list_iterates_across_pages(server: ServerThread) -> None:
    client = Client(server.base_url)
    submitted = [client.submit("fetch", {"url": f"http://127.0.0.1:9/{n}"}, delay_s=600)["job_id"] for n in range(5)]

    async def async_list() -> list[str]:
        async with AsyncClient(server.base_url) as client:
            return [job["job_id"] async for job in client.list(status="delayed", limit=2)]

    assert [job["job_id"] for job in client.list(limit=2)] == submitted[::-1]
    assert asyncio.run(async_list()) == submitted[::-1]


def test_submit_batch_then_cancel_and_retry(server: ServerThread) -> None:
    client = Client(server.base_url)
    first, second = client.submit_batch(
        [{"kind": "fetch", "input": {"url": "http://127.0.0.1:9/a"}, "delay_s": 600}] * 2
    )
    cancelled = client.cancel(first["job_id"])
    with pytest.raises(errors.JobFinished) as finished:
        client.cancel(first["job_id"])
    retried = client.retry(first["job_id"])

    async def async_cancel() -> dict[str, Any]:
        async with AsyncClient(server.base_url) as client:
            [third] = await client.submit_batch([{"input": {"url": "http://127.0.0.1:9/b"}, "delay_s": 600}])
            return await client.cancel(third["job_id"])  # type: ignore[no-any-return]

    assert first["status"] == second["status"] == "delayed"
    assert cancelled["status"] == "cancelled" and finished.value.status == 409  # type: ignore[attr-defined]
    assert retried["status"] == "waiting"
    assert asyncio.run(async_cancel())["status"] == "cancelled"


def test_pages_iterates_a_multi_page_result(server: ServerThread, site: TargetSite) -> None:
    client = Client(server.base_url)
    job = client.submit("fetch", {"url": site.add_html("/doc", PAGE)})
    client.wait(job["job_id"])
    assert server.app is not None
    urls = [f"https://example.com/{n}" for n in range(5)]
    server.call(server.app.store.add_pages(job["job_id"], [{"url": url, "markdown": url} for url in urls]))

    async def async_pages() -> list[str]:
        async with AsyncClient(server.base_url) as client:
            return [page["url"] async for page in client.pages(job["job_id"], limit=2)]

    assert [page["url"] for page in client.pages(job["job_id"], limit=2)] == urls
    assert asyncio.run(async_pages()) == urls


def test_events_follow_one_job_until_it_ends(server: ServerThread, site: TargetSite) -> None:
    url, gate = held_page(site)
    client = Client(server.base_url)
    job = client.submit("fetch", {"url": url})
    statuses = []
    for event in client.events(job["job_id"]):
        statuses.append(event.job["status"])
        if event.job["status"] == "active":
            gate.set()
    assert statuses[-1] == "completed" and "active" in statuses

    async def replay() -> list[Event]:
        async with AsyncClient(server.base_url) as client:
            return [event async for event in client.events(job["job_id"])]

    [last] = asyncio.run(replay())  # a finished job's stream is its last state
    assert last.type == "status" and last.job["status"] == "completed" and last.id


def test_events_of_all_jobs_show_new_jobs(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/doc", PAGE)

    async def scenario() -> list[str]:
        statuses: list[str] = []
        async with AsyncClient(server.base_url) as client:

            async def submit_until_seen() -> None:
                while not statuses:  # the stream shows changes from when it opened
                    await client.submit("fetch", {"url": url})
                    await asyncio.sleep(0.5)

            submitter = asyncio.create_task(submit_until_seen())
            async with contextlib.aclosing(client.events()) as events:
                async for event in events:
                    statuses.append(event.job["status"])
                    if event.job["status"] == "completed":
                        break
            await submitter
        return statuses

    statuses = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert statuses[-1] == "completed"


def fake_job(status: str, updated_at: int) -> dict[str, Any]:
    return {"job_id": "job_x", "kind": "fetch", "status": status, "updated_at": updated_at, "input": {}}


def broken_stream(site: TargetSite, first: dict[str, Any], then: dict[str, Any]) -> list[str | None]:
    """/v1/jobs/job_x/events sends `first` then drops the connection; reconnected, it sends `then` and
    ends. Returns the Last-Event-ID of each connection."""
    resumed_from: list[str | None] = []

    async def events(request: web.Request) -> web.StreamResponse:
        resumed_from.append(request.headers.get("Last-Event-ID"))
        job = first if len(resumed_from) % 2 == 1 else then
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(f": keep-alive\n\nid: {job['updated_at']}\nevent: status\ndata: ".encode())
        await resp.write(web.json_response(job).body + b"\n\n")  # type: ignore[operator]
        if job is first:
            assert request.transport is not None
            request.transport.close()
        return resp

    site.add("/v1/jobs/job_x/events", events)
    return resumed_from


def test_events_resume_from_the_last_event_id_after_a_break(site: TargetSite) -> None:
    resumed_from = broken_stream(site, fake_job("active", 100), fake_job("completed", 200))
    statuses = [event.job["status"] for event in Client(site.base_url).events("job_x")]

    async def async_events() -> list[str]:
        async with AsyncClient(site.base_url) as client:
            return [event.job["status"] async for event in client.events("job_x")]

    assert statuses == ["active", "completed"]
    assert asyncio.run(async_events()) == ["active", "completed"]
    assert resumed_from == [None, "100", None, "100"]


def test_async_wait_falls_back_to_long_polling_when_the_stream_breaks(site: TargetSite) -> None:
    broken_stream(site, fake_job("active", 100), fake_job("active", 100))
    polls: list[str] = []

    async def job(request: web.Request) -> web.Response:
        polls.append(request.query.get("wait", ""))
        return web.json_response(fake_job("completed", 300))

    site.add("/v1/jobs/job_x", job)

    async def scenario() -> dict[str, Any]:
        async with AsyncClient(site.base_url) as client:
            return await client.wait("job_x")  # type: ignore[no-any-return]

    assert asyncio.run(scenario())["status"] == "completed"
    assert polls == ["60.000"]


def test_async_wait_falls_back_to_long_polls_that_end_before_its_request_timeout(site: TargetSite) -> None:
    broken_stream(site, fake_job("active", 100), fake_job("active", 100))
    polls: list[str] = []

    async def job(request: web.Request) -> web.Response:
        polls.append(request.query.get("wait", ""))
        await asyncio.sleep(float(polls[-1] or 0))  # held as the server would
        return web.json_response(fake_job("completed", 300))

    site.add("/v1/jobs/job_x", job)

    async def scenario() -> dict[str, Any]:
        async with AsyncClient(site.base_url, timeout_s=1.0) as client:
            return await client.wait("job_x")  # type: ignore[no-any-return]

    assert asyncio.run(scenario())["status"] == "completed"
    assert polls == ["0.500"]


def test_an_unreachable_server_raises_server_unreachable() -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    async def scenario() -> None:
        async with AsyncClient(url) as client:
            with pytest.raises(ServerUnreachable):
                await client.wait("job_x")
            with pytest.raises(ServerUnreachable):
                await anext(client.events())

    with pytest.raises(ServerUnreachable, match="cannot reach"):
        Client(url).get("job_x")
    with pytest.raises(ServerUnreachable):
        next(Client(url).events())
    asyncio.run(scenario())


def expect_errors(base_url: str, cases: list[tuple[str, Callable[[Any], Any], type[errors.ApiError], int]]) -> None:
    """Each case, `(api_key, call, error class, status)`, raises the same with both clients."""

    async def run_async() -> None:
        for api_key, call, error, status in cases:
            async with AsyncClient(base_url, api_key) as client:
                with pytest.raises(error) as raised:
                    await call(client)
                assert raised.value.status == status  # type: ignore[attr-defined]

    for api_key, call, error, status in cases:
        with pytest.raises(error) as raised:
            call(Client(base_url, api_key))
        assert raised.value.status == status and raised.value.message  # type: ignore[attr-defined]
        assert raised.value.request_id  # type: ignore[attr-defined]
    asyncio.run(run_async())


def test_each_error_code_raises_its_own_exception(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path, auth={"keys": ["k1", "k2"]})) as server:
        owner = Client(server.base_url, "k1")
        job = owner.submit("fetch", {"url": "http://127.0.0.1:9/"}, delay_s=600, idempotency_key="once")
        job_id = job["job_id"]
        expect_errors(
            server.base_url,
            [
                (None, lambda c: c.get(job_id), errors.Unauthorized, 401),
                ("wrong", lambda c: c.stats(), errors.Unauthorized, 401),
                ("k2", lambda c: c.get(job_id), errors.Forbidden, 403),
                ("k1", lambda c: c.get("job_unknown"), errors.NotFound, 404),
                ("k1", lambda c: c.submit("fetch", {"url": "http://a.test/"}, idempotency_key="once"),
                 errors.IdempotencyConflict, 409),
                ("k1", lambda c: c.result(job_id), errors.ResultNotAvailable, 409),
                ("k1", lambda c: c.submit("fetch", {"url": "ftp://x"}), errors.ValidationFailed, 422),
                ("k1", lambda c: c.submit("nope", {"url": "http://a.test/"}), errors.UnsupportedKind, 422),
            ],
        )  # fmt: skip
        with pytest.raises(errors.ValidationFailed) as invalid:
            owner.submit("fetch", {"url": "http://a.test/"}, priority=1000, max_attempts=0)
        assert {d["field"] for d in invalid.value.details} == {"priority", "max_attempts"}


def test_a_body_over_the_limit_raises_payload_too_large(server: ServerThread) -> None:
    # larger than the loopback socket buffers, so the server's 413 and close meet a send still under way
    body = "x" * 8_000_000
    client = Client(server.base_url)
    for _ in range(10):  # the send fails (reset or broken pipe) in most runs without the early answer read
        with pytest.raises(errors.PayloadTooLarge) as too_large:
            client.submit("fetch", {"url": "http://127.0.0.1:9/", "method": "POST", "body": body})
        assert too_large.value.status == 413  # type: ignore[attr-defined]


def test_a_server_that_hangs_up_mid_body_without_answering_is_unreachable(site: TargetSite) -> None:
    async def hang_up(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    site.add("/v1/jobs", hang_up)
    with pytest.raises(ServerUnreachable, match="cannot reach"):
        Client(site.base_url).submit("fetch", {"url": "http://127.0.0.1:9/", "body": "x" * 8_000_000})


def test_a_disabled_queue_raises_queue_disabled(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path, queue={"enabled": False})) as server:
        submit = lambda c: c.submit("fetch", {"url": "http://a.test/"})  # noqa: E731
        expect_errors(server.base_url, [(None, submit, errors.QueueDisabled, 503)])


def test_queue_full_and_rate_limited_carry_retry_after(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path, queue={"max_depth": 1}, auth={"keys": ["k"], "rate_per_s": 1})) as server:
        client = Client(server.base_url, "k")
        client.submit("fetch", {"url": "http://127.0.0.1:9/"}, delay_s=600)
        with pytest.raises(errors.RateLimited) as limited:  # a read would wait it out; a submit is not resent
            client.submit("fetch", {"url": "http://127.0.0.1:9/"}, delay_s=600)
        limited_retry_s = limited.value.retry_after_s
        time.sleep(limited_retry_s or 1.0)
        with pytest.raises(errors.QueueFull) as full:
            client.submit("fetch", {"url": "http://127.0.0.1:9/"}, delay_s=600)
    assert limited_retry_s == 1.0 and full.value.retry_after_s == 5.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None


def rate_limited_server(tmp_path: Path, rate_per_s: float = 1) -> ServerThread:
    """A server that lets key `k` make `rate_per_s` requests a second, answering `429` past them."""
    return ServerThread(make_config(tmp_path, auth={"keys": ["k"], "rate_per_s": rate_per_s}))


def spend_the_rate_limit(client: Client) -> None:
    """Takes the one request a second `k` may make, so that the next is rate-limited."""
    with contextlib.suppress(errors.RateLimited):
        client.stats()


def test_the_sync_client_waits_out_rate_limits_while_waiting_and_reading(tmp_path: Path, site: TargetSite) -> None:
    with rate_limited_server(tmp_path) as server:
        client = Client(server.base_url, "k")
        job = client.submit("fetch", {"url": site.add_html("/doc", PAGE)})
        done = client.wait(job["job_id"])  # its first poll comes within the second of the submit: 429
        result = client.result(job["job_id"])
        statuses = [event.job["status"] for event in client.events(job["job_id"])]
    assert done["status"] == "completed" and "Body text" in result["outputs"]["markdown"]
    assert statuses == ["completed"]


def test_the_async_client_waits_out_rate_limits_on_its_streams_and_reads(tmp_path: Path, site: TargetSite) -> None:
    url = site.add_html("/doc", PAGE)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        async with AsyncClient(server.base_url, "k") as client:
            job = await client.submit("fetch", {"url": url})
            done = await client.wait(job["job_id"])  # its stream opens within the second of the submit: 429
            result = await client.result(job["job_id"])
            statuses = [event.job["status"] async for event in client.events(job["job_id"])]
            return done, result, statuses

    with rate_limited_server(tmp_path) as server:
        done, result, statuses = asyncio.run(scenario())
    assert done["status"] == "completed" and "Body text" in result["outputs"]["markdown"]
    assert statuses == ["completed"]


def test_a_rate_limited_submit_is_sent_again_only_under_an_idempotency_key(tmp_path: Path) -> None:
    with rate_limited_server(tmp_path) as server:
        client = Client(server.base_url, "k")
        spend_the_rate_limit(client)
        started = time.monotonic()
        with pytest.raises(errors.RateLimited) as limited:
            client.submit("fetch", {"url": "http://127.0.0.1:9/"}, delay_s=600)
        refused_after_s = time.monotonic() - started
        job = client.submit("fetch", {"url": "http://127.0.0.1:9/"}, delay_s=600, idempotency_key="one")

        async def async_batch() -> list[dict[str, Any]]:
            async with AsyncClient(server.base_url, "k") as client:
                batch = [{"input": {"url": "http://127.0.0.1:9/b"}, "delay_s": 600}]
                return await client.submit_batch(batch, idempotency_key="two")  # type: ignore[no-any-return]

        [batched] = asyncio.run(async_batch())
        listed = [found["job_id"] for found in client.list()]
    assert limited.value.status == 429 and refused_after_s < 0.5  # type: ignore[attr-defined]
    assert listed == [batched["job_id"], job["job_id"]]


def test_a_rate_limit_longer_than_the_caller_waits_is_raised_at_once(tmp_path: Path) -> None:
    with rate_limited_server(tmp_path) as server:
        client = Client(server.base_url, "k")
        job = client.submit("fetch", {"url": "http://127.0.0.1:9/"}, delay_s=600, idempotency_key="one")
        started = time.monotonic()
        with pytest.raises(errors.RateLimited):  # Retry-After: 1, past the wait's timeout
            client.wait(job["job_id"], timeout_s=0.3)
        refused_after_s = time.monotonic() - started
    with rate_limited_server(tmp_path / "slow", rate_per_s=0.01) as server:
        client = Client(server.base_url, "k")
        spend_the_rate_limit(client)
        with pytest.raises(errors.RateLimited) as limited:  # Retry-After: 100, past MAX_RETRY_AFTER_S
            client.get(job["job_id"])
    assert refused_after_s < 0.3 and limited.value.retry_after_s == 100


def silent_stream(site: TargetSite, silence_s: float) -> list[str | None]:
    """/v1/jobs/job_x/events sends `active`, says nothing for `silence_s` (less than the server's 15 s
    keep-alive interval), then sends `completed`; a reconnect gets `completed` at once. Returns the
    Last-Event-ID of each connection."""
    resumed_from: list[str | None] = []

    async def events(request: web.Request) -> web.StreamResponse:
        resumed_from.append(request.headers.get("Last-Event-ID"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        resumed = request.headers.get("Last-Event-ID") is not None
        for job in [fake_job("active", 100), fake_job("completed", 200)][resumed:]:
            await resp.write(f"id: {job['updated_at']}\nevent: status\ndata: ".encode())
            await resp.write(web.json_response(job).body + b"\n\n")  # type: ignore[operator]
            if job["status"] == "active":
                await asyncio.sleep(silence_s)
        return resp

    site.add("/v1/jobs/job_x/events", events)
    return resumed_from


def test_events_wait_out_a_silence_longer_than_the_request_timeout(site: TargetSite) -> None:
    resumed_from = silent_stream(site, silence_s=1.5)
    statuses = [event.job["status"] for event in Client(site.base_url, timeout_s=0.5).events("job_x")]

    async def async_events() -> list[str]:
        async with AsyncClient(site.base_url, timeout_s=0.5) as client:
            return [event.job["status"] async for event in client.events("job_x")]

    assert statuses == ["active", "completed"] and resumed_from == [None]
    assert asyncio.run(async_events()) == ["active", "completed"] and resumed_from == [None, None]
