"""A stop (SIGTERM) as vendor clients see it: the `503 shutting_down` in their dialect's error shape."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from tests.support import ServerProcess, TargetSite

#: `[server] shutdown_grace_s`: requests still open get 2 s of it (1 s is kept for the handback)
ENV = {"LITEJOBS_SERVER_SHUTDOWN_GRACE_S": "3", "LITEJOBS_LIMITS_SYNC_TIMEOUT_S": "60"}


def connect(base_url: str) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)


def half_sent(base_url: str, path: str, body: bytes) -> http.client.HTTPConnection:
    """A POST whose headers are in and whose body is not: it is answered after the signal."""
    conn = connect(base_url)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    return conn


@pytest.mark.slow
def test_a_stop_answers_omniscrape_and_spidra_clients_in_their_shape(tmp_path: Path, site: TargetSite) -> None:
    async def held(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response(text="<p>late</p>", content_type="text/html")

    url = site.add("/held", held)
    server = ServerProcess(tmp_path / "stop.db", env=ENV)
    scrape = connect(server.base_url)
    scrape.request(
        "POST", "/compat/omniscrape/v1/scrape", json.dumps({"url": url}), {"Content-Type": "application/json"}
    )
    bodies = {
        "/compat/omniscrape/v1/scrape/async": json.dumps({"url": url}).encode(),
        "/compat/spidra/api/scrape": json.dumps({"urls": [url]}).encode(),
    }
    submits = {path: half_sent(server.base_url, path, body) for path, body in bodies.items()}
    time.sleep(0.3)  # the scrape is in

    exit_codes: list[int] = []
    stopping = threading.Thread(target=lambda: exit_codes.append(server.terminate(60)), daemon=True)
    stopping.start()
    time.sleep(0.3)  # the stop has begun
    for path, conn in submits.items():
        conn.send(bodies[path])
    answers = {path: conn.getresponse() for path, conn in submits.items()}
    cut = scrape.getresponse()  # at the grace's end

    omni = json.loads(cut.read())
    assert cut.status == 503 and omni["success"] is False and omni["error"]["code"] == "shutting_down"
    assert cut.getheader("Retry-After") is not None  # as the native 503 says when to come back
    refused = json.loads(answers["/compat/omniscrape/v1/scrape/async"].read())
    assert refused["success"] is False and refused["error"]["code"] == "shutting_down"
    spidra = answers["/compat/spidra/api/scrape"]
    body = json.loads(spidra.read())
    assert spidra.status == 503 and body["status"] == "error" and "shutting down" in body["message"]
    for conn in (scrape, *submits.values()):
        conn.close()
    stopping.join(60)
    assert exit_codes == [0]
    assert "Traceback" not in "".join(server.output)
