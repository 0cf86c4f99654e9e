"""The SQLite write path as a user sees it: writes committed on the event loop's thread must neither stall the
server while another process holds the database's write lock nor let the WAL file grow without bound."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from litejobs.jobs import JobSpec
from litejobs.store.sqlite import SqliteStore
from tests.support import Http, Response, ServerProcess, TargetSite


def test_while_another_process_holds_the_write_lock_reads_answer_and_the_submit_lands_once_it_is_free(
    tmp_path: Path, site: TargetSite
) -> None:
    url = site.add_html("/page", "<title>t</title><p>hello</p>")
    server = ServerProcess(tmp_path / "locked.db")
    try:
        first = server.http.submit({"url": url})
        assert server.http.wait(first["job_id"])["status"] == "completed"

        other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction, held open
        submitted: list[Response] = []
        submitter = threading.Thread(
            target=lambda: submitted.append(server.http.post("/v1/jobs", {"kind": "fetch", "input": {"url": url}}))
        )
        try:
            submitter.start()
            # the submit waits for the lock; the server's loop does not: health and reads answer meanwhile
            quick = Http(server.base_url)
            assert quick.get("/healthz").status == 200
            read = quick.get(f"/v1/jobs/{first['job_id']}")
            assert read.status == 200 and read.json["status"] == "completed"
            assert submitter.is_alive() and not submitted, "a submit is durable before its 202: it must wait"
        finally:
            other.execute("ROLLBACK")
            other.close()
        submitter.join(60)
        [response] = submitted
        assert response.status == 202, response.body
        assert server.http.wait(response.json["job_id"])["status"] == "completed"
    finally:
        assert server.terminate() == 0


def test_the_wal_file_stays_bounded_while_writes_go_on(tmp_path: Path) -> None:
    """The write connection's own checkpoints are off (they would fsync on the loop's thread); the
    store's checkpointer must keep the WAL to a fraction of what was written."""
    path = tmp_path / "wal.db"
    padding = "x" * 12_000

    def spec(n: int) -> JobSpec:
        return JobSpec(kind="fetch", input={"url": f"http://127.0.0.1/{n}"}, owner="o", meta={"pad": padding})

    async def main() -> tuple[int, int]:
        written = 0
        async with SqliteStore(path) as store:
            for round_ in range(40):  # 40 × 40 jobs of 12 KB: ~20 MB over about 2 s
                await store.submit([spec(round_ * 40 + i) for i in range(40)], 1_800_000_000_000, 10**9)
                written += 40 * len(padding)
                await asyncio.sleep(0.05)
            wal = Path(f"{path}-wal").stat().st_size
        return written, wal

    written, wal = asyncio.run(main())
    assert written > 19_000_000
    assert wal < written / 2, f"the WAL grew to {wal:,} bytes for {written:,} written"


def test_jobs_written_on_the_loops_thread_read_back_after_a_restart(tmp_path: Path) -> None:
    """A close after writes leaves everything in the file (the last connection's checkpoint)."""
    path = tmp_path / "restart.db"

    async def write() -> list[str]:
        async with SqliteStore(path) as store:
            subs = await store.submit(
                [JobSpec(kind="fetch", input={"url": f"http://127.0.0.1/{n}"}, owner="o") for n in range(300)],
                1_800_000_000_000,
                10**9,
            )
            return [s.job.id for s in subs]

    async def read(ids: list[str]) -> list[Any]:
        async with SqliteStore(path) as store:
            return [await store.get(job_id) for job_id in ids]

    ids = asyncio.run(write())
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    jobs = asyncio.run(read(ids))
    assert [job.id for job in jobs if job is not None] == ids
