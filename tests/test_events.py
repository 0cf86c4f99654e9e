"""Server-Sent Events: a job's stream ends at its terminal status; Last-Event-ID resumes."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from typing import Any

from aiohttp import web

from tests.support import ServerThread, TargetSite


def read_events(
    server: ServerThread, path: str, until: int, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Read at most `until` events (or until the server ends the stream)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type", "").startswith("text/event-stream")
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    try:
        while len(events) < until:
            line = resp.readline().decode()
            if not line:
                break
            line = line.rstrip("\n")
            if line == "" and current:
                events.append(current)
                current = {}
            elif line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(": ")
                current[key] = json.loads(value) if key == "data" else value
    finally:
        conn.close()
    return events


def test_a_job_stream_shows_each_status_and_ends(server: ServerThread, site: TargetSite) -> None:
    gate = threading.Event()

    async def held(request: web.Request) -> web.Response:
        for _ in range(200):
            if gate.is_set():
                break
            await asyncio.sleep(0.02)
        return web.Response(text="<p>done</p>", content_type="text/html")

    job = server.http.submit({"url": site.add("/held", held)})
    threading.Timer(0.5, gate.set).start()
    events = read_events(server, f"/v1/jobs/{job['job_id']}/events", until=10)
    statuses = [e["data"]["status"] for e in events]
    assert statuses[-1] == "completed" and "active" in statuses
    assert all(e["event"] == "status" for e in events)
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids)
    # resuming after the last event: the job is terminal and nothing newer exists, the stream ends
    assert read_events(server, f"/v1/jobs/{job['job_id']}/events", 10, {"Last-Event-ID": str(ids[-1])}) == []
    # resuming from before: the current state comes again
    again = read_events(server, f"/v1/jobs/{job['job_id']}/events", 10, {"Last-Event-ID": str(ids[0])})
    assert [e["data"]["status"] for e in again] == ["completed"]


def test_the_all_jobs_stream_resumes_from_last_event_id(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<p>x</p>")
    first = server.http.submit({"url": url})
    server.http.wait(first["job_id"])
    events = read_events(server, "/v1/events?last_event_id=0", until=1)
    assert events and events[0]["data"]["job_id"] == first["job_id"]
    last = int(events[0]["id"])
    second = server.http.submit({"url": url}, delay_s=60)
    resumed = read_events(server, f"/v1/events?last_event_id={last}", until=1)
    assert resumed[0]["data"]["job_id"] == second["job_id"] and resumed[0]["data"]["status"] == "delayed"
