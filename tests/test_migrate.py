"""`litejobs migrate`: a SQLite database moves into PostgreSQL whole, and the queue goes on there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from litejobs.cli import main
from litejobs.files import DirectoryFiles
from litejobs.jobs import JobResult, JobSpec, JobState
from litejobs.store import StoredFile
from litejobs.store.postgres import PostgresStore
from litejobs.store.sqlite import SqliteStore
from tests.file_kinds import PNG_MAGIC
from tests.support import ServerThread, make_config

T0 = 1_800_000_000_000


def spec(n: int, **kw: object) -> JobSpec:
    return JobSpec(kind="fetch", input={"url": f"http://127.0.0.1/{n}"}, owner="o", **kw)  # type: ignore[arg-type]


def test_migrate_copies_every_table_and_the_queue_goes_on(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "old.db"

    async def fill() -> tuple[str, str, list[str]]:
        async with SqliteStore(db) as store:
            subs = await store.submit([spec(n, idempotency_key=f"k{n}", request_hash="h") for n in range(5)], T0, 100)
            [done, *_] = await store.claim(1, "w", T0, 30_000)
            await store.add_pages(done.id, [{"url": "http://127.0.0.1/p1"}, {"url": "http://127.0.0.1/p2"}])
            await store.add_file(StoredFile(done.id, "shot.png", "image/png", 3))
            await store.finish(done.id, "w", JobResult(JobState.COMPLETED, {"markdown": "# é"}), T0 + 5, T0 + 10**9)
            await store.add_delivery(done.id, "job.completed", "http://127.0.0.1/hook", b"\x00{}", T0 + 6)
            return done.id, subs[4].job.id, [s.job.id for s in subs]

    done_id, waiting_id, ids = asyncio.run(fill())
    assert main(["migrate", "--from", str(db), "--to", pg_url]) == 0

    async def check() -> None:
        async with PostgresStore(pg_url) as store:
            done = await store.get(done_id)
            assert done is not None and done.status == JobState.COMPLETED and done.result_available
            result = await store.get_result(done_id)
            assert result is not None and result.outputs == {"markdown": "# é"}
            assert [a.outcome for a in await store.attempts(done_id)] == ["completed"]
            assert await store.page_urls(done_id) == ["http://127.0.0.1/p1", "http://127.0.0.1/p2"]
            assert await store.get_file(done_id, "shot.png") == StoredFile(done_id, "shot.png", "image/png", 3)
            [delivery] = await store.deliveries(done_id, 10)
            assert delivery.payload == b"\x00{}" and delivery.state == "pending"
            jobs, _ = await store.list_jobs("o", None, None, 10, None)
            assert [j.id for j in jobs] == ids[::-1]
            # idempotency keys came along; new jobs list after the old ones
            [replay] = await store.submit([spec(4, idempotency_key="k4", request_hash="h")], T0, 100)
            assert replay.replayed and replay.job.id == waiting_id
            [new] = await store.submit([spec(9)], T0, 100)
            newest, _ = await store.list_jobs("o", None, None, 1, None)
            assert newest[0].id == new.job.id
            claimed = await store.claim(10, "w2", T0 + 10, 30_000)
            assert len(claimed) == 5

    asyncio.run(check())
    # a database that already holds jobs is refused, and left as it was
    assert main(["migrate", "--from", str(db), "--to", pg_url]) == 1


def test_migrate_moves_the_files_bytes_into_the_database_where_any_node_serves_them(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "old.db"
    shot = PNG_MAGIC + bytes(range(256)) * 40

    async def fill() -> str:
        async with SqliteStore(db) as store:
            [sub] = await store.submit([JobSpec(kind="fetch", input={"url": "http://127.0.0.1/"}, owner="")], T0, 100)
            await store.claim(1, "w", T0, 30_000)
            await store.add_file(StoredFile(sub.job.id, "shot.png", "image/png", len(shot)))
            await store.add_file(StoredFile(sub.job.id, "gone.pdf", "application/pdf", 10))  # not on disk
            await store.finish(sub.job.id, "w", JobResult(JobState.COMPLETED, {}), T0 + 5, T0 + 10**12)
        await DirectoryFiles(Path(f"{db}.files")).write(sub.job.id, "shot.png", shot)
        return sub.job.id

    job_id = asyncio.run(fill())
    assert main(["migrate", "--from", str(db), "--to", pg_url]) == 0
    printed = capsys.readouterr().out
    assert f"file bytes: 1 files, {len(shot)} bytes moved into the database" in printed
    assert f"1 files missing from the folder (they will answer 404): {job_id}/gone.pdf" in printed

    # a node on PostgreSQL with no files_dir, and no access to the old folder
    with ServerThread(make_config(tmp_path / "node", store={"url": pg_url})) as server:
        served = server.http.get(f"/v1/files/{job_id}/shot.png")
        assert served.status == 200 and served.body == shot and served.headers["content-type"] == "image/png"
        assert server.http.get(f"/v1/files/{job_id}/gone.pdf").status == 404
