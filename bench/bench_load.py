"""Load and soak on 127.0.0.1: many jobs at once, the server's RSS and open files over time, API latency
under that load. Run from the repository root: `.venv/bin/python bench/bench_load.py [--soak 600]`.

Default: --jobs 10000 submitted one POST at a time, --concurrency 64 in flight, against a server with
--workers 16, each lane also reading one of the last 200 jobs (GET /v1/jobs/{id}) after every submit. Every
--sample-s the server's RSS, open fds and completed count are noted. With --soak SECONDS, instead: a steady
--rate of submits for that long, with a short retention so the sweeper deletes as fast as jobs come,
and RSS and open fds reported over time (a leak shows as a line that keeps rising).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

# bench_engine.py sits beside this file; run as a script, its folder is on sys.path
from bench_engine import TERMINAL, Child, Errors, request, session

ROOT = Path(__file__).resolve().parent.parent
MAX_ROWS = 24  # rows of the RSS table; samples are thinned evenly beyond that


@dataclass
class Sample:
    t_s: float
    rss_mib: float
    fds: int
    completed: int
    waiting: int


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    get_ms: list[float] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    errors: Errors = field(default_factory=collections.Counter)
    #: soak: jobs that ended in each status over the whole run
    ended: dict[str, int] = field(default_factory=dict)
    submit_s: float = math.nan
    total_s: float = math.nan


def open_fds(child: Child) -> int:
    try:
        return len(os.listdir(f"/proc/{child.proc.pid}/fd"))
    except OSError:
        return -1


async def stats(http: aiohttp.ClientSession, server: Child, errors: Errors) -> dict[str, int] | None:
    raw = await request(http, "GET", f"{server.base_url}/v1/stats", 200, errors)
    return json.loads(raw)["counts"] if raw else None


async def ended_by_status(http: aiohttp.ClientSession, server: Child, errors: Errors) -> dict[str, int]:
    """Jobs that reached each terminal status over the whole run (Prometheus counters; /v1/stats only
    counts the jobs the sweeper has not deleted yet)."""
    raw = await request(http, "GET", f"{server.base_url}/metrics", 200, errors)
    ended: dict[str, int] = collections.Counter()
    for line in (raw or b"").decode().splitlines():
        if line.startswith("litejobs_jobs_finished_total{"):
            labels, _, value = line.rpartition(" ")
            status = labels.split('status="')[1].split('"')[0]
            ended[status] += int(float(value))
    return dict(ended)


async def sample_forever(server: Child, run: Run, every_s: float, started: float) -> None:
    async with session(2) as http:
        for _ in range(10**6):  # bounded; cancelled when the run ends
            counts = await stats(http, server, run.errors) or run.counts
            run.counts = counts
            run.samples.append(
                Sample(
                    time.monotonic() - started,
                    server.rss_mib(),
                    open_fds(server),
                    counts.get("completed", 0),
                    counts.get("waiting", 0) + counts.get("delayed", 0) + counts.get("active", 0),
                )
            )
            await asyncio.sleep(every_s)


async def timed(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    expect: int,
    errors: Errors,
    into: list[float],
    data: bytes | None = None,
) -> bytes | None:
    began = time.perf_counter()
    body = await request(http, method, url, expect, errors, data)
    if body is not None:
        into.append((time.perf_counter() - began) * 1000)
    return body


async def lane(http: aiohttp.ClientSession, server: Child, body: bytes, run: Run, quota: list[int]) -> None:
    """Submit, then read back one of the jobs submitted so far, until the shared quota runs out."""
    for _ in range(10**6):  # bounded by the quota
        if quota[0] <= 0:
            return
        quota[0] -= 1
        raw = await timed(http, "POST", f"{server.base_url}/v1/jobs", 202, run.errors, run.post_ms, body)
        if raw:
            run.accepted.append(json.loads(raw)["job_id"])
        if run.accepted:  # a recent one: in a soak, older jobs are swept away
            job_id = random.choice(run.accepted[-200:])
            await timed(http, "GET", f"{server.base_url}/v1/jobs/{job_id}", 200, run.errors, run.get_ms)


async def wait_all_terminal(server: Child, run: Run, deadline_s: float, swept: bool = False) -> None:
    """Until no job is queued or running (and, unless the sweeper deletes them, all are counted)."""
    async with session(2) as http:
        for _ in range(int(deadline_s / 0.2)):  # bounded
            counts = await stats(http, server, run.errors)
            busy = counts is None or any(counts.get(s, 0) for s in ("waiting", "delayed", "active"))
            if (
                counts is not None
                and not busy
                and (swept or sum(counts.get(s, 0) for s in TERMINAL) >= len(run.accepted))
            ):
                run.counts = counts
                return
            await asyncio.sleep(0.2)
    run.errors[f"not every job was terminal after {deadline_s:.0f} s: {run.counts}"] += 1


async def burst(args: argparse.Namespace, server: Child, page_url: str) -> Run:
    run = Run()
    body = json.dumps({"kind": "fetch", "input": {"url": page_url, "output": ["markdown"]}}).encode()
    started = time.monotonic()
    sampler = asyncio.create_task(sample_forever(server, run, args.sample_s, started))
    quota = [args.jobs]
    async with session(args.concurrency) as http:
        await asyncio.gather(*(lane(http, server, body, run, quota) for _ in range(args.concurrency)))
    run.submit_s = time.monotonic() - started
    await wait_all_terminal(server, run, 900)
    run.total_s = time.monotonic() - started
    await asyncio.sleep(args.sample_s)  # one sample after the last job
    sampler.cancel()
    return run


async def soak(args: argparse.Namespace, server: Child, page_url: str) -> Run:
    run = Run()
    body = json.dumps({"kind": "fetch", "input": {"url": page_url, "output": ["markdown"]}}).encode()
    started = time.monotonic()
    sampler = asyncio.create_task(sample_forever(server, run, args.sample_s, started))
    async with session(args.concurrency) as http:
        tick, sent = 0.1, 0
        for step in range(int(args.soak / tick)):  # bounded: --soak seconds
            due = int((step + 1) * tick * args.rate) - sent
            quota = [due]
            sent += due
            await asyncio.gather(*(lane(http, server, body, run, quota) for _ in range(min(due, args.concurrency))))
            await asyncio.sleep(max(0.0, started + (step + 1) * tick - time.monotonic()))
    run.submit_s = time.monotonic() - started
    await wait_all_terminal(server, run, 300, swept=True)
    run.total_s = time.monotonic() - started
    sampler.cancel()
    async with session(2) as http:
        run.ended = await ended_by_status(http, server, run.errors)
    for status, count in run.ended.items():
        if status != "completed" and count:
            run.errors[f"{count} jobs ended {status} during the soak"] += count
    return run


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)] if ordered else math.nan


def thinned(samples: list[Sample]) -> list[Sample]:
    if len(samples) <= MAX_ROWS:
        return samples
    step = (len(samples) - 1) / (MAX_ROWS - 1)
    return [samples[round(i * step)] for i in range(MAX_ROWS)]


def report(args: argparse.Namespace, run: Run, idle_mib: float, idle_fds: int) -> int:
    what = f"soak {args.soak:g} s at {args.rate:g} submits/s" if args.soak else f"{args.jobs} jobs"
    print(f"\n## {what}, client concurrency {args.concurrency}, [queue] concurrency {args.workers}\n")
    print("| t (s) | RSS (MiB) | open fds | completed | queued + active |\n| ---: | ---: | ---: | ---: | ---: |")
    print(f"| start | {idle_mib:.1f} | {idle_fds} | 0 | 0 |")
    for s in thinned(run.samples):
        print(f"| {s.t_s:.1f} | {s.rss_mib:.1f} | {s.fds} | {s.completed} | {s.waiting} |")
    rss = [s.rss_mib for s in run.samples]
    print("\n| API under load | requests | p50 ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: | ---: |")
    for label, ms in (("POST /v1/jobs", run.post_ms), ("GET /v1/jobs/{id}", run.get_ms)):
        p50, p99, top = pct(ms, 0.5), pct(ms, 0.99), max(ms, default=math.nan)
        print(f"| {label} | {len(ms)} | {p50:.1f} | {p99:.1f} | {top:.1f} |")
    completed = run.counts.get("completed", 0)
    submitted = f"\nSubmitted {len(run.accepted)} in {run.submit_s:.1f} s ({len(run.accepted) / run.submit_s:.0f}/s); "
    if args.soak:
        print(submitted + f"none queued or running {run.total_s:.1f} s after the start. `completed` counts the jobs")
        print("still kept: the sweeper deletes them 20 s after they end.")
    else:
        print(submitted + f"all terminal after {run.total_s:.1f} s ({completed / run.total_s:.0f} completed/s).")
    print(f"Final counts: {run.counts}." + (f" Ended over the whole run: {run.ended}." if args.soak else ""))
    last = rss[-1] if rss else math.nan
    print(f"RSS: idle {idle_mib:.1f} MiB, peak {max(rss, default=math.nan):.1f} MiB, last {last:.1f} MiB.")
    print(f"Command: `{shlex.join([sys.executable, *sys.argv])}`")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}.")
    not_completed = {k: v for k, v in run.counts.items() if k != "completed" and v and not args.soak}
    if run.errors or not_completed:
        print(f"\n!!!!! ERRORS: {sum(run.errors.values())} failed requests, jobs not completed: {not_completed} !!!!!")
        for what_failed, count in run.errors.most_common(20):
            print(f"  {count:6d} × {what_failed}")
        return 1
    print("No errors: every response had the expected status" + ("." if args.soak else " and every job completed."))
    return 0


async def measure(args: argparse.Namespace, tmp: Path, children: list[Child]) -> int:
    # the target must outlive the soak (helper servers end by themselves after LITEJOBS_BENCH_CHILD_MAX_S)
    target_env = {"LITEJOBS_BENCH_CHILD_MAX_S": str(args.soak + 900)} if args.soak else None
    target = Child("target", [str(ROOT / "bench" / "bench_engine.py"), "--serve-target"], tmp, target_env)
    children.append(target)
    env = {"LITEJOBS_QUEUE_CONCURRENCY": str(args.workers)}
    if args.soak:  # jobs go as fast as they come: the sweeper deletes them, the table stays small
        env |= {"LITEJOBS_STORE_RETENTION_S": "20", "LITEJOBS_STORE_SWEEP_INTERVAL_S": "5"}
    server = Child("litejobs", ["-m", "litejobs", "serve", "--port", "0", "--db", str(tmp / "load.db")], tmp, env)
    children.append(server)
    await asyncio.sleep(1.0)
    idle_mib, idle_fds = server.rss_mib(), open_fds(server)
    page_url = f"{target.base_url}/page"
    run = await (soak(args, server, page_url) if args.soak else burst(args, server, page_url))
    return report(args, run, idle_mib, idle_fds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight from the bench")
    parser.add_argument("--workers", type=int, default=16, help="the server's [queue] concurrency")
    parser.add_argument("--sample-s", type=float, default=0.5, help="how often RSS, fds and counts are read")
    parser.add_argument("--soak", type=float, default=0, help="seconds of steady load instead of the burst")
    parser.add_argument("--rate", type=float, default=100, help="submits/s during --soak")
    args = parser.parse_args()
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="litejobs-load-") as tmp:
        try:
            return asyncio.run(measure(args, Path(tmp), children))
        finally:
            for child in children:
                child.stop()


if __name__ == "__main__":
    sys.exit(main())
