"""Benchmark: crawl pages/s through litejobs next to a raw aiohttp crawler, and the server's RSS on a big crawl.

Run on demand: `.venv/bin/python bench/bench_crawl.py [--pages 5000] [--concurrency 8]`. Everything stays
on 127.0.0.1: a generated site (a ten-way tree of pages with cycles, about 3 KB of text each) served by
its own process, `litejobs serve` in another, and the raw crawler in this one. Both crawlers keep the
same number of requests in flight; the raw one only fetches and extracts links (no Markdown, no storage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp import web
from selectolax.lexbor import LexborHTMLParser

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["crawl", "queue", "robots", "sitemap", "frontier", "depth", "breadth", "page", "link", "server", "worker"]


def page_html(i: int, pages: int) -> str:
    links = ["/"] + [f"/p/{c}" for c in range(10 * i + 1, min(10 * i + 11, pages))]
    links += [f"/p/{(i - 1) // 10}" if i > 10 else "/", f"/p/{min(i + 1, pages - 1)}"]
    paragraphs = "".join(f"<p>{' '.join(WORDS[(i + n + k) % len(WORDS)] for k in range(40))}.</p>" for n in range(8))
    anchors = "".join(f'<li><a href="{href}">link {n}</a></li>' for n, href in enumerate(links))
    return (
        f"<html><head><title>Page {i}</title></head><body><nav><ul>{anchors}</ul></nav>"
        f"<main><h1>Page {i}</h1>{paragraphs}</main></body></html>"
    )


def serve_site(pages: int) -> None:
    """The target site, in its own process: prints its port, serves until killed."""

    async def handler(request: web.Request) -> web.Response:
        path = request.path
        i = 0 if path == "/" else int(path[3:]) if path.startswith("/p/") and path[3:].isdigit() else -1
        if not 0 <= i < pages:
            return web.Response(status=404, text="not found")
        return web.Response(text=page_html(i, pages), content_type="text/html")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


def start_site(pages: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-site", str(pages)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{proc.stdout.readline().strip()}"


def start_server(db: Path, concurrency: int) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "LITEJOBS_CRAWL_PER_HOST_CONCURRENCY": str(concurrency),
        "LITEJOBS_CRAWL_MAX_PAGES": "100000",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "litejobs", "serve", "--port", "0", "--db", str(db)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    for _ in range(200):
        line = proc.stdout.readline()
        if line.startswith("litejobs listening on "):
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, line.split()[-1]
    proc.kill()
    raise RuntimeError("litejobs did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def call(base: str, method: str, path: str, body: object = None) -> dict:  # type: ignore[type-arg]
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=70) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def litejobs_crawl(server: str, pid: int, site: str, pages: int, output: list[str]) -> dict[str, float]:
    """One crawl job; pages/s from the job's own start and end, and the server's peak RSS meanwhile."""
    crawl_input = {"url": site + "/", "max_pages": pages, "max_depth": 20, "output": output}
    job = call(server, "POST", "/v1/jobs", {"kind": "crawl", "input": crawl_input, "timeout_s": 600})
    peak = rss_mb(pid)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = call(server, "GET", f"/v1/jobs/{job['job_id']}")
        peak = max(peak, rss_mb(pid))
        if job["status"] in ("completed", "partial", "failed", "cancelled"):
            break
        time.sleep(0.1)
    result = call(server, "GET", f"/v1/jobs/{job['job_id']}/result?limit=1")
    crawled = result["outputs"]["pages_crawled"]
    elapsed_s = result["stats"]["elapsed_ms"] / 1000
    return {"pages": crawled, "seconds": elapsed_s, "pages_per_s": crawled / elapsed_s, "peak_rss_mb": peak}


async def raw_crawl(site: str, pages: int, concurrency: int) -> dict[str, float]:
    """The baseline: breadth-first with `concurrency` fetches in flight, links by selectolax, nothing kept."""
    start = site + "/"
    host = urlsplit(start).netloc
    seen, queue = {start}, asyncio.Queue[str]()
    queue.put_nowait(start)
    done = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while True:
            url = await queue.get()
            try:
                async with session.get(url) as resp:
                    html = await resp.text()
                done += 1
                for node in LexborHTMLParser(html).css("a[href]"):
                    link = urljoin(url, node.attributes.get("href") or "").split("#")[0]
                    if len(seen) < pages and link not in seen and urlsplit(link).netloc == host:
                        seen.add(link)
                        queue.put_nowait(link)
            finally:
                queue.task_done()

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        await queue.join()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    elapsed_s = time.perf_counter() - started
    return {"pages": done, "seconds": elapsed_s, "pages_per_s": done / elapsed_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve-site", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_site:
        serve_site(args.serve_site)
        return
    site_proc, site = start_site(args.pages)
    try:
        raw = asyncio.run(raw_crawl(site, args.pages, args.concurrency))
        with tempfile.TemporaryDirectory() as tmp:
            server_proc, server = start_server(Path(tmp) / "bench.db", args.concurrency)
            try:
                idle = rss_mb(server_proc.pid)
                runs = {
                    out: litejobs_crawl(server, server_proc.pid, site, args.pages, [out])
                    for out in ("metadata", "markdown")
                }
            finally:
                server_proc.terminate()
                server_proc.wait(30)
    finally:
        site_proc.kill()
        site_proc.wait(10)
    print(f"{args.pages} pages, {args.concurrency} requests in flight, {os.cpu_count()} CPUs")
    print(f"raw aiohttp + selectolax links : {raw['pages_per_s']:7.1f} pages/s ({raw['seconds']:.1f} s)")
    for output, run in runs.items():
        print(
            f"litejobs crawl, output={output:<9}: {run['pages_per_s']:7.1f} pages/s ({run['seconds']:.1f} s, "
            f"{run['pages']:.0f} pages), server RSS peak {run['peak_rss_mb']:.0f} MB"
        )
    print(f"litejobs server RSS idle before the crawls: {idle:.0f} MB")
    ratios = ", ".join(f"{out} {run['pages_per_s'] / raw['pages_per_s']:.2f}" for out, run in runs.items())
    print(f"litejobs / raw pages/s: {ratios}")


if __name__ == "__main__":
    main()
