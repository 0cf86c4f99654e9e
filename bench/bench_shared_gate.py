"""Benchmark the shared per-host gate on PostgreSQL: a crawl with `[crawl] shared_gate` false vs true (bench/README.md).

One throwaway PostgreSQL (tests/pg.py) with pg_stat_statements loaded, bench_crawl.py's generated site in its
own process, and one `litejobs serve` node per run on a fresh database, everything on 127.0.0.1. Each run crawls
the whole site with `per_host_concurrency` requests in flight and reports pages/s (the job's own elapsed time),
statements per page, and the share of them that were the gate's (statements on host_leases / host_gates).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_crawl import call  # noqa: E402
from bench_engine import Child  # noqa: E402

from tests.pg import START_TIMEOUT_S, PostgresServer, _bindir  # noqa: E402

TERMINAL = ("completed", "partial", "failed", "cancelled")
CRAWL_TIMEOUT_S = 600
#: the gate's own statements are the ones on its two tables (litejobs/store/postgres_hosts.py)
GATE_TABLES = ("host_leases", "host_gates")


@dataclass(frozen=True)
class Run:
    shared_gate: bool
    pages: int
    seconds: float
    statements: int
    gate_statements: int
    #: CPU seconds of the node's process, and of PostgreSQL's, over the crawl: unlike pages/s, these
    #: hardly move when other work shares the CPUs
    node_cpu_s: float
    postgres_cpu_s: float

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds

    def per_page(self, total: float) -> float:
        return total / self.pages


def start_postgres() -> PostgresServer:
    """The tests' throwaway server, restarted once with pg_stat_statements preloaded (it counts every
    statement of every database; a preload library cannot be added without a restart)."""
    bindir = _bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (make postgresql)")
    server = PostgresServer(bindir)
    server.start()
    try:
        admin(server, "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        # pg_ctl restart keeps the options of the first start (postmaster.opts): loopback, fsync off; the
        # log file keeps the server off our pipes (else run() waits for their end as long as it lives)
        restart = [
            *server._as, str(bindir / "pg_ctl"), "-D", str(server.data), "-l", str(server.root / "log"),
            "-m", "fast", "-w", "-t", str(START_TIMEOUT_S), "restart",
        ]  # fmt: skip
        subprocess.run(restart, check=True, capture_output=True, timeout=START_TIMEOUT_S + 10)
        admin(server, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    except BaseException:
        server.stop()
        raise
    return server


def admin(server: PostgresServer, sql: str) -> list[dict[str, Any]]:
    """One statement on the `postgres` database, where the bench keeps pg_stat_statements (so that the
    databases the nodes use hold only litejobs' own tables)."""
    import asyncpg

    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(server.admin_url)
        try:
            return [dict(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(run())


def statement_counts(server: PostgresServer, database: str) -> tuple[int, int]:
    """(all statements, the gate's) run on `database` since the last reset."""
    rows = admin(
        server,
        "SELECT s.query, s.calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        f"WHERE d.datname = '{database}'",
    )
    total = sum(r["calls"] for r in rows)
    gate = sum(r["calls"] for r in rows if any(table in r["query"] for table in GATE_TABLES))
    return total, gate


def postgres_cpu_s(server: PostgresServer) -> float:
    """CPU seconds used so far by the postmaster and its live children (the node's backends among them:
    its pool keeps its connections for the whole run, so none ends between two readings)."""
    postmaster = (server.data / "postmaster.pid").read_text().split()[0]
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            pid_and_name, rest = stat.read_text().rsplit(")", 1)
            fields = rest.split()
            if fields[1] == postmaster or pid_and_name.split()[0] == postmaster:  # ppid, or the postmaster
                ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def generated_site(pages: int) -> Iterator[str]:
    """bench_crawl.py's site in a child process that dies with the bench; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bench_crawl.py"), "--serve-site", str(pages)],
        stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: ctypes.CDLL(None).prctl(1, signal.SIGTERM),  # PR_SET_PDEATHSIG
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError("the generated site did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)


def crawl(base_url: str, site: str, pages: int) -> dict[str, Any]:
    """One crawl of the whole site; waits by long-poll, so the bench itself adds few statements."""
    body = {"url": site + "/", "max_pages": pages, "max_depth": 20, "output": ["metadata"]}
    job = call(base_url, "POST", "/v1/jobs", {"kind": "crawl", "input": body, "timeout_s": CRAWL_TIMEOUT_S})
    deadline = time.monotonic() + CRAWL_TIMEOUT_S + 60
    while job["status"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the crawl did not end: {job}")
        job = call(base_url, "GET", f"/v1/jobs/{job['job_id']}?wait=60")
    if job["status"] != "completed":
        raise RuntimeError(f"the crawl ended {job['status']}: {job.get('error')}")
    return call(base_url, "GET", f"/v1/jobs/{job['job_id']}/result?limit=1")


def measure(server: PostgresServer, site: str, shared_gate: bool, pages: int, concurrency: int, tmp: Path) -> Run:
    """A fresh database and node; statements are counted from just before the submit to the result."""
    url = server.new_database()
    database = url.rsplit("/", 1)[1]
    env = {
        "LITEJOBS_STORE_URL": url,
        "LITEJOBS_CRAWL_SHARED_GATE": str(shared_gate).lower(),
        "LITEJOBS_CRAWL_PER_HOST_CONCURRENCY": str(concurrency),
        "LITEJOBS_CRAWL_MAX_PAGES": str(max(pages, 10_000)),
    }
    db = tmp / f"{database}.db"  # unused: the store is PostgreSQL
    node = Child(f"node-{database}", ["-m", "litejobs", "serve", "--port", "0", "--db", str(db)], tmp, env=env)
    try:
        admin(server, "SELECT pg_stat_statements_reset()")
        node_cpu_s, pg_cpu_s = node.cpu_s(), postgres_cpu_s(server)
        result = crawl(node.base_url, site, pages)
        node_cpu_s, pg_cpu_s = node.cpu_s() - node_cpu_s, postgres_cpu_s(server) - pg_cpu_s
        total, gate = statement_counts(server, database)
    finally:
        node.stop()
    crawled = result["outputs"]["pages_crawled"]
    if crawled != pages:
        raise RuntimeError(f"crawled {crawled} pages of {pages}")
    return Run(shared_gate, crawled, result["stats"]["elapsed_ms"] / 1000, total, gate, node_cpu_s, pg_cpu_s)


def report(runs: list[Run], args: argparse.Namespace, loads: list[tuple[float, float, float]]) -> None:
    print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(f"{args.pages} pages, per_host_concurrency {args.concurrency}, one node, {os.cpu_count()} CPUs; "
          f"load average (1/5/15 min) before {loads[0][0]:.2f} {loads[0][1]:.2f} {loads[0][2]:.2f}, "
          f"after {loads[1][0]:.2f} {loads[1][1]:.2f} {loads[1][2]:.2f}\n")  # fmt: skip
    print(
        "| run | shared_gate | pages/s | statements / page | gate statements / page | node CPU ms / page "
        "| PostgreSQL CPU ms / page |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for n, run in enumerate(runs, 1):
        print(
            f"| {n} | {str(run.shared_gate).lower()} | {run.pages_per_s:.0f} | {run.per_page(run.statements):.2f} "
            f"| {run.per_page(run.gate_statements):.2f} | {run.per_page(run.node_cpu_s) * 1000:.2f} "
            f"| {run.per_page(run.postgres_cpu_s) * 1000:.2f} |"
        )
    # each round is one pair: (per-node, shared) whatever order they ran in
    pairs = [sorted(pair, key=lambda run: run.shared_gate) for pair in zip(runs[::2], runs[1::2], strict=True)]
    measures = {
        "pages/s": lambda run: run.pages_per_s,
        "statements/page": lambda run: run.per_page(run.statements),
        "node CPU/page": lambda run: run.per_page(run.node_cpu_s),
        "PostgreSQL CPU/page": lambda run: run.per_page(run.postgres_cpu_s),
    }
    print(f"\nshared / per-node, median of {len(pairs)} pairs (each pair's ratio in brackets):")
    for name, value in measures.items():
        ratios = [value(shared) / value(per_node) for per_node, shared in pairs]
        print(f"- {name}: {statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=2000, help="the site's size, crawled whole by each run")
    parser.add_argument("--concurrency", type=int, default=8, help="[crawl] per_host_concurrency")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs, false and true")
    args = parser.parse_args()
    # a SIGTERM ends the bench through its finally blocks: the node, the site and PostgreSQL go too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    loads = [os.getloadavg()]
    runs: list[Run] = []
    server = start_postgres()
    try:
        with generated_site(args.pages) as site, tempfile.TemporaryDirectory(prefix="litejobs-bench-") as tmp:
            for round_ in range(args.rounds):
                # false, true, then true, false: a drift in the machine's load over the runs cancels out
                for shared_gate in (False, True) if round_ % 2 == 0 else (True, False):
                    runs.append(measure(server, site, shared_gate, args.pages, args.concurrency, Path(tmp)))
                    print(f"  run {len(runs)}: shared_gate={shared_gate} {runs[-1].pages_per_s:.0f} pages/s",
                          file=sys.stderr, flush=True)  # fmt: skip
    finally:
        server.stop()
    loads.append(os.getloadavg())
    report(runs, args, loads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
