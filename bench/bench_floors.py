"""The floors under bench_engine.py's two throughput ratios, measured apart in one run (bench/README.md).

A fetch job costs at least what its fetch costs (the raw aiohttp loop's CPU per page) plus what its
store work costs (the real SqliteStore alone: a batched submit, a claim, a finish with the 10 KB
result, committed by the group writer; no HTTP, no fetch). In one CPython process their Python
parts share one GIL; only the store thread's time in SQLite's C code and in the kernel can run
beside the loop. So raw / (raw + store) is what (b) could reach with nothing else done per job if
that overlap is small, as bench_engine.py's CPU line (the server near 100% of one core) says it is.
A submit's floor is the store part of a durable submit (64 at a time, group-committed), to set
beside the bare endpoint's own CPU per request."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_engine import BATCH, DELAY_S, C, Errors, rate, session  # noqa: E402
from child_servers import Child, make_page  # noqa: E402
from least_store import LeastStore  # noqa: E402

from litejobs.jobs import JobResult, JobSpec, JobState  # noqa: E402
from litejobs.store.sqlite import SqliteStore  # noqa: E402

DAY_MS = 86_400_000


def cpu_s() -> float:
    """CPU seconds of this process, every thread (the store's writer thread included)."""
    return time.process_time()


def user_s() -> float:
    """The user-mode part of cpu_s(): without the kernel's work (the WAL's writes), which holds no GIL."""
    return os.times().user


def spec(url: str, delay_s: float = 0.0) -> JobSpec:
    return JobSpec(
        kind="fetch", input={"url": url, "output": ["html"]}, owner="anonymous", meta={}, priority=0,
        max_attempts=3, timeout_s=60.0, delay_s=delay_s, webhook=None, idempotency_key=None, request_hash=None,
    )  # fmt: skip


def outputs_of(html: str, url: str) -> dict[str, object]:
    """What a fetch job with `output: ["html"]` stores for the bench page."""
    return {
        "html": html, "status_code": 200, "final_url": url, "content_type": "text/html",
        "headers": {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(html)), "Server": "bench"},
    }  # fmt: skip


async def store_floor(n: int, html: str, folder: Path) -> dict[str, float]:
    """CPU µs per job of the store alone: batched submits; claims of up to C at a time with each
    claimed job finished concurrently, as the worker pool does; and single submits, C at a time."""
    url = "http://127.0.0.1:9/page"
    async with SqliteStore(folder / "floor.db") as store:
        now = lambda: int(time.time() * 1000)  # noqa: E731

        start, start_user = cpu_s(), user_s()
        for first in range(0, n, BATCH):
            await store.submit([spec(url)] * min(BATCH, n - first), now(), 10**9)
        batched_us = (cpu_s() - start) * 1e6 / n
        batched_user_us = (user_s() - start_user) * 1e6 / n

        result = JobResult(JobState.COMPLETED, outputs_of(html, url), {"elapsed_ms": 1.0, "bytes": len(html)})
        finished = 0

        async def lane() -> None:
            nonlocal finished
            for _ in range(n):  # bounded: each pass claims at least one job or ends the lane
                jobs = await store.claim(C // 8, "floor", now(), 60_000)
                if not jobs:
                    return
                done = await asyncio.gather(*(store.finish(j.id, "floor", result, now(), now() + DAY_MS) for j in jobs))
                finished += sum(job is not None for job in done)

        start, start_user = cpu_s(), user_s()
        await asyncio.gather(*(lane() for _ in range(8)))
        claim_finish_us = (cpu_s() - start) * 1e6 / n
        claim_finish_user_us = (user_s() - start_user) * 1e6 / n
        if finished != n:
            raise RuntimeError(f"the store finished {finished} of {n} jobs")

        queue: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(n):
            queue.put_nowait(None)

        async def submitter() -> None:
            while not queue.empty():
                queue.get_nowait()
                await store.submit([spec(url, delay_s=86_400)], now(), 10**9)

        start = cpu_s()
        await asyncio.gather(*(submitter() for _ in range(C)))
        single_us = (cpu_s() - start) * 1e6 / n
    return {
        "batched_submit": batched_us, "claim_finish": claim_finish_us, "single_submit": single_us,
        "batched_submit_user": batched_user_us, "claim_finish_user": claim_finish_user_us,
    }  # fmt: skip


async def raw_fetch_us(page_url: str, n: int, errors: Errors) -> tuple[float, float, float]:
    """The raw aiohttp loop of bench_engine (b) in this process: pages/s, CPU and user µs per page."""
    start, start_user = cpu_s(), user_s()
    pages_per_s = await rate(page_url, n, errors)
    return pages_per_s, (cpu_s() - start) * 1e6 / n, (user_s() - start_user) * 1e6 / n


async def fetch_and_store(page_url: str, n: int, folder: Path, errors: Errors) -> tuple[float, float]:
    """(b)'s floor, run rather than added up: in this one process, n jobs submitted in batches, then
    claimed C // 8 at a time by 8 lanes (C in flight), each fetched by the raw loop's aiohttp session
    and finished with its page through the real SqliteStore. No HTTP API, no logs, no metrics, no
    events. Jobs/s, and this process's CPU (% of one core) while it ran."""
    async with SqliteStore(folder / "fetch_store.db") as store, session() as http:
        now = lambda: int(time.time() * 1000)  # noqa: E731
        finished = 0

        async def run(job_id: str) -> None:
            nonlocal finished
            try:
                async with http.get(page_url) as resp:
                    html = await resp.text()
            except (OSError, TimeoutError) as exc:
                errors[f"fetch_and_store: {type(exc).__name__}"] += 1
                return
            stats = {"elapsed_ms": 1.0, "bytes": len(html)}
            result = JobResult(JobState.COMPLETED, outputs_of(html, str(resp.url)), stats)
            # (awaited first: `finished += await …` would read `finished` before the wait and lose updates)
            done = await store.finish(job_id, "floor", result, now(), now() + DAY_MS)
            finished += done is not None

        async def lane() -> None:
            for _ in range(n):  # bounded: each pass claims at least one job or ends the lane
                jobs = await store.claim(C // 8, "floor", now(), 60_000)
                if not jobs:
                    return
                await asyncio.gather(*(run(job.id) for job in jobs))

        wall, cpu = time.perf_counter(), cpu_s()
        for first in range(0, n, BATCH):
            await store.submit([spec(page_url)] * min(BATCH, n - first), now(), 10**9)
        await asyncio.gather(*(lane() for _ in range(8)))
        wall_s = time.perf_counter() - wall
        if finished != n:
            errors[f"fetch_and_store finished {finished} of {n} jobs"] += 1
        return n / wall_s, 100 * (cpu_s() - cpu) / wall_s


async def fetch_and_least_store(page_url: str, n: int, folder: Path, errors: Errors) -> tuple[float, float]:
    """fetch_and_store with least_store.LeastStore in place of SqliteStore: what (b) could reach with the
    least store work that keeps each result on disk. Jobs/s and this process's CPU (% of one core)."""
    store = LeastStore(str(folder / "least.db"))
    finished = 0
    try:
        async with session() as http:

            async def run(job_id: str, input_json: str) -> None:
                nonlocal finished
                try:
                    async with http.get(json.loads(input_json)["url"]) as resp:
                        html = await resp.text()
                except (OSError, TimeoutError) as exc:
                    errors[f"fetch_and_least_store: {type(exc).__name__}"] += 1
                    return
                await store.finish(job_id, json.dumps(outputs_of(html, str(resp.url))))
                finished += 1

            async def lane() -> None:
                for _ in range(n):  # bounded: each pass claims at least one job or ends the lane
                    claimed = await store.claim(C // 8)
                    if not claimed:
                        return
                    await asyncio.gather(*(run(job_id, input_json) for job_id, input_json in claimed))

            wall, cpu = time.perf_counter(), cpu_s()
            job_input = json.dumps({"url": page_url, "output": ["html"]})
            for first in range(0, n, BATCH):
                await store.submit([job_input] * min(BATCH, n - first))
            await asyncio.gather(*(lane() for _ in range(8)))
            wall_s = time.perf_counter() - wall
    finally:
        store.close()
    if finished != n:
        errors[f"fetch_and_least_store finished {finished} of {n} jobs"] += 1
    return n / wall_s, 100 * (cpu_s() - cpu) / wall_s


async def durable_endpoint(folder: Path, n: int, errors: Errors) -> dict[str, tuple[float, float]]:
    """(a)'s floor, run: bench_engine's bare endpoint, and the same endpoint storing each submit
    through the real SqliteStore before its 202 (and doing nothing else: no validation, no logs, no
    announcement), each in its own process, loaded as (a) loads them. Submits/s and the server's CPU
    (% of one core), by endpoint."""
    body = json.dumps(
        {"kind": "fetch", "input": {"url": "http://127.0.0.1:9/page", "output": ["html"]}, "delay_s": DELAY_S}
    ).encode()
    engine = str(ROOT / "bench" / "bench_engine.py")
    found: dict[str, tuple[float, float]] = {}
    runs = (
        ("bare", []),
        ("durable", ["--durable-db", str(folder / "durable.db")]),
        ("least", ["--least-db", str(folder / "least_endpoint.db")]),
    )
    for name, extra in runs:
        server = Child(name, [engine, "--serve-bare", *extra], folder)
        try:
            await rate(f"{server.base_url}/submit", 500, errors, body)  # warm up, as (a) does
            wall, cpu = time.perf_counter(), server.cpu_s()
            submits_per_s = await rate(f"{server.base_url}/submit", 2 * n, errors, body)
            found[name] = (submits_per_s, 100 * (server.cpu_s() - cpu) / (time.perf_counter() - wall))
        finally:
            server.stop()
    return found


async def measure(n: int, folder: Path) -> int:
    page = make_page()
    target = Child("target", [str(ROOT / "bench" / "bench_engine.py"), "--serve-target"], folder)
    try:
        errors = Errors()
        await asyncio.sleep(0.5)
        pages_per_s, fetch_us, fetch_user_us = await raw_fetch_us(f"{target.base_url}/page", n, errors)
        jobs_per_s, jobs_cpu = await fetch_and_store(f"{target.base_url}/page", n, folder, errors)
        least_per_s, least_cpu = await fetch_and_least_store(f"{target.base_url}/page", n, folder, errors)
    finally:
        target.stop()
    endpoints = await durable_endpoint(folder, n, errors)
    store = await store_floor(n, page.decode(), folder)
    tiny = await store_floor(n, "<p>x</p>", folder / "tiny")
    per_job = fetch_us + store["batched_submit"] + store["claim_finish"]
    per_job_user = fetch_user_us + store["batched_submit_user"] + store["claim_finish_user"]
    python = sys.version.split()[0]
    print(f"\nN = {n}, Python {python}, {os.cpu_count()} CPUs; CPU time of this process, all its threads.\n")
    print("| floor | µs of CPU per job | of which user mode |\n| --- | ---: | ---: |")
    rows = [
        (f"raw aiohttp fetch of the 10 KB page, {C} at a time ({pages_per_s:.0f} pages/s)", fetch_us, fetch_user_us),
        (f"store: submit in batches of {BATCH}", store["batched_submit"], store["batched_submit_user"]),
        ("store: claim + finish with the 10 KB result", store["claim_finish"], store["claim_finish_user"]),
        ("store: claim + finish with an 8-byte result", tiny["claim_finish"], tiny["claim_finish_user"]),
        (f"store: single submits, {C} at a time (group commit)", store["single_submit"], float("nan")),
        ("a fetch job's floor: fetch + batched submit + claim + finish", per_job, per_job_user),
    ]
    for label, total, user in rows:
        print(f"| {label} | {total:.0f} | {'' if user != user else f'{user:.0f}'} |")
    print(
        f"\nCeiling of (b) in one process, if a job cost only its fetch and its store work, one after the other: "
        f"{1e6 / per_job:.0f} jobs/s = {fetch_us / per_job:.2f} of the raw loop (target 0.6). The store's thread "
        "may run its kernel and SQLite time beside the loop on the second core; bench_engine.py's CPU line shows "
        "how much does (the server's % of a core in (b) html)."
    )
    (bare, bare_cpu), (durable, durable_cpu), (least, least_endpoint_cpu) = (
        endpoints["bare"], endpoints["durable"], endpoints["least"]
    )  # fmt: skip
    print("\nThe same floors, run in one process each (measured, not added up):\n")
    print("| run | per second | CPU, % of one core | ratio | target |\n| --- | ---: | ---: | ---: | ---: |")
    print(f"| raw aiohttp loop, pages | {pages_per_s:.0f} | | | |")
    print(f"| fetch + store only (no API, logs, metrics), jobs | {jobs_per_s:.0f} | {jobs_cpu:.0f} | "
          f"{jobs_per_s / pages_per_s:.2f} | 0.6 |")  # fmt: skip
    print(f"| fetch + the least store (bench/least_store.py), jobs | {least_per_s:.0f} | {least_cpu:.0f} | "
          f"{least_per_s / pages_per_s:.2f} | 0.6 |")  # fmt: skip
    print(f"| bare endpoint, submits | {bare:.0f} | {bare_cpu:.0f} | | |")
    print(f"| bare endpoint + durable store write only, submits | {durable:.0f} | {durable_cpu:.0f} | "
          f"{durable / bare:.2f} | 0.8 |")  # fmt: skip
    print(f"| bare endpoint + the least store's write only, submits | {least:.0f} | {least_endpoint_cpu:.0f} | "
          f"{least / bare:.2f} | 0.8 |")  # fmt: skip
    if errors:
        print(f"\n!!!!! ERRORS: {dict(errors)}")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="litejobs-floors-") as tmp:
        (Path(tmp) / "tiny").mkdir()
        return asyncio.run(measure(args.jobs, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
