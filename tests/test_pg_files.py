"""Stored files on PostgreSQL: in the database unless files_dir is set, so that any node serves a
file another node wrote; gone with their job; served to their owner only, as from disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from litejobs.files import MAX_DB_FILE_BYTES
from tests.file_kinds import PNG_MAGIC, png_like
from tests.pg import pg_rows
from tests.support import FakeClock, Http, ServerProcess, ServerThread, TargetSite, make_config

KIND = {"snapshot": "tests.file_kinds:snapshot"}


def node(tmp_path: Path, name: str, pg_url: str, **env: str) -> ServerProcess:
    """A `litejobs serve` on the shared database, its own SQLite path (so its own default folder)."""
    return ServerProcess(
        tmp_path / f"{name}.db",
        env={
            "LITEJOBS_STORE_URL": pg_url,
            "LITEJOBS_AUTH_KEYS": "owner-key,other-key",
            "LITEJOBS_KINDS_SNAPSHOT": "tests.file_kinds:snapshot",
            **env,
        },
    )


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock, pg_url: str) -> Iterator[ServerThread]:
    """One node on PostgreSQL, no files_dir: files go in the database."""
    config = make_config(tmp_path, store={"url": pg_url}, kinds=KIND)
    with ServerThread(config, clock=clock) as running:
        yield running


@pytest.mark.slow
def test_a_file_one_node_saved_is_served_by_the_other(tmp_path: Path, pg_url: str) -> None:
    # a runs the jobs; b runs none (so cannot have written the file) and has no folder in common with a
    a, b = node(tmp_path, "a", pg_url), node(tmp_path, "b", pg_url, LITEJOBS_QUEUE_ENABLED="false")
    try:
        owner_a, owner_b = Http(a.base_url, "owner-key"), Http(b.base_url, "owner-key")
        job = owner_a.submit({"size": 300_000}, kind="snapshot")
        assert owner_a.wait(job["job_id"])["status"] == "completed"
        path = owner_a.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["file"]

        served = owner_b.get(path)
        assert served.status == 200 and served.body == png_like(300_000)
        assert served.body.startswith(PNG_MAGIC)
        assert served.headers["content-type"] == "image/png" and served.headers["content-length"] == "300000"
        assert Http(b.base_url, "other-key").get(path).status == 403
        assert Http(b.base_url).get(path).status == 401
        assert owner_b.get(f"/v1/files/{job['job_id']}/other.png").status == 404
        assert not (tmp_path / "a.db.files").exists()  # the bytes are in the database, not on a's disk
    finally:
        a.terminate()
        b.terminate()


def test_a_file_kept_in_the_database_goes_with_its_job(server: ServerThread, clock: FakeClock, pg_url: str) -> None:
    job = server.http.submit({"size": 5000}, kind="snapshot")
    assert server.http.wait(job["job_id"])["status"] == "completed"
    path = f"/v1/files/{job['job_id']}/snapshot.png"
    assert server.http.get(path).body == png_like(5000)
    assert pg_rows(pg_url, "SELECT count(*) FROM file_data")[0][0] == 1

    clock.advance(server.config.store.retention_s + 1)
    assert server.app is not None
    assert server.call(server.app.sweeper.sweep_once()) == [job["job_id"]]

    assert server.http.get(path).status == 404
    assert pg_rows(pg_url, "SELECT count(*) FROM file_data")[0][0] == 0


def test_a_file_over_the_database_cap_fails_its_job_with_file_too_large(server: ServerThread, pg_url: str) -> None:
    job = server.http.submit({"size": MAX_DB_FILE_BYTES + 1}, kind="snapshot")
    done = server.http.wait(job["job_id"])
    assert done["status"] == "failed" and done["error"]["code"] == "file_too_large", done["error"]
    assert "files_dir" in done["error"]["message"]
    assert pg_rows(pg_url, "SELECT count(*) FROM file_data")[0][0] == 0


def test_with_files_dir_set_files_stay_in_that_folder(tmp_path: Path, pg_url: str) -> None:
    shared = tmp_path / "shared"
    config = make_config(tmp_path, store={"url": pg_url, "files_dir": str(shared)}, kinds=KIND)
    with ServerThread(config) as server:
        job = server.http.submit({"size": 5000}, kind="snapshot")
        assert server.http.wait(job["job_id"])["status"] == "completed"
        served = server.http.get(f"/v1/files/{job['job_id']}/snapshot.png")
        assert served.status == 200 and served.body == png_like(5000)
    assert (shared / job["job_id"] / "snapshot.png").read_bytes() == png_like(5000)
    assert pg_rows(pg_url, "SELECT count(*) FROM file_data")[0][0] == 0


@pytest.mark.slow
@pytest.mark.browser
def test_a_real_screenshot_taken_on_one_node_is_served_by_the_other(
    tmp_path: Path, pg_url: str, site: TargetSite
) -> None:
    url = site.add_html("/page", "<html><body><h1>Shot</h1></body></html>")
    a, b = node(tmp_path, "a", pg_url), node(tmp_path, "b", pg_url, LITEJOBS_QUEUE_ENABLED="false")
    try:
        owner_a, owner_b = Http(a.base_url, "owner-key"), Http(b.base_url, "owner-key")
        job = owner_a.submit({"url": url, "render_js": True, "output": ["screenshot"]})
        assert owner_a.wait(job["job_id"], 90)["status"] == "completed"
        result = owner_a.get(f"/v1/jobs/{job['job_id']}/result").json
        image = owner_b.get(result["outputs"]["screenshot"])
        assert image.status == 200 and image.headers["content-type"] == "image/png"
        assert image.body.startswith(PNG_MAGIC) and len(image.body) == result["stats"]["files"][0]["size"]
        assert Http(b.base_url, "other-key").get(result["outputs"]["screenshot"]).status == 403
    finally:
        a.terminate()
        b.terminate()
