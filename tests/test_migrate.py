"""Migrations: `litejobs migrate` moves a SQLite database into PostgreSQL whole, and the queue goes on
there; a database on an older schema is brought up to date when a store opens it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from litejobs.cli import main
from litejobs.files import DirectoryFiles
from litejobs.jobs import JobResult, JobSpec, JobState
from litejobs.store import StoredFile, open_store, postgres_schema, schema
from litejobs.store.postgres import PostgresStore
from litejobs.store.sqlite import SqliteStore
from litejobs.store.sqlite_rows import statements_of
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


def test_migrate_copies_the_attempts_of_every_run(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "old.db"

    async def fill() -> str:
        async with SqliteStore(db) as store:
            [sub] = await store.submit([spec(1)], T0, 100)
            await store.claim(1, "w", T0, 30_000)
            await store.fail(sub.job.id, "w", {"code": "timeout", "message": "slow"}, None, T0 + 1, T0 + 10**9)
            await store.retry(sub.job.id, T0 + 2, 100)
            await store.claim(1, "w", T0 + 3, 30_000)
            await store.finish(sub.job.id, "w", JobResult(JobState.COMPLETED), T0 + 4, T0 + 10**9)
            return sub.job.id

    job_id = asyncio.run(fill())
    assert main(["migrate", "--from", str(db), "--to", pg_url]) == 0

    async def attempts() -> list[tuple[int, int, int, str | None]]:
        async with PostgresStore(pg_url) as store:
            return [(a.run, a.number, a.started_at, a.outcome) for a in await store.attempts(job_id)]

    assert asyncio.run(attempts()) == [(1, 1, T0, "failed"), (2, 1, T0 + 3, "completed")]


# --- schema upgrades ---------------------------------------------------------------------------

#: jobs as a database from before attempt runs (schema 3) holds them: one failed after two
#: attempts; one retried back then, whose first run's attempt 2 the retry's attempt 1 did not
#: overwrite, and which now waits for its attempt 2
OLD_JOBS = [
    ("job_failed", "failed", 2, [(1, T0, T0 + 1, "retry"), (2, T0 + 2, T0 + 3, "failed")]),
    ("job_retried", "waiting", 1, [(1, T0 + 10, T0 + 11, "retry"), (2, T0 + 2, T0 + 3, "failed")]),
]
JOB_INSERT = (
    "INSERT INTO jobs (id, kind, owner, status, run_at, input, meta, attempts, max_attempts, timeout_s, "
    "created_at, updated_at, started_at) VALUES ({})"
)
ATTEMPT_INSERT = "INSERT INTO attempts (job_id, number, started_at, ended_at, outcome) VALUES ({})"


def old_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    jobs = [(id_, "fetch", "o", status, T0, '{"url":"http://127.0.0.1/"}', "{}", attempts, 3, 30.0, T0, T0, T0)
            for id_, status, attempts, _ in OLD_JOBS]  # fmt: skip
    attempts = [(id_, *attempt) for id_, _, _, rows in OLD_JOBS for attempt in rows]
    return jobs, attempts


def make_sqlite_at_schema_3(path: Path) -> None:
    conn = sqlite3.connect(path)
    for script in schema.MIGRATIONS[:3]:
        for statement in statements_of(script):
            conn.execute(statement)
    jobs, attempts = old_rows()
    conn.executemany(JOB_INSERT.format(", ".join("?" * 13)), jobs)
    conn.executemany(ATTEMPT_INSERT.format(", ".join("?" * 5)), attempts)
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()


async def make_postgres_at_schema_3(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE litejobs_schema (version INTEGER NOT NULL)")
        await conn.execute("INSERT INTO litejobs_schema (version) VALUES (3)")
        for script in postgres_schema.MIGRATIONS[:3]:
            await conn.execute(script)
        jobs, attempts = old_rows()
        await conn.executemany(JOB_INSERT.format(", ".join(f"${n}" for n in range(1, 14))), jobs)
        await conn.executemany(ATTEMPT_INSERT.format(", ".join(f"${n}" for n in range(1, 6))), attempts)
    finally:
        await conn.close()


def test_attempts_from_before_runs_become_run_1_and_a_retry_adds_run_2(tmp_path: Path, store_url: str) -> None:
    config = make_config(tmp_path, store={"url": store_url})
    if store_url:
        asyncio.run(make_postgres_at_schema_3(store_url))
    else:
        make_sqlite_at_schema_3(Path(config.store.path))

    async def upgrade_then_run() -> dict[str, list[tuple[int, int, int, str | None]]]:
        async with open_store(config.store) as store:
            await store.retry("job_failed", T0 + 100, 100)
            # job_retried's attempt 2 lands on the stale row; the claim must not fail on it
            claimed = await store.claim(10, "w", T0 + 101, 30_000)
            assert sorted(job.id for job in claimed) == ["job_failed", "job_retried"]
            for job in claimed:
                await store.finish(job.id, "w", JobResult(JobState.COMPLETED), T0 + 102, T0 + 10**9)
            return {
                id_: [(a.run, a.number, a.started_at, a.outcome) for a in await store.attempts(id_)]
                for id_ in ("job_failed", "job_retried")
            }

    assert asyncio.run(upgrade_then_run()) == {
        "job_failed": [(1, 1, T0, "retry"), (1, 2, T0 + 2, "failed"), (2, 1, T0 + 101, "completed")],
        "job_retried": [(1, 1, T0 + 10, "retry"), (1, 2, T0 + 101, "completed")],
    }
