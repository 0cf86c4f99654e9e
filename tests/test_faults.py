"""Faults, end to end through the real API: two servers on one file, jobs that kill or hang their
worker, a full database, SIGKILL in a burst of submits. (Targets that misbehave: tests/test_hostile.py.)"""

from __future__ import annotations

import asyncio
import collections
import http.client
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from aiohttp import web

from litejobs.errors import StorageFull
from litejobs.jobs import JobSpec
from litejobs.store.sqlite import SqliteStore
from litejobs.store.writer import GroupWriter
from tests.support import FakeClock, ServerProcess, ServerThread, TargetSite, make_config, wait_until

TERMINAL = ("completed", "partial", "failed", "cancelled")
#: what a dead server looks like to a client
GONE = (OSError, http.client.HTTPException)


def db_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def html(text: str = "<p>ok</p>") -> web.Response:
    return web.Response(text=text, content_type="text/html")


# --- two servers, one file -------------------------------------------------------------------------


class CountingPage:
    """A target handler that counts, per URL (path and query), the hits and the requests in flight."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.hits: collections.Counter[str] = collections.Counter()
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()

    async def __call__(self, request: web.Request) -> web.Response:
        key = request.path_qs  # the site's loop runs every handler: no lock needed
        self.hits[key] += 1
        self.in_flight[key] += 1
        self.peak[key] = max(self.peak[key], self.in_flight[key])
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight[key] -= 1
        return html()


@pytest.mark.slow
def test_two_servers_on_one_file_share_the_queue_run_each_job_once_and_never_answer_5xx(
    tmp_path: Path, site: TargetSite
) -> None:
    page = CountingPage(delay_s=0.05)
    url = site.add("/count", page)
    db = tmp_path / "shared.db"
    env = {"LITEJOBS_QUEUE_CONCURRENCY": "8"}
    servers = [ServerProcess(db, env=env), ServerProcess(db, env=env)]
    statuses: list[int] = []
    read_statuses: list[int] = []
    accepted: list[str] = []
    done = threading.Event()

    def submit(n: int) -> None:
        resp = servers[n % 2].http.post("/v1/jobs", {"input": {"url": f"{url}?n={n}"}})
        statuses.append(resp.status)
        if resp.status == 202:
            accepted.append(resp.json["job_id"])

    def read(r: int) -> None:
        for i in range(2000):  # bounded; stops when the jobs are done
            if done.is_set():
                return
            server = servers[(r + i) % 2]
            if accepted and i % 3:  # a job accepted by either server, read from one of them
                read_statuses.append(server.http.get(f"/v1/jobs/{accepted[-1]}").status)
            else:
                statuses.append(server.http.get("/v1/jobs?limit=20" if i % 7 else "/v1/stats").status)

    try:
        with ThreadPoolExecutor(12) as pool:
            readers = [pool.submit(read, r) for r in range(4)]
            for future in [pool.submit(submit, n) for n in range(300)]:
                future.result()
            finished = wait_until(
                lambda: db_rows(db, "SELECT count(*) FROM jobs WHERE status = 'completed'")[0][0] == 300, 60
            )
            done.set()
            for future in readers:
                future.result()
        assert finished and len(accepted) == 300
        for job_id in accepted:  # either server answers for every job, whoever took it
            assert {s.http.get(f"/v1/jobs/{job_id}").json["status"] for s in servers} == {"completed"}
        owners = {row[0].split(":")[1] for row in db_rows(db, "SELECT lease_owner FROM jobs")}
    finally:
        codes = [s.terminate() for s in servers]
    assert all(status < 500 for status in statuses), collections.Counter(statuses)
    assert read_statuses and set(read_statuses) == {200}, collections.Counter(read_statuses)
    assert len(owners) == 2, "both processes ran jobs"
    assert len(page.hits) == 300 and set(page.hits.values()) == {1}
    assert max(page.peak.values()) == 1
    assert codes == [0, 0]
    logs = "".join(servers[0].output + servers[1].output)
    assert "locked" not in logs and "Traceback" not in logs


# --- jobs that kill or hang their worker ------------------------------------------------------------


@pytest.mark.slow
def test_a_job_that_kills_its_server_ends_poisoned_and_the_jobs_beside_it_complete(
    tmp_path: Path, site: TargetSite
) -> None:
    url = site.add_html("/p", "<p>fine</p>")
    db = tmp_path / "poison.db"
    env = {
        "LITEJOBS_KINDS_POISON": "tests.poison_plugin:poison",
        "LITEJOBS_QUEUE_MAX_RECOVERIES": "2",
        "LITEJOBS_QUEUE_CONCURRENCY": "4",
    }
    fetches = [{"input": {"url": f"{url}?n={n}"}, "delay_s": 0.3} for n in range(6)]
    # delayed a little, so that the 202 leaves before the first run kills the server
    batch = [*fetches[:3], {"kind": "poison", "input": {}, "delay_s": 0.3}, *fetches[3:]]
    first = ServerProcess(db, env=env)
    ids = [job["job_id"] for job in first.http.post("/v1/jobs/batch", {"jobs": batch}).json["jobs"]]
    poison_id = ids.pop(3)
    assert first.proc.wait(30) == -9
    first.kill()
    deaths, survivor = 1, None
    for _ in range(6):  # each start recovers the jobs of the dead one; a bounded number of them
        try:
            server = ServerProcess(db, env=env)
        except RuntimeError as exc:  # it died before it listened: of the poison, nothing else
            assert "Traceback" not in str(exc), exc
            deaths += 1
            continue
        try:
            job = server.http.wait(poison_id, timeout_s=20)
        except GONE:
            assert server.proc.wait(10) == -9, "".join(server.output)
            deaths += 1
            server.kill()
            continue
        survivor = server
        break
    assert survivor is not None
    try:
        assert deaths == 3, "".join(survivor.output)  # max_recoveries + 1
        assert job["status"] == "failed" and job["error"]["code"] == "poisoned"
        assert "died 3 times" in job["error"]["message"]
        assert [survivor.http.wait(job_id)["status"] for job_id in ids] == ["completed"] * 6
    finally:
        survivor.terminate()
    # after the first crash each job it shared ran alone: only the poison was charged again
    charged = dict(db_rows(db, "SELECT id, recoveries FROM jobs"))
    assert charged.pop(poison_id) == 3 and max(charged.values()) <= 1


def test_kinds_that_never_return_time_out_and_the_other_jobs_keep_moving(tmp_path: Path, site: TargetSite) -> None:
    kinds = {"never": "tests.poison_plugin:never_returns", "deaf": "tests.poison_plugin:deaf"}
    url = site.add_html("/p", "<p>fine</p>")
    with ServerThread(make_config(tmp_path, kinds=kinds, queue={"concurrency": 4})) as server:
        never = server.http.submit({}, kind="never", timeout_s=1, max_attempts=2)
        deaf = server.http.submit({}, kind="deaf", timeout_s=1, max_attempts=1)
        fetched = [server.http.submit({"url": f"{url}?n={n}"}) for n in range(10)]
        assert [server.http.wait(job["job_id"])["status"] for job in fetched] == ["completed"] * 10
        assert server.http.get(f"/v1/jobs/{never['job_id']}").json["status"] not in TERMINAL
        never_done = server.http.wait(never["job_id"])
        assert never_done["status"] == "failed" and never_done["attempts"] == 2
        assert never_done["error"]["code"] == "timeout"
        # a kind that swallows its cancellation is abandoned, and its slot and job with it
        deaf_done = server.http.wait(deaf["job_id"])
        assert deaf_done["status"] == "failed" and deaf_done["error"]["code"] == "timeout"
        assert wait_until(lambda: server.http.get("/v1/stats").json["workers"]["busy"] == 0, 5)
        assert server.http.wait(server.http.submit({"url": url})["job_id"])["status"] == "completed"


# --- a full database --------------------------------------------------------------------------------


def big_job(n: int) -> dict[str, Any]:
    return {"input": {"url": f"http://127.0.0.1:9/{n}"}, "delay_s": 3600, "meta": {"n": n, "pad": "x" * 15_000}}


def test_a_full_database_answers_507_keeps_reads_and_takes_jobs_again_once_space_returns(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path, store={"max_db_mb": 1, "retention_s": 60})
    db = Path(config.store.path)
    with ServerThread(config, clock=clock) as server:
        accepted, resp = [], None
        for n in range(200):
            resp = server.http.post("/v1/jobs", big_job(n))
            if resp.status != 202:
                break
            accepted.append(resp.json)
        assert resp is not None and resp.status == 507 and 10 < len(accepted) < 100
        assert resp.json["error"]["code"] == "storage_full" and "store.max_db_mb = 1" in resp.json["error"]["message"]
        assert server.http.post("/v1/jobs/batch", {"jobs": [big_job(n) for n in range(3)]}).status == 507
        for job in accepted:  # what was stored is intact and readable
            read = server.http.get(f"/v1/jobs/{job['job_id']}")
            assert read.status == 200 and read.json["meta"] == job["meta"]
        assert len(server.http.get("/v1/jobs?limit=1000").json["jobs"]) == len(accepted)
        assert server.http.get("/v1/stats").json["counts"]["delayed"] == len(accepted)
        assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]

        half = accepted[: len(accepted) // 2]
        assert {server.http.delete(f"/v1/jobs/{job['job_id']}").status for job in half} == {200}
        clock.advance(61)
        assert server.app is not None
        assert sorted(server.call(server.app.sweeper.sweep_once())) == sorted(job["job_id"] for job in half)
        assert server.http.post("/v1/jobs", big_job(999)).status == 202
        for job in accepted[len(half) :]:
            assert server.http.get(f"/v1/jobs/{job['job_id']}").json["meta"] == job["meta"]
    assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]


def test_a_full_database_of_delayed_jobs_runs_them_once_due_and_takes_jobs_again(
    tmp_path: Path, clock: FakeClock, site: TargetSite, caplog: pytest.LogCaptureFixture
) -> None:
    page = site.add_html("/page", "<p>hi</p>")
    config = make_config(tmp_path, store={"max_db_mb": 1, "retention_s": 60})
    with ServerThread(config, clock=clock) as server:
        accepted = []
        for n in range(200):
            resp = server.http.post("/v1/jobs", {**big_job(n), "input": {"url": page}})
            if resp.status != 202:
                break
            accepted.append(resp.json["job_id"])
        assert resp.status == 507 and len(accepted) > 10
        clock.advance(3601)  # every stored job is due at once: promoting them must not need room it lacks

        def queue_drained() -> bool:
            counts = server.http.get("/v1/stats").json["counts"]
            return bool(counts["delayed"] + counts["waiting"] + counts["active"] == 0)

        assert wait_until(queue_drained, 30), server.http.get("/v1/stats").json["counts"]
        assert {server.http.get(f"/v1/jobs/{job_id}").json["status"] for job_id in accepted} == {"completed"}
        clock.advance(61)
        assert server.app is not None
        assert len(server.call(server.app.sweeper.sweep_once())) == len(accepted)
        assert server.http.post("/v1/jobs", big_job(999)).status == 202
    assert not [r for r in caplog.records if r.getMessage().startswith("claim failed")]


def test_in_a_batch_the_op_that_finds_the_database_full_fails_alone_and_a_failed_commit_fails_all(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        # as SqliteStore opens its write connection: the writer runs batches on the loop's thread
        conn = await aiosqlite.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
        for sql in ("PRAGMA journal_mode = WAL", "PRAGMA foreign_keys = ON", "PRAGMA max_page_count = 64"):
            await (await conn.execute(sql)).close()
        await conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY, data BLOB)")
        await conn.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id REFERENCES parent(id))")
        writer = GroupWriter(conn, full_message="no room")
        writer.start()

        def insert(size: int) -> Callable[[sqlite3.Connection], int]:
            return lambda db: db.execute("INSERT INTO parent (data) VALUES (zeroblob(?))", (size,)).lastrowid or 0

        def orphan(db: sqlite3.Connection) -> None:
            db.execute("PRAGMA defer_foreign_keys = ON")  # the violation surfaces at COMMIT
            db.execute("INSERT INTO child (parent_id) VALUES (999999)")

        async def count() -> int:
            async with conn.execute("SELECT count(*) FROM parent") as cur:
                return (await cur.fetchone())[0]  # type: ignore[index]

        try:
            for _ in range(100):
                try:
                    await writer.run(insert(8000))
                except StorageFull:
                    break
            await writer.run(lambda db: db.execute("DELETE FROM parent WHERE id = 1"))
            batches = writer.batches
            small, huge, other = await asyncio.gather(
                writer.run(insert(10)), writer.run(insert(200_000)), writer.run(insert(10)), return_exceptions=True
            )
            assert writer.batches == batches + 1, "the three ops shared one batch"
            assert isinstance(huge, StorageFull) and huge.message == "no room"
            assert isinstance(small, int) and isinstance(other, int)
            async with conn.execute("SELECT count(*) FROM parent WHERE id IN (?, ?)", (small, other)) as cur:
                assert (await cur.fetchone()) == (2,)

            await writer.run(lambda db: db.execute("DELETE FROM parent WHERE id = 2"))  # room for what follows
            before = await count()
            outcomes = await asyncio.gather(writer.run(insert(10)), writer.run(orphan), return_exceptions=True)
            assert all(isinstance(o, sqlite3.IntegrityError) for o in outcomes), outcomes
            assert await count() == before
        finally:
            await writer.stop()
            await conn.close()

    asyncio.run(main())


def test_a_job_is_readable_as_soon_as_its_submit_returns_while_many_requests_overlap(tmp_path: Path) -> None:
    async def main() -> list[str]:
        unseen: list[str] = []
        async with SqliteStore(tmp_path / "ryw.db") as store:

            async def lane() -> None:
                for _ in range(40):
                    spec = JobSpec(kind="fetch", input={"url": "http://127.0.0.1:9/"}, owner="o", delay_s=3600)
                    [submitted] = await store.submit([spec], time.time_ns() // 1_000_000, 10**6)
                    if await store.get(submitted.job.id) is None:
                        unseen.append(submitted.job.id)

            await asyncio.gather(*(lane() for _ in range(32)))
        return unseen

    assert asyncio.run(main()) == []


# --- SIGKILL in a burst of submits --------------------------------------------------------------------


@pytest.mark.slow
def test_every_202_survives_a_sigkill_mid_burst_and_no_idempotency_key_is_stored_twice(
    tmp_path: Path, site: TargetSite
) -> None:
    url = site.add_html("/p", "<p>fine</p>")
    db = tmp_path / "burst.db"
    server = ServerProcess(db, env={"LITEJOBS_QUEUE_CONCURRENCY": "4"})
    accepted: dict[str, str] = {}
    sent: list[str] = []
    refused: list[tuple[int, bytes]] = []

    def body(key: str) -> dict[str, Any]:
        return {"input": {"url": f"{url}?k={key}"}, "meta": {"key": key}}

    def client(t: int) -> None:
        for n in range(500):
            key = f"burst-{t}-{n}"
            sent.append(key)
            try:
                resp = server.http.post("/v1/jobs", body(key), headers={"Idempotency-Key": key})
            except GONE:
                return
            if resp.status != 202:
                refused.append((resp.status, resp.body))
                return
            accepted[key] = resp.json["job_id"]

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(6)]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: len(accepted) >= 200, 30, 0.005)
    server.kill()
    for thread in threads:
        thread.join(30)
    assert refused == []
    stored = dict(db_rows(db, "SELECT idempotency_key, id FROM jobs"))
    assert len(db_rows(db, "SELECT id FROM jobs")) == len(stored), "a key stored twice"
    assert all(stored.get(key) == job_id for key, job_id in accepted.items()), "a 202 was lost"
    assert set(stored) <= set(sent) and len(accepted) < len(sent) <= len(stored) + 6

    restarted = ServerProcess(db)
    try:  # a client that never heard back retries with the same key: one job per key, whatever it sees
        for key in sent:
            resp = restarted.http.post("/v1/jobs", body(key), headers={"Idempotency-Key": key})
            assert resp.status == (200 if key in stored else 202)
            assert resp.json["job_id"] == stored.get(key, resp.json["job_id"])
        assert wait_until(lambda: restarted.http.get("/v1/stats").json["counts"]["completed"] == len(sent), 60)
    finally:
        restarted.terminate()
    assert len(db_rows(db, "SELECT DISTINCT idempotency_key FROM jobs")) == len(sent)
    assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
