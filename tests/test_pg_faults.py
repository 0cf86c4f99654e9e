"""Several nodes on one PostgreSQL when things go wrong around them: the database stops or stops
answering, two nodes share a host name, a job is cancelled through the node that does not run it.

These tests run their own PostgreSQL (not the session's), since they stop and freeze it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.pg import _SERVER_OPTIONS, START_TIMEOUT_S, PostgresServer, _bindir, pg_rows
from tests.support import Http, ServerProcess, ServerThread, TargetSite, make_config, wait_until
from tests.test_shutdown_signals import Answer

pytestmark = pytest.mark.slow


class OwnPostgres(PostgresServer):
    """A throwaway PostgreSQL this module may stop, start, freeze and thaw."""

    def start_again(self) -> None:
        options = f"-p {self.port} -k {self.root} {_SERVER_OPTIONS}"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-o", options, "-w", "-t", str(START_TIMEOUT_S), "start",
        )  # fmt: skip

    def stop_fast(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def processes(self) -> list[int]:
        """The postmaster this server started, and its children."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> list[int]:
        """SIGSTOP every process of this server: a database that accepts connections and never answers."""
        frozen = self.processes()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        return frozen

    @staticmethod
    def thaw(frozen: list[int]) -> None:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def own_pg() -> Iterator[OwnPostgres]:
    bindir = _bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL is not installed (no initdb)")
    pytest.importorskip("asyncpg")
    server = OwnPostgres(bindir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db_url(own_pg: OwnPostgres) -> str:
    return own_pg.new_database()


def node(tmp_path: Path, name: str, url: str, **env: str) -> ServerProcess:
    return ServerProcess(tmp_path / f"{name}.db", env={"LITEJOBS_STORE_URL": url, **env})


def job(http: Http, job_id: str) -> dict[str, Any]:
    resp = http.get(f"/v1/jobs/{job_id}")
    assert resp.status == 200, resp.body
    return resp.json  # type: ignore[no-any-return]


def ended(http: Http, ids: list[str]) -> bool:
    answers = [http.get(f"/v1/jobs/{job_id}") for job_id in ids]
    return all(a.status == 200 and a.json["status"] in ("completed", "failed", "cancelled") for a in answers)


class SlowPage:
    """A page that answers after `delay_s`; counts the fetches that began and those that ended."""

    def __init__(self, site: TargetSite, delay_s: float) -> None:
        self.started = 0
        self.answered = 0
        self.delay_s = delay_s
        self.url = site.add("/slow", self._handler)

    async def _handler(self, request: web.Request) -> web.Response:
        self.started += 1
        await asyncio.sleep(self.delay_s)
        self.answered += 1
        return web.Response(text="<p>done</p>", content_type="text/html")


def assert_store_unavailable(resp: Any) -> None:
    assert resp.status == 503, (resp.status, resp.body)
    assert resp.json["error"]["code"] == "store_unavailable", resp.body
    assert int(resp.headers["retry-after"]) >= 1


# --- the database goes away ---------------------------------------------------------------------


def test_an_outage_longer_than_a_lease_costs_the_running_jobs_no_attempt(
    tmp_path: Path, site: TargetSite, own_pg: OwnPostgres, db_url: str
) -> None:
    """Jobs whose work ends while the database is down are recorded as they ended once it is back:
    no attempt charged, nothing run twice, no job lost; meanwhile the API answers 503."""
    page = SlowPage(site, 1.5)
    env = {"LITEJOBS_QUEUE_LEASE_S": "3", "LITEJOBS_QUEUE_CONCURRENCY": "4"}
    one, two = node(tmp_path, "one", db_url, **env), node(tmp_path, "two", db_url, **env)
    try:
        ids = [
            (one if n % 2 else two).http.submit({"url": f"{page.url}?n={n}"}, max_attempts=1 if n < 2 else 3)["job_id"]
            for n in range(6)
        ]
        assert wait_until(lambda: page.started == 6, 30)
        own_pg.stop_fast()
        try:
            assert_store_unavailable(one.http.get(f"/v1/jobs/{ids[0]}"))
            assert_store_unavailable(two.http.post("/v1/jobs", {"input": {"url": page.url}}))
            assert_store_unavailable(one.http.get("/v1/jobs?limit=5"))
            assert_store_unavailable(two.http.get("/v1/stats"))
            ready = two.http.get("/readyz")
            assert ready.status == 503 and ready.json["store"] is False
            assert wait_until(lambda: page.answered == 6, 30)  # every job's work ends in the outage
            time.sleep(4)  # ...and every lease (3 s) lapses
        finally:
            own_pg.start_again()

        assert wait_until(lambda: ended(one.http, ids), 60)
        for job_id in ids:
            done = job(two.http, job_id)
            detail = [(a["attempt"], a["outcome"]) for a in done["attempts_detail"]]
            assert (done["status"], done["attempts"], detail) == ("completed", 1, [(1, "completed")]), done
        assert page.started == 6  # nothing ran twice
        assert one.http.get("/readyz").status == 200
        again = one.http.submit({"url": page.url})["job_id"]
        assert one.http.wait(again)["status"] == "completed"
        assert not any("recovered" in line for line in one.output + two.output)
    finally:
        one.terminate()
        two.terminate()


def test_a_database_that_stops_answering_gets_503_in_bounded_time_then_works_again(
    tmp_path: Path, site: TargetSite, own_pg: OwnPostgres, db_url: str
) -> None:
    server = node(tmp_path, "one", db_url)
    try:
        page = site.add_html("/page", "<p>ok</p>")
        before = server.http.submit({"url": page})["job_id"]
        assert server.http.wait(before)["status"] == "completed"
        frozen = own_pg.freeze()
        try:
            # the test client gives up after 90 s: an answer at all says the wait was bounded
            assert_store_unavailable(server.http.get("/v1/jobs?limit=1"))
            assert_store_unavailable(server.http.post("/v1/jobs", {"input": {"url": page}}))
            ready = server.http.get("/readyz")
            assert ready.status == 503 and ready.json["store"] is False
        finally:
            own_pg.thaw(frozen)
        assert wait_until(lambda: server.http.get("/readyz").status == 200, 60)
        assert server.http.get(f"/v1/jobs/{before}").json["status"] == "completed"
        after = server.http.submit({"url": page})["job_id"]
        assert server.http.wait(after)["status"] == "completed"
    finally:
        server.terminate()


def ride_out_an_outage(own_pg: OwnPostgres, http: Http) -> None:
    """Stop the database until requests answer 503 and asyncpg would have retried its connection
    floor three times (1, 2 and 4 s apart), then start it and wait until requests work again."""
    own_pg.stop_fast()
    try:
        assert wait_until(lambda: http.get("/v1/jobs").status == 503, 30)
        time.sleep(8)
        assert http.get("/v1/jobs").status == 503
    finally:
        own_pg.start_again()
    assert wait_until(lambda: http.get("/v1/jobs").status == 200, 60)


def test_an_outage_is_logged_once_as_it_begins_and_once_as_it_ends_with_no_traceback(
    tmp_path: Path, own_pg: OwnPostgres, db_url: str
) -> None:
    """asyncpg's pool logged a warning with a full traceback at every retry of its connection floor,
    for as long as the database was away: the one line that matters drowned in them."""
    server = node(tmp_path, "quiet", db_url)
    try:
        ride_out_an_outage(own_pg, server.http)
        assert wait_until(lambda: any("answers again" in line for line in server.output), 10)
    finally:
        server.terminate()
    lines = [line for line in server.output if " litejobs.http " not in line]  # not the request lines
    assert [line for line in lines if "Traceback" in line or "asyncpg" in line] == []
    assert sum("the database cannot be reached" in line for line in lines) == 1
    assert sum("the database answers again" in line for line in lines) == 1


def test_open_streams_and_webhooks_in_flight_ride_an_outage_without_a_traceback(
    tmp_path: Path, site: TargetSite, own_pg: OwnPostgres, db_url: str
) -> None:
    """Event streams open as the database goes away end cleanly (they were cut mid-chunk and logged two
    tracebacks each); a webhook delivery ending in the outage is sent again later, logged in a line."""
    receiver = SlowPage(site, 2.0)  # a webhook receiver that takes 2 s to answer
    server = node(tmp_path, "streams", db_url)
    try:
        target = site.add_html("/quick", "<p>quick</p>")
        hooked = server.http.submit({"url": target}, webhook={"url": receiver.url})["job_id"]
        waiting = server.http.submit({"url": target}, delay_s=3600)["job_id"]
        streams = [Answer(server.base_url, "/v1/events"), Answer(server.base_url, f"/v1/jobs/{waiting}/events")]
        for stream in streams:
            stream.wait_first_data()
        assert server.http.wait(hooked)["status"] == "completed"
        assert wait_until(lambda: receiver.started == 1, 30)  # the delivery is in flight
        own_pg.stop_fast()
        try:
            for stream in streams:
                stream.join()
            assert wait_until(lambda: receiver.answered == 1, 30)
            time.sleep(1)  # the delivery's record meets the outage
        finally:
            own_pg.start_again()
        assert wait_until(lambda: server.http.get("/v1/jobs").status == 200, 60)
    finally:
        server.terminate()
    assert [stream.error for stream in streams] == [None, None]  # each ended with its last chunk
    assert [line for line in server.output if "Traceback" in line] == []


def test_an_outage_leaves_one_traceback_at_debug_level(
    tmp_path: Path, own_pg: OwnPostgres, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with ServerThread(make_config(tmp_path, store={"url": db_url})) as server:
        ride_out_an_outage(own_pg, server.http)
    with_traceback = [(r.name, r.levelname) for r in caplog.records if r.exc_info]
    assert with_traceback == [("litejobs.store", "DEBUG")]


# --- two nodes with one host name ---------------------------------------------------------------


def _unshare_prefix() -> list[str] | None:
    """The command that runs a program as PID 1 of a new PID namespace, or None where it cannot."""
    if shutil.which("unshare") is None:
        return None
    base = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    for prefix in (base, [*base[:1], "--user", "--map-root-user", *base[1:]]):
        probe = subprocess.run([*prefix, "sh", "-c", "test $$ = 1"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return prefix
    return None


class ContainerNode(ServerProcess):
    """`litejobs serve` as PID 1 of a PID namespace of its own, on this host's network and host name:
    a container run with host networking (Docker `--network host`, Kubernetes `hostNetwork`)."""

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM to the server itself: unshare ignores it (it leaves when its child does)."""
        unshare = self.proc.pid
        with contextlib.suppress(OSError):  # gone already
            for child in Path(f"/proc/{unshare}/task/{unshare}/children").read_text().split():
                os.kill(int(child), signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # --kill-child: the server goes with it
            self.proc.wait(10)
            raise
        finally:
            self._closed()


def test_nodes_with_one_host_name_in_separate_pid_namespaces_leave_each_others_jobs_alone(
    tmp_path: Path, site: TargetSite, db_url: str
) -> None:
    """Both nodes are PID 1 of their own namespace: to each, the other's `host:1` looks like itself,
    and the other's PID names no process it can see. Neither may take the other for dead."""
    prefix = _unshare_prefix()
    if prefix is None:
        pytest.skip("unshare cannot make a PID namespace here")
    page = SlowPage(site, 7.0)  # more than two sweeper rounds (one per lease_s)
    env = {"LITEJOBS_STORE_URL": db_url, "LITEJOBS_QUEUE_LEASE_S": "2"}
    one = ContainerNode(tmp_path / "one.db", env=env, prefix=prefix)
    two = None
    try:
        two = ContainerNode(tmp_path / "two.db", env=env, prefix=prefix)
        ids = [(one if n % 2 else two).http.submit({"url": f"{page.url}?n={n}"})["job_id"] for n in range(4)]
        assert wait_until(lambda: page.started == 4, 30)
        owners = [row[0] for row in pg_rows(db_url, "SELECT lease_owner FROM jobs WHERE status = 'active'")]
        assert len(owners) == 4 and {tuple(o.split(":")[:2]) for o in owners} == {(socket.gethostname(), "1")}
        assert wait_until(lambda: ended(one.http, ids), 60)
        for job_id in ids:
            done = job(one.http, job_id)
            detail = [(a["attempt"], a["outcome"]) for a in done["attempts_detail"]]
            assert (done["status"], detail) == ("completed", [(1, "completed")]), done
        assert page.started == 4  # none was taken for lost and run again
        assert not any("recovered" in line for line in one.output + two.output)
    finally:
        one.terminate()
        if two is not None:
            two.terminate()


# --- a cancel through another node --------------------------------------------------------------


def test_a_job_cancelled_through_another_node_stops_at_once_on_the_node_running_it(
    tmp_path: Path, site: TargetSite, db_url: str
) -> None:
    """The running node hears of the cancel through the change notices: with a 10-minute lease (and
    fetch timeout) its next heartbeat would come only after 200 s, well past this test's waits."""
    cut = threading.Event()

    async def endless(request: web.Request) -> web.Response:
        try:
            await asyncio.sleep(300)
        except asyncio.CancelledError:
            cut.set()  # the fetch that ran the job went away
            raise
        return web.Response(text="<p>late</p>", content_type="text/html")

    url = site.add("/endless", endless)
    runner = node(tmp_path, "runner", db_url, LITEJOBS_QUEUE_LEASE_S="600", LITEJOBS_FETCH_TIMEOUT_S="600")
    other = node(tmp_path, "other", db_url, LITEJOBS_QUEUE_ENABLED="false")
    try:
        job_id = runner.http.submit({"url": url}, timeout_s=600)["job_id"]
        assert wait_until(lambda: site.hits["/endless"] == 1, 30)
        cancelled = other.http.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status == 200 and cancelled.json["status"] == "cancelled", cancelled.body

        assert wait_until(cut.is_set, 60), "the running node went on fetching the cancelled job"
        assert wait_until(lambda: runner.http.get("/v1/stats").json["workers"]["busy"] == 0, 30)
        done = job(runner.http, job_id)
        assert done["status"] == "cancelled"
        assert [a["outcome"] for a in done["attempts_detail"]] == ["cancelled"]
    finally:
        runner.terminate()
        other.terminate()


def test_the_clients_wait_out_a_short_outage_of_the_database(
    tmp_path: Path, site: TargetSite, own_pg: OwnPostgres, db_url: str
) -> None:
    """A read through litejobs' client during a PostgreSQL restart answers once the database is back
    (it raised RemoteError on the first 503 before); a write without an Idempotency-Key is not resent."""
    from litejobs.client import Client
    from litejobs.errors import StoreUnavailable

    url = site.add_html("/client-outage", "<p>x</p>")
    server = node(tmp_path, "client", db_url)
    try:
        client = Client(server.base_url, timeout_s=30)
        job_id = client.submit("fetch", {"url": url})["job_id"]
        assert client.wait(job_id, timeout_s=30)["status"] == "completed"
        own_pg.stop_fast()
        restart = threading.Timer(3.0, own_pg.start_again)
        restart.start()
        try:
            with pytest.raises(StoreUnavailable):
                client.submit("fetch", {"url": url})  # no key: not sent again
            assert client.get(job_id)["status"] == "completed"  # waited out: answered after the restart
        finally:
            restart.join()
        assert client.get(job_id)["status"] == "completed"
    finally:
        server.terminate()
