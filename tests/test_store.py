"""The store contract, run against both stores (a real SQLite file, a throwaway PostgreSQL): every
move guarded, nothing claimed twice, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from litejobs.errors import IdempotencyConflict, JobFinished, QueueFull
from litejobs.jobs import JobResult, JobSpec, JobState
from litejobs.store import Store, StoreUnavailable
from litejobs.store.postgres import PostgresStore
from litejobs.store.sqlite import SqliteStore

T0 = 1_800_000_000_000
LEASE = 30_000


def spec(url: str = "http://127.0.0.1/a", **kw: Any) -> JobSpec:
    return JobSpec(kind="fetch", input={"url": url}, owner=kw.pop("owner", "o"), **kw)


StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Opens a new store on one database per test: each call is another process on the same data."""
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "s.db")
    url = request.getfixturevalue("pg_url")
    return lambda: PostgresStore(url)


def run(store_factory: StoreFactory, body: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        async with store_factory() as store:
            await body(store)

    asyncio.run(main())


def test_submitted_jobs_are_waiting_and_readable(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        [sub] = await store.submit([spec(meta={"a": 1})], T0, 100)
        job = await store.get(sub.job.id)
        assert job is not None and job.status == JobState.WAITING
        assert job.meta == {"a": 1} and job.attempts == 0 and job.created_at == T0

    run(store_factory, body)


def test_claims_take_best_priority_then_oldest(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        low = await store.submit([spec("http://x/low", priority=-1)], T0, 100)
        first = await store.submit([spec("http://x/first")], T0 + 1, 100)
        second = await store.submit([spec("http://x/second")], T0 + 2, 100)
        high = await store.submit([spec("http://x/high", priority=5)], T0 + 3, 100)
        claimed = await store.claim(10, "w", T0 + 10, LEASE)
        ids = [j.id for j in claimed]
        assert ids == [high[0].job.id, first[0].job.id, second[0].job.id, low[0].job.id]
        assert all(j.status == JobState.ACTIVE and j.attempts == 1 for j in claimed)
        assert await store.claim(10, "w", T0 + 10, LEASE) == []

    run(store_factory, body)


def test_delayed_jobs_wait_for_their_time(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        [sub] = await store.submit([spec(delay_s=5)], T0, 100)
        assert sub.job.status == JobState.DELAYED
        assert await store.next_run_at() == T0 + 5000
        assert await store.claim(1, "w", T0 + 4999, LEASE) == []
        [job] = await store.claim(1, "w", T0 + 5000, LEASE)
        assert job.id == sub.job.id

    run(store_factory, body)


def test_idempotency_replays_same_body_and_refuses_another(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        [a] = await store.submit([spec(idempotency_key="k", request_hash="h1")], T0, 100)
        [b] = await store.submit([spec(idempotency_key="k", request_hash="h1")], T0, 100)
        assert b.replayed and b.job.id == a.job.id
        with pytest.raises(IdempotencyConflict):
            await store.submit([spec(idempotency_key="k", request_hash="h2")], T0, 100)
        # keys are per owner
        [c] = await store.submit([spec(idempotency_key="k", request_hash="h2", owner="other")], T0, 100)
        assert not c.replayed

    run(store_factory, body)


def test_queue_full_refuses_the_whole_batch(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        await store.submit([spec(), spec()], T0, 3)
        with pytest.raises(QueueFull):
            await store.submit([spec(), spec()], T0, 3)
        jobs, _ = await store.list_jobs("o", None, None, 100, None)
        assert len(jobs) == 2

    run(store_factory, body)


def test_finish_needs_the_lease_owner_and_an_active_job(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        await store.submit([spec()], T0, 100)
        [job] = await store.claim(1, "w1", T0, LEASE)
        result = JobResult(JobState.COMPLETED, {"markdown": "# hi"}, {"bytes": 3})
        assert not await store.finish(job.id, "w2", result, T0, T0 + 1000)
        assert await store.finish(job.id, "w1", result, T0 + 5, T0 + 1000)
        assert not await store.finish(job.id, "w1", result, T0 + 6, T0 + 1000)
        done = await store.get(job.id)
        assert done is not None and done.status == JobState.COMPLETED and done.expires_at == T0 + 1000
        stored = await store.get_result(job.id)
        assert stored is not None and stored.outputs == {"markdown": "# hi"}
        [attempt] = await store.attempts(job.id)
        assert attempt.outcome == "completed" and attempt.ended_at == T0 + 5

    run(store_factory, body)


def test_failures_go_through_delayed_then_fail(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        await store.submit([spec(max_attempts=2)], T0, 100)
        [job] = await store.claim(1, "w", T0, LEASE)
        error = {"code": "network_error", "message": "refused"}
        assert await store.fail(job.id, "w", error, T0 + 100, T0, T0 + 9999)
        delayed = await store.get(job.id)
        assert delayed is not None and delayed.status == JobState.DELAYED and delayed.error == error
        [again] = await store.claim(1, "w", T0 + 100, LEASE)
        assert again.attempts == 2
        assert await store.fail(job.id, "w", error, None, T0 + 200, T0 + 9999)
        failed = await store.get(job.id)
        assert failed is not None and failed.status == JobState.FAILED and failed.expires_at == T0 + 9999
        assert [a.outcome for a in await store.attempts(job.id)] == ["retry", "failed"]

    run(store_factory, body)


def test_cancel_waiting_active_and_terminal(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        [a, b] = await store.submit([spec(), spec()], T0, 100)
        job, was = await store.cancel(a.job.id, T0, T0 + 10)
        assert job.status == JobState.CANCELLED and was == JobState.WAITING
        [active] = await store.claim(1, "w", T0, LEASE)
        assert active.id == b.job.id  # the cancelled job is never claimed
        job, was = await store.cancel(active.id, T0, T0 + 10)
        assert was == JobState.ACTIVE and job.status == JobState.CANCELLED
        # the worker's late outcome is refused: the cancel stands
        assert not await store.finish(active.id, "w", JobResult(JobState.COMPLETED), T0, T0)
        with pytest.raises(JobFinished):
            await store.cancel(active.id, T0, T0 + 10)
        retried = await store.retry(active.id, T0 + 1, 100)
        assert retried.status == JobState.WAITING and retried.attempts == 0 and retried.expires_at is None

    run(store_factory, body)


def test_expired_leases_are_recovered_then_poisoned(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        await store.submit([spec(max_attempts=10)], T0, 100)
        now = T0
        for round_ in range(1, 4):
            [job] = await store.claim(1, "dead", now, LEASE)
            assert (await store.recover_expired(now + LEASE - 1, 2, retention_ms=86_400_000)).requeued == []
            recovered = await store.recover_expired(now + LEASE + 1, 2, retention_ms=86_400_000)
            now += LEASE + 2
            if round_ < 3:
                assert recovered.requeued == [job.id]
            else:
                assert recovered.failed == [job.id]
        # the job as the recovery left it, for the sweeper to announce
        assert [(j.id, j.status) for j in recovered.jobs] == [(job.id, JobState.FAILED)]
        final = await store.get(job.id)
        assert final is not None and final.status == JobState.FAILED and final.error["code"] == "poisoned"

    run(store_factory, body)


def test_a_lost_job_on_its_last_attempt_fails_as_worker_lost(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        await store.submit([spec(max_attempts=1)], T0, 100)
        [job] = await store.claim(1, "dead", T0, LEASE)
        recovered = await store.recover_expired(T0, 5, dead_owners=["dead"], retention_ms=86_400_000)
        assert recovered.failed == [job.id]
        # the job as the recovery left it, for the sweeper to announce
        assert [(j.id, j.status) for j in recovered.jobs] == [(job.id, JobState.FAILED)]
        final = await store.get(job.id)
        assert final is not None and final.error["code"] == "worker_lost"
        # kept for its retention like any ended job, not deleted by the next sweep
        assert final.completed_at == T0 and final.expires_at == T0 + 86_400_000
        assert await store.sweep_expired(T0 + 1000, 100) == []
        assert await store.get(job.id) is not None

    run(store_factory, body)


def test_heartbeat_extends_leases_and_reports_cancelled_jobs(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        await store.submit([spec(), spec()], T0, 100)
        a, b = await store.claim(2, "w", T0, LEASE)
        await store.cancel(b.id, T0, T0)
        alive = await store.heartbeat([a.id, b.id], "w", T0 + 10 * LEASE)
        assert alive == {a.id}
        assert (await store.recover_expired(T0 + 2 * LEASE, 3, retention_ms=86_400_000)).requeued == []

    run(store_factory, body)


def test_release_hands_jobs_back_without_spending_an_attempt(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        await store.submit([spec()], T0, 100)
        [job] = await store.claim(1, "w", T0, LEASE)
        await store.release([job.id], "w", T0 + 1)
        back = await store.get(job.id)
        assert back is not None and back.status == JobState.WAITING and back.attempts == 0

    run(store_factory, body)


def test_sweep_deletes_only_expired_terminal_jobs(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        [a, b, c] = await store.submit([spec(), spec(), spec()], T0, 100)
        await store.cancel(a.job.id, T0, T0 + 1000)
        await store.cancel(b.job.id, T0, T0 + 5000)
        assert await store.sweep_expired(T0 + 999, 10) == []
        assert await store.sweep_expired(T0 + 1000, 10) == [a.job.id]
        assert await store.get(a.job.id) is None
        assert await store.get(c.job.id) is not None

    run(store_factory, body)


def test_list_is_newest_first_with_a_cursor_and_scoped_to_the_owner(store_factory: StoreFactory) -> None:
    async def body(store: Store) -> None:
        mine = [s.job.id for s in await store.submit([spec() for _ in range(5)], T0, 100)]
        await store.submit([spec(owner="someone-else")], T0, 100)
        page1, cursor = await store.list_jobs("o", None, None, 2, None)
        page2, cursor2 = await store.list_jobs("o", None, None, 2, cursor)
        page3, cursor3 = await store.list_jobs("o", None, None, 2, cursor2)
        assert [j.id for j in page1 + page2 + page3] == mine[::-1]
        assert cursor3 is None

    run(store_factory, body)


def test_two_stores_on_one_database_never_claim_the_same_job(store_factory: StoreFactory) -> None:
    async def main() -> None:
        async with store_factory() as one, store_factory() as two:
            await one.submit([spec() for _ in range(200)], T0, 1000)

            async def drain(store: Store, name: str) -> list[str]:
                got: list[str] = []
                for _ in range(200):
                    jobs = await store.claim(3, name, T0, LEASE)
                    if not jobs:
                        return got
                    got.extend(j.id for j in jobs)
                return got

            a, b = await asyncio.gather(drain(one, "a"), drain(two, "b"))
            assert len(a) + len(b) == 200
            assert not set(a) & set(b)

    asyncio.run(main())


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()

    async def main() -> None:
        async with SqliteStore(tmp_path / "s.db"):
            pass

    with pytest.raises(StoreUnavailable, match="newer"):
        asyncio.run(main())


def test_a_newer_postgres_schema_is_refused(pg_url: str) -> None:
    import asyncpg

    async def main() -> None:
        async with PostgresStore(pg_url):
            pass
        conn = await asyncpg.connect(pg_url)
        await conn.execute("UPDATE litejobs_schema SET version = 999")
        await conn.close()
        async with PostgresStore(pg_url):
            pass

    with pytest.raises(StoreUnavailable, match="newer"):
        asyncio.run(main())


def test_nodes_starting_together_migrate_once(pg_url: str) -> None:
    async def main() -> None:
        stores = [PostgresStore(pg_url) for _ in range(4)]
        await asyncio.gather(*(s.__aenter__() for s in stores))
        try:
            [sub] = await stores[0].submit([spec()], T0, 100)
            assert (await stores[3].get(sub.job.id)) is not None
        finally:
            await asyncio.gather(*(s.__aexit__(None, None, None) for s in stores))

    asyncio.run(main())


def test_one_idempotency_key_submitted_on_two_nodes_at_once_makes_one_job(pg_url: str) -> None:
    async def main() -> None:
        async with PostgresStore(pg_url) as one, PostgresStore(pg_url) as two:
            subs = await asyncio.gather(
                *(
                    store.submit([spec(idempotency_key=f"k{i}", request_hash="h")], T0, 1000)
                    for i in range(20)
                    for store in (one, two)
                )
            )
            by_key: dict[str, set[str]] = {}
            for [sub] in subs:
                by_key.setdefault(sub.job.id, set()).add(str(sub.replayed))
            assert len(by_key) == 20
            assert all(flags == {"True", "False"} for flags in by_key.values())

    asyncio.run(main())


def test_a_submit_on_one_node_wakes_the_other(pg_url: str) -> None:
    async def main() -> None:
        async with PostgresStore(pg_url) as one, PostgresStore(pg_url) as two:
            woken = asyncio.Event()
            two.on_work_available(woken.set)
            await one.submit([spec()], T0, 100)
            await asyncio.wait_for(woken.wait(), 5)

    asyncio.run(main())


def test_only_one_node_sweeps_at_a_time(pg_url: str) -> None:
    import asyncpg

    from litejobs.store.postgres_schema import SWEEP_LOCK

    async def main() -> None:
        async with PostgresStore(pg_url) as store:
            [a] = await store.submit([spec()], T0, 100)
            await store.cancel(a.job.id, T0, T0 + 1)
            other_node = await asyncpg.connect(pg_url)
            try:
                async with other_node.transaction():
                    await other_node.execute("SELECT pg_advisory_xact_lock($1)", SWEEP_LOCK)
                    assert await store.sweep_expired(T0 + 10, 10) == []
            finally:
                await other_node.close()
            assert await store.sweep_expired(T0 + 10, 10) == [a.job.id]

    asyncio.run(main())


def test_pages_saved_at_once_by_one_job_are_all_kept_in_order(store_factory: StoreFactory) -> None:
    """A crawl saves pages as its fetches finish, several at the same moment: none is lost or refused,
    each keeps its place, and paging reads them back whole."""

    async def body(store: Store) -> None:
        [sub] = await store.submit([spec()], T0, 100)
        batches = [[{"url": f"http://x/{b}/{i}", "n": b * 10 + i} for i in range(3)] for b in range(40)]
        await asyncio.gather(*(store.add_pages(sub.job.id, batch) for batch in batches))
        assert await store.page_count(sub.job.id) == 120
        pages = [*await store.pages(sub.job.id, 0, 70), *await store.pages(sub.job.id, 70, 70)]
        assert sorted(p["n"] for p in pages) == sorted(b * 10 + i for b in range(40) for i in range(3))
        for batch in batches:  # a batch's pages stay together, in their order
            at = [pages.index(page) for page in batch]
            assert at == list(range(at[0], at[0] + 3))
        assert await store.page_urls(sub.job.id) == [p["url"] for p in pages]

    run(store_factory, body)
