"""SIGTERM as clients see it: every open request answered in the API's shape (never a bare 500),
event streams ended cleanly, nothing claimed after the signal, and every accepted job ends after a restart."""

from __future__ import annotations

import asyncio
import http.client
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from tests.support import ServerProcess, TargetSite

#: `[server] shutdown_grace_s` of these servers: the active jobs get 2 s of it (1 s is kept for the handback)
GRACE_S = 3.0


class Gate:
    """A page that answers once the test opens the gate (at most 60 s later), then at once."""

    def __init__(self, site: TargetSite) -> None:
        self.opens_at = time.monotonic() + 60
        self.url = site.add("/held", self._held)

    async def _held(self, request: web.Request) -> web.Response:
        while time.monotonic() < self.opens_at:
            await asyncio.sleep(0.05)
        return web.Response(text="<p>held</p>", content_type="text/html")


def connect(base_url: str) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)


class Answer:
    """A request sent in a thread: its status, headers and body once answered, or what it raised."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str] | None = None) -> None:
        self.conn = connect(base_url)
        self.conn.request("GET", path, headers=headers or {})
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.error: BaseException | None = None
        self._first_data = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            resp = self.conn.getresponse()
            self.status, self.headers = resp.status, {k.lower(): v for k, v in resp.getheaders()}
            # read1, unlike readline, raises IncompleteRead when a chunked body is cut before its last chunk
            while data := resp.read1(65536):
                self.body += data
                self._first_data.set()
        except BaseException as exc:
            self.error = exc
        finally:
            self._first_data.set()
            self.conn.close()

    def wait_first_data(self) -> None:
        assert self._first_data.wait(30)

    def join(self) -> Answer:
        self._thread.join(60)
        assert not self._thread.is_alive()
        return self

    def events(self) -> list[dict[str, Any]]:
        """The Server-Sent Events read: id, event and the job."""
        found = []
        for block in self.body.decode().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
            if "data" in fields:
                found.append({"id": fields["id"], "event": fields["event"], "job": json.loads(fields["data"])})
        return found


def stored(db: Path) -> dict[str, tuple[str, int]]:
    conn = sqlite3.connect(db)
    try:
        return {row[0]: (row[1], row[2]) for row in conn.execute("SELECT id, status, attempts FROM jobs")}
    finally:
        conn.close()


def terminate_in_thread(server: ServerProcess) -> tuple[threading.Thread, list[int]]:
    exit_codes: list[int] = []
    thread = threading.Thread(target=lambda: exit_codes.append(server.terminate(60)), daemon=True)
    thread.start()
    return thread, exit_codes


def server_env(**more: str) -> dict[str, str]:
    return {"LITEJOBS_SERVER_SHUTDOWN_GRACE_S": str(GRACE_S), **more}


@pytest.mark.slow
def test_sigterm_answers_long_polls_ends_streams_refuses_submits_and_loses_no_job(
    tmp_path: Path, site: TargetSite
) -> None:
    db = tmp_path / "term.db"
    gate = Gate(site)
    quick = site.add_html("/quick", "<p>quick</p>")
    server = ServerProcess(db, env=server_env(LITEJOBS_QUEUE_CONCURRENCY="2"))
    held = server.http.submit({"url": gate.url}, max_attempts=1)["job_id"]
    assert server.http.get(f"/v1/jobs/{held}?wait=0").json["status"] in ("waiting", "active")
    job_stream = Answer(server.base_url, f"/v1/jobs/{held}/events")
    all_stream = Answer(server.base_url, "/v1/events")
    job_stream.wait_first_data()
    all_stream.wait_first_data()
    long_poll = Answer(server.base_url, f"/v1/jobs/{held}?wait=60")
    # a submit whose body is still on its way when the signal comes
    submit = connect(server.base_url)
    body = json.dumps({"input": {"url": quick}}).encode()
    submit.putrequest("POST", "/v1/jobs")
    submit.putheader("Content-Type", "application/json")
    submit.putheader("Content-Length", str(len(body)))
    submit.endheaders()
    # due a second after the signal, with a worker slot free: a pool still claiming would run it
    delayed = server.http.submit({"url": quick}, delay_s=1)["job_id"]
    time.sleep(0.3)  # the long-poll is in

    stopping, exit_codes = terminate_in_thread(server)
    gate.opens_at = time.monotonic() + 2 * GRACE_S  # the held job would end within a late grace

    long_poll.join()
    assert long_poll.error is None and long_poll.status == 200
    assert json.loads(long_poll.body)["status"] == "active"  # the job as it is: a wait that ran out
    submit.send(body)
    refused = submit.getresponse()
    assert refused.status == 503 and refused.getheader("Retry-After")
    assert json.loads(refused.read())["error"]["code"] == "shutting_down"
    submit.close()
    for stream in (job_stream.join(), all_stream.join()):
        assert stream.error is None and stream.status == 200  # ended cleanly, not cut
        assert held in {event["job"]["job_id"] for event in stream.events()}
    stopping.join(60)
    assert exit_codes == [0]
    log = "".join(server.output)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    # the grace started at the signal: the held job was handed back, not spending its one attempt,
    # and nothing was claimed after the signal
    assert stored(db) == {held: ("waiting", 0), delayed: ("delayed", 0)}

    restarted = ServerProcess(db, env=server_env())
    try:
        for job_id in (held, delayed):
            assert restarted.http.wait(job_id)["status"] == "completed"
        assert len(restarted.http.get(f"/v1/jobs/{held}").json["attempts_detail"]) == 1
        # a stream client resumes where its stream ended, from its last event id
        last_id = job_stream.events()[-1]["id"]
        resumed = Answer(restarted.base_url, f"/v1/jobs/{held}/events", {"Last-Event-ID": last_id}).join()
        assert resumed.error is None and resumed.events()[-1]["job"]["status"] == "completed"
    finally:
        restarted.terminate()


@pytest.mark.slow
def test_an_inline_scrape_still_running_at_the_end_of_the_grace_is_answered_503(
    tmp_path: Path, site: TargetSite
) -> None:
    gate = Gate(site)
    server = ServerProcess(tmp_path / "inline.db", env=server_env(LITEJOBS_LIMITS_SYNC_TIMEOUT_S="60"))
    scrape = connect(server.base_url)
    scrape.request("POST", "/v1/scrape", json.dumps({"url": gate.url}), {"Content-Type": "application/json"})
    time.sleep(0.3)  # the scrape is in
    stopping, exit_codes = terminate_in_thread(server)
    answer = scrape.getresponse()
    assert (
        answer.status == 503
        and answer.getheader("Content-Type") == "application/json"
        and answer.getheader("Retry-After")
    )
    assert json.loads(answer.read())["error"]["code"] == "shutting_down"
    scrape.close()
    stopping.join(60)
    assert exit_codes == [0]
    assert "Traceback" not in "".join(server.output)
