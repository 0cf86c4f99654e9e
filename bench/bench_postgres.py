"""Benchmark the PostgreSQL store on 127.0.0.1: fetch jobs/s with one node and two, claim latency at depth,
next to the same figures for the SQLite store in the same run.

Starts a throwaway PostgreSQL (as the tests do, tests/pg.py), a target page in this process, and
`litejobs serve` nodes as child processes. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from litejobs.store import Store  # noqa: E402
from litejobs.store.postgres import PostgresStore  # noqa: E402
from litejobs.store.sqlite import SqliteStore  # noqa: E402
from tests.pg import PostgresServer, _bindir  # noqa: E402
from tests.support import ServerProcess, TargetSite  # noqa: E402

PAGE = "<html><body>" + "".join(f"<h2>Part {i}</h2><p>Words <a href='/i/{i}'>item</a>.</p>" for i in range(150))
BATCH = 500
LEASE_MS = 30_000


def fetch_rate(server: PostgresServer | None, site_url: str, nodes: int, jobs: int, concurrency: int) -> float:
    """Jobs/s from the first submit until every job is terminal, `nodes` servers on one database
    (a fresh PostgreSQL database, or with `server` None one SQLite file and one node)."""
    scratch = tempfile.TemporaryDirectory(prefix="litejobs-bench-")
    env = {"LITEJOBS_STORE_FILES_DIR": scratch.name, "LITEJOBS_QUEUE_CONCURRENCY": str(concurrency)}
    if server is not None:
        env["LITEJOBS_STORE_URL"] = server.new_database()
    procs = [ServerProcess(Path(scratch.name) / f"node-{i}.db", env=env) for i in range(nodes)]
    try:
        started = time.monotonic()
        for n, start in enumerate(range(0, jobs, BATCH)):
            body = {"jobs": [{"input": {"url": site_url, "output": ["html"]}} for _ in range(min(BATCH, jobs - start))]}
            assert procs[n % nodes].http.post("/v1/jobs/batch", body).status == 202
        deadline = started + 600
        while time.monotonic() < deadline:
            counts = procs[0].http.get("/v1/stats").json["counts"]
            if sum(counts[s] for s in ("completed", "partial", "failed", "cancelled")) >= jobs:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"jobs did not finish: {counts}")
        elapsed = time.monotonic() - started
        assert counts["completed"] == jobs, counts
        return jobs / elapsed
    finally:
        for proc in procs:
            proc.terminate()
        scratch.cleanup()


# rows written by SQL, not submit(): the figure measured is the claim, not the fill
_FILL_COLUMNS = (
    "id, kind, owner, status, priority, run_at, input, meta, max_attempts, timeout_s, created_at, updated_at"
)
_FILL_VALUES = "'fetch', 'o', 'waiting', g % 3, g, '{\"url\":\"http://127.0.0.1/\"}', '{}', 3, 60, g, g"


async def fill_postgres(store: PostgresStore, depth: int) -> None:
    async with store._pool.acquire() as conn:
        await conn.execute(
            f"INSERT INTO jobs ({_FILL_COLUMNS}) SELECT 'job_' || md5(g::text), {_FILL_VALUES} "
            "FROM generate_series(1, $1) AS g",
            depth,
        )
        await conn.execute("ANALYZE jobs")


def fill_sqlite(path: Path, depth: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"INSERT INTO jobs ({_FILL_COLUMNS}) WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n "
            f"WHERE g < ?) SELECT printf('job_%032x', g), {_FILL_VALUES} FROM n",
            (depth,),
        )
        conn.execute("ANALYZE")


async def claim_latency(url: str | None, depth: int, claims: int) -> tuple[float, float, float]:
    """(fill seconds, p50 ms, p99 ms) of claim(1) with `depth` waiting jobs: in the PostgreSQL database at
    `url`, or with `url` None in a new SQLite file."""
    scratch = tempfile.TemporaryDirectory(prefix="litejobs-bench-")
    path = Path(scratch.name) / "claims.db"
    if url is None:
        async with SqliteStore(path):
            pass  # creates the schema
    store: Store = PostgresStore(url) if url is not None else SqliteStore(path)
    filled_at = time.monotonic()
    if url is None:
        fill_sqlite(path, depth)
    async with store:
        if isinstance(store, PostgresStore):
            await fill_postgres(store, depth)
        fill_s = time.monotonic() - filled_at
        times = []
        for n in range(claims):
            begin = time.perf_counter()
            [job] = await store.claim(1, "bench", 10**12 + n, LEASE_MS)
            times.append((time.perf_counter() - begin) * 1000)
            assert job.status.value == "active"
    scratch.cleanup()
    times.sort()
    return fill_s, statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64, help="[queue] concurrency per node")
    parser.add_argument("--depth", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=1000)
    args = parser.parse_args()
    bindir = _bindir()
    if bindir is None:
        print("PostgreSQL is not installed (make postgresql)", file=sys.stderr)
        return 1
    server = PostgresServer(bindir)
    server.start()
    site = TargetSite()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    try:
        site_url = site.add("/page", page)
        rows = []
        for label, store_server, nodes in (("SQLite", None, 1), ("PostgreSQL", server, 1), ("PostgreSQL", server, 2)):
            rate = fetch_rate(store_server, site_url, nodes, args.jobs, args.concurrency)
            rows.append(f"| {label}: fetch jobs/s, output html, {nodes} node(s) × concurrency {args.concurrency} "
                        f"| {rate:.0f} |")  # fmt: skip
        for label, url in (("SQLite", None), ("PostgreSQL", server.new_database())):
            fill_s, p50, p99 = asyncio.run(claim_latency(url, args.depth, args.claims))
            rows.append(f"| {label}: claim(1) latency at depth {args.depth:,}, p50 / p99 (fill took {fill_s:.0f} s) "
                        f"| {p50:.2f} / {p99:.2f} ms |")  # fmt: skip
    finally:
        site.close()
        server.stop()
    print(f"command: {' '.join(sys.argv)}  jobs={args.jobs}\n\n| measure | result |\n| --- | ---: |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
