"""The `litejobs` command as a user runs it: a subprocess against `litejobs serve` in another one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import queue
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from litejobs.jobs import JobSpec
from litejobs.store.sqlite import SqliteStore
from tests.pg import PostgresServer
from tests.support import PYTHON, ROOT, ServerProcess, TargetSite

PAGE = "<h1>Title</h1><p>Body text</p>"


@pytest.fixture(scope="module")
def site() -> Iterator[TargetSite]:
    target = TargetSite()
    target.add_html("/doc", PAGE)
    target.add_html("/down", "oops", status=500)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(text=PAGE, content_type="text/html")

    target.add("/slow", slow)
    yield target
    target.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = ServerProcess(tmp_path_factory.mktemp("cli") / "cli.db")
    yield running
    running.terminate()


def litejobs(server: ServerProcess | None, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """`litejobs ARGS` with $LITEJOBS_URL pointing at the server."""
    env = {**os.environ, "LITEJOBS_URL": server.base_url if server else "http://127.0.0.1:9"}
    env.pop("LITEJOBS_API_KEY", None)
    return subprocess.run(
        [PYTHON, "-m", "litejobs", *args], capture_output=True, text=True, timeout=30, cwd=ROOT, env=env, **kw
    )  # type: ignore[call-overload, no-any-return]


def test_submit_wait_prints_the_markdown_and_each_status(server: ServerProcess, site: TargetSite) -> None:
    proc = litejobs(server, "submit", site.url("/doc"), "--wait")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# Title") and "Body text" in proc.stdout
    assert proc.stderr.splitlines()[-1].endswith(" completed")


def test_submit_wait_json_prints_the_whole_result(server: ServerProcess, site: TargetSite) -> None:
    proc = litejobs(server, "submit", site.url("/doc"), "--wait", "--json", "--output", "markdown,links")
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["status"] == "completed"
    assert result["outputs"]["markdown"].startswith("# Title") and result["outputs"]["links"] == []


def test_a_submitted_job_can_be_tailed_read_and_listed(server: ServerProcess, site: TargetSite) -> None:
    job_id = litejobs(server, "submit", site.url("/doc"), "--server", server.base_url).stdout.strip()
    tail = litejobs(server, "tail", job_id)
    get = litejobs(server, "get", job_id)
    as_json = json.loads(litejobs(server, "get", job_id, "--json").stdout)
    result = litejobs(server, "result", job_id)
    full = json.loads(litejobs(server, "result", job_id, "--json").stdout)
    listed = litejobs(server, "ls", "--limit", "50")
    stats = json.loads(litejobs(server, "stats").stdout)
    assert job_id.startswith("job_")
    assert tail.returncode == 0 and tail.stdout.splitlines()[-1].split()[1:4] == ["status", job_id, "completed"]
    assert get.returncode == 0 and get.stdout.startswith(f"{job_id} completed")
    assert as_json["job_id"] == job_id and as_json["status"] == "completed"
    assert result.stdout.startswith("# Title") and full["outputs"]["status_code"] == 200
    assert job_id in listed.stdout and site.url("/doc") in listed.stdout
    assert stats["counts"]["completed"] >= 1 and "queue_depth" in stats


def test_cancel_stops_a_running_job(server: ServerProcess, site: TargetSite) -> None:
    job_id = litejobs(server, "submit", site.url("/slow")).stdout.strip()
    cancelled = litejobs(server, "cancel", job_id)
    again = litejobs(server, "cancel", job_id)
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"{job_id} cancelled"
    assert again.returncode == 1 and "job_finished" in again.stderr
    assert litejobs(server, "result", job_id).returncode == 1


def test_exit_codes(server: ServerProcess, site: TargetSite) -> None:
    failed = litejobs(server, "submit", site.url("/down"), "--max-attempts", "1", "--wait")
    unknown_option = litejobs(server, "submit", site.url("/doc"), "--frobnicate")
    invalid_input = litejobs(server, "submit", "ftp://example.com/")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    unreachable = litejobs(server, "ls", "--server", closed)
    assert failed.returncode == 1 and "upstream_status" in failed.stderr and failed.stdout == ""
    assert unknown_option.returncode == 2 and "--frobnicate" in unknown_option.stderr
    assert invalid_input.returncode == 2 and "input.url" in invalid_input.stderr
    assert unreachable.returncode == 3 and "cannot reach" in unreachable.stderr


def test_result_of_a_job_not_ended_yet_exits_4_and_with_wait_prints_it_once_ended(
    server: ServerProcess, site: TargetSite
) -> None:
    gate = threading.Event()

    async def held(request: web.Request) -> web.Response:
        for _ in range(300):
            if gate.is_set():
                break
            await asyncio.sleep(0.1)
        return web.Response(text=PAGE, content_type="text/html")

    job_id = litejobs(server, "submit", site.add("/held", held)).stdout.strip()
    try:
        early = litejobs(server, "result", job_id)
        early_json = litejobs(server, "result", job_id, "--json")
    finally:
        gate.set()
    waited = litejobs(server, "result", job_id, "--wait")
    assert early.returncode == 4 and early.stdout == "" and "not ended yet (use --wait)" in early.stderr
    assert early_json.returncode == 4 and json.loads(early_json.stdout)["status"] in ("waiting", "active")
    assert waited.returncode == 0 and waited.stdout.startswith("# Title")


def test_tail_of_all_jobs_runs_until_ctrl_c(server: ServerProcess, site: TargetSite) -> None:
    env = {**os.environ, "LITEJOBS_URL": server.base_url}
    proc = subprocess.Popen([PYTHON, "-m", "litejobs", "tail"], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        seen = ""
        deadline = time.monotonic() + 20
        while " completed " not in seen and time.monotonic() < deadline:
            if lines.empty():  # the stream shows changes from when it opened: submit until one shows
                server.http.submit({"url": site.url("/doc")})
            with contextlib.suppress(queue.Empty):
                seen += lines.get(timeout=0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.stdout.close()
    assert " completed " in seen


def test_a_terminal_shows_one_progress_line_redrawn(server: ServerProcess, site: TargetSite) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [PYTHON, "-m", "litejobs", "submit", site.url("/doc"), "--wait", "--server", server.base_url],
            stdout=subprocess.PIPE, stderr=follower, text=True, timeout=30, cwd=ROOT,
        )  # fmt: skip
        os.close(follower)
        shown = b""
        while chunk := _read_some(leader):
            shown += chunk
    finally:
        os.close(leader)
    text = shown.decode()
    assert proc.returncode == 0 and proc.stdout.startswith("# Title")
    assert "\r\x1b[K" in text and " completed" in text and text.endswith("\n")


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO once the other end is closed and drained
        return b""


def test_submit_wait_under_a_rate_limit_waits_it_out_and_submits_once(
    tmp_path_factory: pytest.TempPathFactory, site: TargetSite
) -> None:
    folder = tmp_path_factory.mktemp("rate")
    (folder / "rate.toml").write_text('[auth]\nkeys = ["k1"]\nrate_per_s = 1\n')
    limited = ServerProcess(folder / "rate.db", "--config", str(folder / "rate.toml"))
    try:
        # the wait's first request comes within the second of the submit, and the result's after it: 429s
        waited = litejobs(limited, "submit", site.url("/doc"), "--wait", "--api-key", "k1")
        listed = litejobs(limited, "ls", "--json", "--api-key", "k1")
    finally:
        limited.terminate()
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.startswith("# Title") and waited.stderr.splitlines()[-1].endswith(" completed")
    assert [job["status"] for job in json.loads(listed.stdout)] == ["completed"]


def serve_that_stops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`litejobs serve ARGS` expected to give up at start (bounded: a hang fails the test)."""
    cmd = [PYTHON, "-m", "litejobs", "serve", "--port", "0", *args]
    if os.geteuid() == 0:  # root writes to read-only files: drop the capability that lets it
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT, env=full_env)


def assert_one_line(proc: subprocess.CompletedProcess[str], start: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(start) and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_serve_on_a_database_it_cannot_open_says_why_and_exits_2(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("this is not a sqlite database, just text " * 10)
    read_only = tmp_path / "ro" / "x.db"
    read_only.parent.mkdir()
    sqlite3.connect(read_only).execute("CREATE TABLE t (x)").connection.close()
    read_only.chmod(0o444)
    read_only.parent.chmod(0o555)
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    try:
        for db, reason in [
            (text, "file is not a database"),
            (read_only, "readonly"),
            (newer, "schema version 99 is newer than this litejobs"),
            (text / "sub" / "x.db", "Not a directory"),
        ]:
            proc = serve_that_stops("--db", str(db))
            assert_one_line(proc, f"litejobs: cannot open the database {db}: ")
            assert reason in proc.stderr
    finally:
        read_only.parent.chmod(0o755)


def test_serve_with_a_folder_for_config_says_so_and_exits_2(tmp_path: Path) -> None:
    proc = serve_that_stops("--config", str(tmp_path), "--db", str(tmp_path / "x.db"))
    assert_one_line(proc, f"litejobs: cannot read the config file {tmp_path}: ")


def test_serve_on_a_postgresql_it_cannot_reach_says_why_and_exits_2(postgres_server: PostgresServer) -> None:
    missing = postgres_server.url("no_such_database")
    proc = serve_that_stops(env={"LITEJOBS_STORE_URL": missing})
    assert_one_line(proc, f"litejobs: cannot open the database {missing}: ")
    assert "no_such_database" in proc.stderr.split(": ", 2)[2]
    refused = "postgresql://someone:secret@127.0.0.1:9/litejobs"
    proc = serve_that_stops(env={"LITEJOBS_STORE_URL": refused})
    assert_one_line(proc, "litejobs: cannot open the database postgresql://someone:***@127.0.0.1:9/litejobs: ")
    assert "secret" not in proc.stderr


def test_migrate_into_a_database_that_holds_jobs_says_so(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "old.db"

    async def one_job() -> None:
        async with SqliteStore(db) as store:
            await store.submit([JobSpec(kind="fetch", input={"url": "http://example.com/"}, owner="o")], 0, 10)

    asyncio.run(one_job())
    assert litejobs(None, "migrate", "--from", str(db), "--to", pg_url).returncode == 0
    again = litejobs(None, "migrate", "--from", str(db), "--to", pg_url)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr == (
        "litejobs: migrate failed, nothing was copied: "
        "The PostgreSQL database already holds jobs; litejobs migrate only fills an empty one.\n"
    )


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(server: ServerProcess, site: TargetSite) -> None:
    job = server.http.submit({"url": site.url("/doc")})
    assert server.http.wait(job["job_id"])["status"] == "completed"
    env = {**os.environ, "LITEJOBS_URL": server.base_url}
    env.pop("LITEJOBS_API_KEY", None)
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already read what it wanted
    try:
        proc = subprocess.run(
            [PYTHON, "-m", "litejobs", "result", job["job_id"], "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            cwd=ROOT,
            env=env,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141  # 128 + SIGPIPE, as a shell reports a Unix tool that SIGPIPE ended
