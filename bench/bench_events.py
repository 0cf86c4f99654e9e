"""Benchmark what a `/v1/events` stream costs the server: its CPU over a burst of changes, with no
stream open and with some, on SQLite (and PostgreSQL with --stores sqlite,postgres).

Each stream's store reads go over the last LOOKBACK_MS of changes again (api/events.py), so a burst
is read several times over; this measures that cost. Each run is a fresh server (`litejobs serve` in a
child process) and store; the burst is `--changes` delayed jobs submitted in batches of 500 (one
change each), timed from the first submit until every stream has them all, plus SETTLE_S. The server's
CPU (all its threads, from /proc) is the figure; "extra per stream" is over the run with no stream.

    .venv/bin/python bench/bench_events.py [--changes 16000] [--streams 0,1,4] [--stores sqlite,postgres]
    git archive HEAD~1 | tar -x -C /tmp/old && .venv/bin/python bench/bench_events.py --tree /tmp/old

`--tree` serves from another source tree (an export of an older commit) to compare before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg import PostgresServer, _bindir  # noqa: E402
from tests.support import Http  # noqa: E402

BATCH = 500
#: after the last event arrives: the stream's look-back (5 s) and two rechecks (1 s each), so that
#: every read that goes over the burst again is counted
SETTLE_S = 7.0
TICKS = os.sysconf("SC_CLK_TCK")


class Server:
    """`litejobs serve` from `tree` in a child process; its CPU time read from /proc."""

    def __init__(self, tree: Path, scratch: Path, pg_url: str | None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree)}
        env["LITEJOBS_STORE_FILES_DIR"] = str(scratch / "files")
        if pg_url:
            env["LITEJOBS_STORE_URL"] = pg_url
        cmd = [sys.executable, "-m", "litejobs", "serve", "--port", "0", "--db", str(scratch / "jobs.db")]
        self.log = (scratch / "server.log").open("w+")
        self.proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.base_url = self._address()
        self.http = Http(self.base_url)

    def _address(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            self.log.seek(0)
            found = re.search(r"litejobs listening on (http://[\d.]+:\d+)", self.log.read())
            if found:
                return found.group(1)
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


class Stream:
    """`/v1/events` read on a raw socket in a thread, counting its events (not parsing them: the
    bench shares the machine's CPUs with the server it measures)."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=120)
        self.sock.sendall(b"GET /v1/events HTTP/1.1\r\nHost: bench\r\n\r\n")
        self.events = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        tail = b""
        try:
            while chunk := self.sock.recv(1 << 16):
                self.events += (tail + chunk).count(b"\nevent: ")
                tail = chunk[-8:]  # a marker cut in two is counted once, from the joined piece
        except OSError:
            pass  # closed under the reader

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(10)
        self.sock.close()


def wait_for(check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def submit(server: Server, count: int) -> None:
    """`count` delayed jobs in batches: one change each, and no worker changes them after."""
    for start in range(0, count, BATCH):
        jobs = [{"kind": "fetch", "input": {"url": "http://127.0.0.1:9/"}, "delay_s": 86400}] * min(
            BATCH, count - start
        )
        resp = server.http.post("/v1/jobs/batch", {"jobs": jobs})
        assert resp.status == 202, resp.body[:200]


def burst_cpu_s(tree: Path, pg: PostgresServer | None, changes: int, streams: int) -> float:
    """Server CPU seconds from the first change of the burst until every stream has it all, plus
    SETTLE_S, on a fresh store."""
    with tempfile.TemporaryDirectory(prefix="litejobs-bench-") as scratch:
        server = Server(tree, Path(scratch), pg.new_database() if pg else None)
        try:
            open_ = [Stream(server.base_url) for _ in range(streams)]
            submit(server, 1)  # a marker: each stream is live once it has it
            wait_for(lambda: all(s.events >= 1 for s in open_), 30)
            time.sleep(1.5)  # the marker's reads over
            before = server.cpu_s()
            submit(server, changes)
            wait_for(lambda: all(s.events >= changes + 1 for s in open_), 300)
            time.sleep(SETTLE_S)
            used = server.cpu_s() - before
            over = [s.events - changes - 1 for s in open_]
            for stream in open_:
                stream.close()
            if any(over):
                print(f"  warning: streams got {over} events more than the changes", file=sys.stderr)
            return used
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=16_000)
    parser.add_argument("--streams", default="0,1,4", help="stream counts to run, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stores", default="sqlite", help="sqlite, postgres (a throwaway one), or both")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the litejobs source tree to serve")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    names = args.stores.split(",")
    pg = None
    if "postgres" in names:
        bindir = _bindir()
        if bindir is None:
            raise SystemExit("PostgreSQL binaries not found")
        pg = PostgresServer(bindir)
        pg.start()
    stores = [(name, pg if name == "postgres" else None) for name in names]
    print(f"{args.changes} changes in batches of {BATCH}; server CPU s (best of {args.rounds}); tree {args.tree}")
    print("| store | streams | server CPU s | extra per stream s | x no stream |")
    print("| --- | --- | --- | --- | --- |")
    try:
        for name, server in stores:
            base = None
            for streams in counts:
                cpu = min(burst_cpu_s(args.tree, server, args.changes, streams) for _ in range(args.rounds))
                base = cpu if streams == 0 else base
                extra = f"{(cpu - base) / streams:.2f}" if streams and base is not None else "-"
                ratio = f"{cpu / base:.2f}" if base else "-"
                print(f"| {name} | {streams} | {cpu:.2f} | {extra} | {ratio} |", flush=True)
    finally:
        if pg is not None:
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
