"""Process faults: a SIGKILLed server loses no accepted job; SIGTERM gives active jobs their grace."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from aiohttp import web

from tests.support import ServerProcess, TargetSite


def slow_page(site: TargetSite, delay_s: float) -> str:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        return web.Response(text=f"<p>{request.query.get('n')}</p>", content_type="text/html")

    return site.add("/slow", handler)


def statuses(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
    finally:
        conn.close()


@pytest.mark.slow
def test_sigkill_with_jobs_in_flight_loses_none(tmp_path: Path, site: TargetSite) -> None:
    db = tmp_path / "crash.db"
    url = slow_page(site, 0.2)
    first = ServerProcess(db, env={"LITEJOBS_QUEUE_CONCURRENCY": "8"})
    accepted = []
    for n in range(120):
        resp = first.http.post("/v1/jobs", {"input": {"url": f"{url}?n={n}"}})
        assert resp.status == 202
        accepted.append(resp.json["job_id"])
    for _ in range(100):
        if statuses(db).get("active", 0) > 0:
            break
        time.sleep(0.05)
    first.kill()
    before = statuses(db)
    assert before.get("active", 0) > 0 and sum(before.values()) == 120
    second = ServerProcess(db, env={"LITEJOBS_QUEUE_CONCURRENCY": "16"})
    try:
        deadline = time.monotonic() + 60
        while statuses(db).get("completed", 0) < 120 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert statuses(db) == {"completed": 120}
        for job_id in accepted[:5] + accepted[-5:]:
            assert second.http.get(f"/v1/jobs/{job_id}").json["status"] == "completed"
        # at-least-once: a page may be fetched again if its worker died mid-fetch, never lost
        assert sum(site.hits.values()) >= 120
    finally:
        second.terminate()


@pytest.mark.slow
def test_sigterm_lets_active_jobs_finish_and_leaves_the_rest_for_the_next_start(
    tmp_path: Path, site: TargetSite
) -> None:
    db = tmp_path / "term.db"
    url = slow_page(site, 1.0)
    server = ServerProcess(db, env={"LITEJOBS_QUEUE_CONCURRENCY": "2", "LITEJOBS_SERVER_SHUTDOWN_GRACE_S": "5"})
    ids = [server.http.submit({"url": f"{url}?n={n}"})["job_id"] for n in range(6)]
    for _ in range(100):
        if statuses(db).get("active", 0) == 2:
            break
        time.sleep(0.05)
    assert server.terminate() == 0
    after = statuses(db)
    assert after.get("active", 0) == 0
    assert after.get("completed", 0) >= 2 and after.get("completed", 0) + after.get("waiting", 0) == 6
    restarted = ServerProcess(db)
    try:
        for job_id in ids:
            assert restarted.http.wait(job_id)["status"] == "completed"
    finally:
        restarted.terminate()


def test_cli_submit_wait_prints_the_markdown(tmp_path: Path, site: TargetSite) -> None:
    import subprocess

    from tests.support import PYTHON, ROOT

    url = site.add_html("/doc", "<h1>Title</h1><p>Body text</p>")
    server = ServerProcess(tmp_path / "cli.db")
    try:
        proc = subprocess.run(
            [PYTHON, "-m", "litejobs", "submit", url, "--wait", "--server", server.base_url],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("# Title") and "Body text" in proc.stdout
        down = subprocess.run(
            [PYTHON, "-m", "litejobs", "submit", url, "--server", "http://127.0.0.1:9"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert down.returncode == 3 and "cannot reach" in down.stderr
    finally:
        server.terminate()
