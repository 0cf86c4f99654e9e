"""A full disk, end to end: the server recovers without wedging itself full again, gives the WAL's
space back, logs the episode once (and its end), and says what a refused write means.

Two ways to fill it: a real small disk (a 4 MiB tmpfs; mounting needs root, so that test is skipped
when `mount` fails), and, needing no mount, a database file brought to store.max_db_mb's hard limit
(SQLite's max_page_count) by another writer: both fail the server's writes with SQLITE_FULL."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litejobs.store.sqlite_open import page_limits
from tests.support import ServerProcess, ServerThread, TargetSite, make_config, wait_until

NO_ROOM = "no room to write"
ROOM_AGAIN = "writes succeed again"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted after the test."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except OSError as exc:
        pytest.skip(f"cannot run mount for a small tmpfs: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=10)


def counts(server: ServerProcess) -> dict[str, int]:
    return server.http.get("/v1/stats").json["counts"]  # type: ignore[no-any-return]


def delayed_job(url: str, n: int) -> dict[str, Any]:
    return {"kind": "fetch", "input": {"url": f"{url}?n={n}"}, "meta": {"pad": "x" * 2000}, "delay_s": 2}


@pytest.mark.slow
def test_a_full_disk_runs_every_job_once_space_is_freed_gives_the_wal_space_back_and_logs_it_once(
    small_disk: Path, tmp_path: Path, site: TargetSite
) -> None:
    url = site.add_html("/page", "<p>hi</p>")
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"x" * 2_000_000)
    config = tmp_path / "litejobs.toml"
    config.write_text("[store]\nretention_s = 3600.0\n[queue]\nconcurrency = 2\nlease_s = 6.0\n")
    server = ServerProcess(small_disk / "jobs.db", "--config", str(config))
    try:
        accepted: list[str] = []
        refused = None
        for n in range(3000):
            resp = server.http.post("/v1/jobs", delayed_job(url, n))
            if resp.status != 202:
                refused = resp
                break
            accepted.append(resp.json["job_id"])
        assert refused is not None and refused.status == 507 and len(accepted) > 10
        assert refused.json["error"]["code"] == "storage_full"
        # a cancel is refused for the same reason, and its message does not speak of an accepted job
        cancel = server.http.delete(f"/v1/jobs/{accepted[-1]}")
        assert cancel.status == 507 and cancel.json["error"]["code"] == "storage_full"
        assert "not accepted" not in cancel.json["error"]["message"]
        assert "not stored" in cancel.json["error"]["message"]
        time.sleep(5)  # the jobs come due while the disk is full: every claim fails, for seconds
        assert counts(server)["completed"] == 0

        ballast.unlink()
        assert wait_until(lambda: counts(server)["completed"] == len(accepted), 30), counts(server)
        wal = small_disk / "jobs.db-wal"
        assert wait_until(lambda: not wal.exists() or wal.stat().st_size == 0, 15), wal.stat().st_size
        assert server.http.post("/v1/jobs", delayed_job(url, 9999)).status == 202
    finally:
        server.terminate()
    log = "".join(server.output)
    assert log.count(NO_ROOM) == 1, log
    assert log.count(ROOM_AGAIN) == 1, log
    assert "Traceback" not in log and "claim failed" not in log, log


# --- without a mount: the file at max_db_mb's hard limit ------------------------------------------


def fill_to(db: Path, max_pages: int) -> sqlite3.Connection:
    """Another writer fills the file's every page (a table of its own), as far as max_pages allows."""
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS ballast (data BLOB)")
    conn.execute(f"PRAGMA max_page_count = {max_pages}").fetchall()
    for size in (3000, 500, 50, 1):
        with contextlib.suppress(sqlite3.OperationalError):
            for _ in range(10_000):
                conn.execute("INSERT INTO ballast (data) VALUES (zeroblob(?))", (size,))
    return conn


def big_job(n: int) -> dict[str, Any]:
    # a row larger than a page needs overflow pages: new ones, which a full file does not have
    return {"input": {"url": f"http://127.0.0.1:9/{n}"}, "delay_s": 3600, "meta": {"pad": "x" * 15_000}}


def test_writes_refused_for_a_full_file_are_logged_once_and_the_wal_is_truncated_once_they_succeed_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="litejobs.store")
    config = make_config(tmp_path, store={"max_db_mb": 1})
    db = Path(config.store.path)
    with ServerThread(config) as server:
        assert server.http.post("/v1/jobs", big_job(0)).status == 202
        ballast = fill_to(db, page_limits(1, 4096)[1])
        try:
            refused = [server.http.post("/v1/jobs", big_job(n)) for n in range(1, 8)]
            assert {resp.status for resp in refused} == {507}
            assert {resp.json["error"]["code"] for resp in refused} == {"storage_full"}
            ballast.execute("DELETE FROM ballast")
        finally:
            ballast.close()
        assert wait_until(lambda: server.http.post("/v1/jobs", big_job(99)).status == 202, 10)
        assert wait_until(lambda: any(ROOM_AGAIN in r.getMessage() for r in caplog.records), 10)
        wal = Path(f"{db}-wal")
        assert wait_until(lambda: wal.stat().st_size == 0, 15), wal.stat().st_size
    messages = [r.getMessage() for r in caplog.records if r.name == "litejobs.store"]
    assert sum(NO_ROOM in m for m in messages) == 1, messages
    assert sum(ROOM_AGAIN in m for m in messages) == 1, messages
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
