"""Benchmark the engine on 127.0.0.1: durable submits/s, fetch jobs/s, pickup latency, server RSS (bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

# child_servers.py sits beside this file; run as a script, its folder is on sys.path
from child_servers import Child, serve_bare, serve_target

C = 64  # client concurrency in (a); [queue] concurrency and raw-loop concurrency in (b)
BATCH, PICKUPS = 500, 200
DELAY_S = 86_400  # (a): due tomorrow, so no worker fetches while submits are measured
NOISY_PCT = 50  # "others" past this (% of one core) in a phase: other work ran beside the bench
TERMINAL = ("completed", "partial", "failed", "cancelled")
Errors = collections.Counter[str]


def machine_busy_s() -> float:
    """CPU seconds used on the whole machine: user, nice, system, and steal by the hypervisor."""
    user, nice, system, *_, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def cpu_use(out: Results, label: str, **children: Child) -> Any:
    """Notes in `out` the CPU use (% of one core) over the block of `children`, of the bench, and of the
    rest: "others" is other processes (noise) plus the kernel's disk writeback (for the store's writes)."""
    wall, own, machine = time.monotonic(), time.process_time(), machine_busy_s()
    theirs = {k: c.cpu_s() for k, c in children.items()}
    yield
    wall_s = time.monotonic() - wall
    use = {k: c.cpu_s() - theirs[k] for k, c in children.items()} | {"bench": time.process_time() - own}
    use["others"] = max(0.0, machine_busy_s() - machine - sum(use.values()))
    out.cpu.append(f"{label}: " + ", ".join(f"{k} {100 * v / wall_s:.0f}%" for k, v in use.items()))
    out.others[label] = 100 * use["others"] / wall_s


async def request(
    http: aiohttp.ClientSession, method: str, url: str, expect: int, errors: Errors, data: bytes | None = None
) -> bytes | None:
    """The body; or None, after counting the failure (another status, a connection error, a timeout)."""
    label = f"{method} /{url.split('/', 3)[-1].split('?')[0][:40]}"
    try:
        headers = {"Content-Type": "application/json"} if data else None
        async with http.request(method, url, data=data, headers=headers) as resp:
            body = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        errors[f"{label}: {type(exc).__name__}"] += 1
        return None
    if resp.status != expect:
        errors[f"{label}: HTTP {resp.status} {body[:120]!r}"] += 1
        return None
    return body


def session(limit: int = C) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit), timeout=aiohttp.ClientTimeout(60))


async def rate(url: str, count: int, errors: Errors, data: bytes | None = None, warm_up: int = 0) -> float:
    """Requests/s for `count` requests (POST with `data`, else GET) kept C at a time, after `warm_up` more."""
    method, expect, done = ("POST", 202, 0) if data else ("GET", 200, 0)
    async with session() as http:

        async def lane(until: int, deadline: float) -> None:
            nonlocal done
            while done < until and time.monotonic() < deadline:
                done += 1
                body = await request(http, method, url, expect, errors, data)
                if body is not None and not data and len(body) < 9000:
                    errors[f"GET {url}: short body"] += 1

        await asyncio.gather(*(lane(warm_up, time.monotonic() + 60) for _ in range(C)))
        done, start = 0, time.perf_counter()
        await asyncio.gather(*(lane(count, time.monotonic() + 300) for _ in range(C)))
        return done / (time.perf_counter() - start)


async def end_to_end(server: Child, page_url: str, n: int, output: str, errors: Errors) -> tuple[float, float]:
    """Jobs/s from the first submit until GET /v1/stats counts all n terminal; and the server's peak RSS."""
    peak_mib = server.rss_mib()

    async def sample_rss() -> None:
        nonlocal peak_mib
        for _ in range(10_000):  # bounded; cancelled when the run ends
            peak_mib = max(peak_mib, server.rss_mib())
            await asyncio.sleep(0.2)

    job = {"kind": "fetch", "input": {"url": page_url, "output": [output]}}
    counts: dict[str, int] = {}
    sampler = asyncio.create_task(sample_rss())
    accepted, failed_polls = 0, 0
    async with session(4) as http:
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            size = min(BATCH, n - first)
            batch = json.dumps({"jobs": [job] * size}).encode()
            if await request(http, "POST", f"{server.base_url}/v1/jobs/batch", 202, errors, batch):
                accepted += size
        for _ in range(12_000):  # bounded: 600 s at 50 ms, or 20 failed polls
            raw = await request(http, "GET", f"{server.base_url}/v1/stats", 200, errors)
            counts = json.loads(raw)["counts"] if raw else counts
            failed_polls += raw is None
            if sum(counts.get(s, 0) for s in TERMINAL) >= accepted or failed_polls > 20:
                break
            await asyncio.sleep(0.05)
        else:
            errors[f"({output}) not all jobs terminal after 600 s: {counts}"] += 1
        elapsed_s = time.perf_counter() - start
    sampler.cancel()
    for state in ("failed", "partial", "cancelled"):
        if counts.get(state):
            errors[f"({output}) jobs ended {state}"] += counts[state]
    return accepted / elapsed_s, peak_mib


async def pickup_latency(server: Child, page_url: str, errors: Errors) -> list[int]:
    """started_at - created_at (server clock, ms) of PICKUPS jobs submitted one at a time to an idle server."""
    body = json.dumps({"kind": "fetch", "input": {"url": page_url, "output": ["html"]}}).encode()
    latencies: list[int] = []
    async with session(2) as http:
        for _ in range(PICKUPS):
            raw = await request(http, "POST", f"{server.base_url}/v1/jobs", 202, errors, body)
            job = json.loads(raw) if raw else {"status": "not submitted"}
            for _ in range(6):  # each waits at most 10 s
                if job["status"] in TERMINAL or "job_id" not in job:
                    break
                raw = await request(http, "GET", f"{server.base_url}/v1/jobs/{job['job_id']}?wait=10", 200, errors)
                job = json.loads(raw) if raw else {"status": "unreadable"}
            if job["status"] != "completed":
                errors[f"(c) job ended {job['status']}"] += 1
                continue
            waited = datetime.fromisoformat(job["started_at"]) - datetime.fromisoformat(job["created_at"])
            latencies.append(round(waited / timedelta(milliseconds=1)))
            await asyncio.sleep(0.01)  # let the finished job's bookkeeping settle: the server is idle again
    return latencies


def percentile(values: list[int], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)] if ordered else math.nan


@dataclass
class Results:
    bare_submits: float = 0.0
    submits: float = 0.0
    raw_pages: float = 0.0
    jobs: dict[str, float] = field(default_factory=dict)
    peak_mib: dict[str, float] = field(default_factory=dict)
    idle_mib: float = math.nan
    pickups: list[int] = field(default_factory=list)
    errors: Errors = field(default_factory=collections.Counter)
    cpu: list[str] = field(default_factory=list)
    others: dict[str, float] = field(default_factory=dict)


async def measure(n: int, tmp: Path, children: list[Child]) -> Results:
    out = Results()

    def spawn(name: str, *args: str, env: dict[str, str] | None = None) -> Child:
        children.append(Child(name, list(args), tmp, env))
        return children[-1]

    def litejobs(name: str) -> Child:
        env = {"LITEJOBS_QUEUE_CONCURRENCY": str(C)}
        return spawn(name, "-m", "litejobs", "serve", "--port", "0", "--db", str(tmp / f"{name}.db"), env=env)

    target = spawn("target", __file__, "--serve-target")
    page_url = f"{target.base_url}/page"
    submit = json.dumps({"kind": "fetch", "input": {"url": page_url, "output": ["html"]}, "delay_s": DELAY_S})
    bare = spawn("bare", __file__, "--serve-bare")
    with cpu_use(out, "(a) bare", server=bare):
        out.bare_submits = await rate(f"{bare.base_url}/submit", 2 * n, out.errors, submit.encode(), warm_up=500)
    bare.stop()
    server = litejobs("a")
    with cpu_use(out, "(a) litejobs", server=server):
        out.submits = await rate(f"{server.base_url}/v1/jobs", 2 * n, out.errors, submit.encode(), warm_up=500)
    server.stop()

    with cpu_use(out, "(b) raw aiohttp", target=target):
        out.raw_pages = await rate(page_url, n, out.errors)
    for output in ("html", "markdown"):
        server = litejobs(f"b-{output}")
        await asyncio.sleep(1.0)
        out.idle_mib = server.rss_mib() if output == "html" else out.idle_mib
        with cpu_use(out, f"(b) litejobs {output}", server=server, target=target):
            out.jobs[output], out.peak_mib[output] = await end_to_end(server, page_url, n, output, out.errors)
        server.stop()

    server = litejobs("c")
    with cpu_use(out, "(c)", server=server, target=target):
        out.pickups = await pickup_latency(server, page_url, out.errors)
    server.stop()
    return out


def report(r: Results, n: int) -> int:
    def verdict(ratio: float, target: float, at_most: bool = False) -> str:
        ok = ratio <= target if at_most else ratio >= target
        return f"{'≤' if at_most else '≥'} {target:g} {'ok' if ok else '**MISSED**'}"

    p50, p99 = percentile(r.pickups, 0.5), percentile(r.pickups, 0.99)
    submits, html, markdown = r.submits / r.bare_submits, r.jobs["html"] / r.raw_pages, r.jobs["markdown"] / r.raw_pages
    rows = [
        (f"(a) durable submits/s, POST /v1/jobs, client C={C}, {2 * n} submits", f"{r.submits:.0f}",
         f"{r.bare_submits:.0f} bare Starlette POST", f"{submits:.2f}", verdict(submits, 0.8)),
        (f"(b) fetch jobs/s, N={n}, output html, [queue] concurrency={C}", f"{r.jobs['html']:.0f}",
         f"{r.raw_pages:.0f} raw aiohttp pages/s", f"{html:.2f}", verdict(html, 0.6)),
        (f"(b) fetch jobs/s, N={n}, output markdown, [queue] concurrency={C}", f"{r.jobs['markdown']:.0f}",
         f"{r.raw_pages:.0f} raw aiohttp pages/s", f"{markdown:.2f}", ""),
        (f"(c) pickup latency p50, ms ({len(r.pickups)} jobs)", f"{p50:.0f}", "", "", verdict(p50, 2, at_most=True)),
        ("(c) pickup latency p99, ms", f"{p99:.0f}", "", "", verdict(p99, 10, at_most=True)),
        ("(d) server RSS idle after start, MiB", f"{r.idle_mib:.1f}", "", "", ""),
        ("(d) server RSS peak during (b) html / markdown, MiB",
         f"{r.peak_mib['html']:.1f} / {r.peak_mib['markdown']:.1f}", "", "", ""),
    ]  # fmt: skip
    print("\n| measure | litejobs | baseline | ratio | target |\n| --- | ---: | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nCommand: `{shlex.join([sys.executable, *sys.argv])}`")
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; `litejobs serve` on uvloop, the bench, the bare"
        " endpoint and the target on asyncio's default loop."
    )
    print("(c) is started_at - created_at from the API's timestamps: server clock, millisecond resolution.")
    print("CPU use, % of one core: " + "; ".join(r.cpu))
    noisy = [f"{label} {pct:.0f}%" for label, pct in r.others.items() if pct > NOISY_PCT]
    if noisy:
        print(f"\nWARNING: the machine was busy with other work ({', '.join(noisy)}): the figures are noisy; rerun")
    if r.errors:
        print(f"\n!!!!! {sum(r.errors.values())} ERRORS: THESE RESULTS ARE NOT VALID !!!!!")
        for what, count in r.errors.most_common(20):
            print(f"  {count:6d} × {what}")
        return 1
    print("\nNo errors: every response had the expected status and every job completed.")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000, help="N for (b); (a) sends 2N submits to each server")
    parser.add_argument("--quick", action="store_true", help="N=500: a smoke run in under a minute")
    parser.add_argument("--serve-target", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--durable-db", help=argparse.SUPPRESS)  # with --serve-bare: store each submit
    parser.add_argument("--least-db", help=argparse.SUPPRESS)  # the same through least_store.LeastStore
    args = parser.parse_args()
    if args.serve_target or args.serve_bare:
        asyncio.run(serve_target() if args.serve_target else serve_bare(args.durable_db, args.least_db))
        return 0
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="litejobs-bench-") as tmp:
        try:
            n = 500 if args.quick else args.jobs
            results = asyncio.run(measure(n, Path(tmp), children))
        finally:
            for child in children:
                child.stop()
    return report(results, n)


if __name__ == "__main__":
    sys.exit(main())
