"""Benchmark the engine on 127.0.0.1: durable submits/s, fetch jobs/s, pickup latency, server RSS (bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
C = 64  # client concurrency in (a); [queue] concurrency and raw-loop concurrency in (b)
BATCH, PICKUPS = 500, 200
DELAY_S = 86_400  # (a): due tomorrow, so no worker fetches while submits are measured
# a helper server exits by itself after this, whatever becomes of the bench (a soak sets it longer)
CHILD_MAX_S = float(os.environ.get("LITEJOBS_BENCH_CHILD_MAX_S", "3600"))
NOISY_PCT = 50  # "others" past this (% of one core) in a phase: other work ran beside the bench
TERMINAL = ("completed", "partial", "failed", "cancelled")
Errors = collections.Counter[str]


def make_page() -> bytes:
    """10 KB of ordinary HTML: headings, paragraphs with links and emphasis, lists."""
    part = "<h2>Part {0}</h2><p>Paragraph {0}: <a href='/item/{0}'>item {0}</a>, <b>bold</b> and <em>plain</em> words."
    body = "".join((part + "</p><ul><li>one</li><li>two</li></ul>").format(i) for i in range(75))
    return f"<!doctype html><html><head><title>Bench</title></head><body>{body}</body></html>".encode()


async def serve_target() -> None:
    """Child process: the site jobs fetch, one 10 KB page, aiohttp with keep-alive as shipped."""
    from aiohttp import web

    page = make_page()

    async def send_page(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/page", send_page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"target listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), CHILD_MAX_S)
    await runner.cleanup()


async def serve_bare(durable_db: str | None = None, least_db: str | None = None) -> None:
    """Child process: a Starlette POST endpoint that parses JSON and writes nothing, on litejobs' uvicorn_config.
    With `durable_db`, it also stores each body as a job through litejobs' SqliteStore (group commit) before
    its 202, and does nothing else: the floor of a durable submit (bench_floors.py). With `least_db`, through
    least_store.LeastStore instead: the least a durable write could cost."""
    import uvicorn
    from least_store import LeastStore
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from litejobs.config import load_config
    from litejobs.jobs import JobSpec
    from litejobs.server import uvicorn_config
    from litejobs.store.sqlite import SqliteStore

    store: SqliteStore | None = None
    least = LeastStore(least_db) if least_db else None

    async def accept(request: Request) -> JSONResponse:
        body = await request.json()
        if least is not None:
            [job_id] = await least.submit([json.dumps(body["input"])])
            return JSONResponse({"job_id": job_id, "status": "waiting"}, status_code=202)
        if store is None:
            return JSONResponse({"accepted": isinstance(body, dict)}, status_code=202)
        spec = JobSpec(kind=body["kind"], input=body["input"], owner="anonymous", delay_s=body.get("delay_s", 0))
        [submitted] = await store.submit([spec], int(time.time() * 1000), 10**9)
        return JSONResponse({"job_id": submitted.job.id, "status": submitted.job.status.value}, status_code=202)

    # uvicorn_config reads only .asgi and .config of its App, so these are exactly litejobs' settings
    routes = [Route("/submit", accept, methods=["POST"])]
    stand_in = SimpleNamespace(asgi=Starlette(routes=routes), config=load_config(None, env={}))
    server = uvicorn.Server(uvicorn_config(cast(Any, stand_in), 0))
    async with contextlib.AsyncExitStack() as stack:
        if durable_db:
            store = await stack.enter_async_context(SqliteStore(durable_db))
        serving = asyncio.ensure_future(server.serve())
        for _ in range(3000):  # bounded: 30 s
            if server.started or serving.done():
                break
            await asyncio.sleep(0.01)
        print(f"bare listening on http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(serving, CHILD_MAX_S)  # uvicorn ends on SIGTERM by itself


class Child:
    """A server in its own process, output to a log file; RSS and CPU time read from /proc/<pid>."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log_path = name, log_dir / f"{name}.log"
        self._log = self.log_path.open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            preexec_fn=lambda: ctypes.CDLL(None).prctl(1, signal.SIGTERM),  # PR_SET_PDEATHSIG: die with the bench
        )  # fmt: skip
        for _ in range(600):  # bounded: 30 s
            found = [line for line in self.log_path.read_text().splitlines() if " listening on http://" in line]
            if found or self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not found:
            self.stop()
            raise RuntimeError(f"{name} did not start:\n{self.log_path.read_text()[-3000:]}")
        self.base_url = found[0].split()[-1]

    def rss_mib(self) -> float:
        with contextlib.suppress(OSError):
            return int(Path(f"/proc/{self.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
        return math.nan

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


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
