"""A batch under an Idempotency-Key takes no key its caller could send: its jobs after the first are
stored under keys joined by a control character, so `order-x#1` stays the caller's own. Batches
stored under the old `K#n` keys still replay until they expire. Both stores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from litejobs.api.auth import ANONYMOUS
from litejobs.engine import request_hash
from tests.support import ServerThread, TargetSite, make_config


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    store = {"url": request.getfixturevalue("pg_url")} if request.param == "postgresql" else {}
    with ServerThread(make_config(tmp_path, store=store)) as running:
        yield running


def later(site: TargetSite, name: str) -> dict[str, Any]:
    """A job submission that stays delayed for the whole test: nothing is fetched."""
    return {"input": {"url": site.url(f"/{name}")}, "delay_s": 3600}


def job_ids(server: ServerThread) -> set[str]:
    return {job["job_id"] for job in server.http.get("/v1/jobs?limit=1000").json["jobs"]}


def test_a_batch_under_a_key_leaves_the_keys_with_a_hash_suffix_to_the_caller(
    server: ServerThread, site: TargetSite
) -> None:
    batch = {"jobs": [later(site, "a"), later(site, "b"), later(site, "c")]}

    single = server.http.post("/v1/jobs", later(site, "single"), headers={"Idempotency-Key": "order-x#1"})
    first = server.http.post("/v1/jobs/batch", batch, headers={"Idempotency-Key": "order-x"})
    second = server.http.post("/v1/jobs", later(site, "other"), headers={"Idempotency-Key": "order-x#2"})

    assert (single.status, first.status, second.status) == (202, 202, 202)
    ids = [job["job_id"] for job in first.json["jobs"]]
    assert len({single.json["job_id"], second.json["job_id"], *ids}) == 5
    again = server.http.post("/v1/jobs/batch", batch, headers={"Idempotency-Key": "order-x"})
    assert again.status == 200 and again.headers["idempotent-replayed"] == "true"
    assert [job["job_id"] for job in again.json["jobs"]] == ids
    replayed = server.http.post("/v1/jobs", later(site, "single"), headers={"Idempotency-Key": "order-x#1"})
    assert replayed.status == 200 and replayed.json["job_id"] == single.json["job_id"]
    # the key itself still belongs to the batch: another body under it, batch or single, is refused
    key = {"Idempotency-Key": "order-x"}
    assert server.http.post("/v1/jobs/batch", {"jobs": [later(site, "a")]}, headers=key).status == 409
    assert server.http.post("/v1/jobs", later(site, "a"), headers=key).status == 409


def test_a_batch_stored_under_the_old_hash_suffix_keys_still_replays(server: ServerThread, site: TargetSite) -> None:
    batch = {"jobs": [later(site, "a"), later(site, "b"), later(site, "c")]}
    # what a server before the change stored: the first job under the key, the n-th under `key#n`,
    # each bound to the canonical hash of the whole batch
    assert server.app is not None
    engine = server.app.engine
    specs = [
        replace(
            engine.build_spec(item, ANONYMOUS),
            idempotency_key="nightly" if index == 0 else f"nightly#{index}",
            request_hash=request_hash(batch),
        )
        for index, item in enumerate(batch["jobs"])
    ]
    stored = [s.job.id for s in server.call(engine.submit(specs))]
    before = job_ids(server)

    replay = server.http.post("/v1/jobs/batch", batch, headers={"Idempotency-Key": "nightly"})

    assert replay.status == 200 and replay.headers["idempotent-replayed"] == "true"
    assert [job["job_id"] for job in replay.json["jobs"]] == stored
    assert job_ids(server) == before  # nothing stored twice
    other = server.http.post("/v1/jobs/batch", {"jobs": [later(site, "z")]}, headers={"Idempotency-Key": "nightly"})
    assert other.status == 409 and other.json["error"]["code"] == "idempotency_conflict"
    assert server.http.post("/v1/jobs", later(site, "a"), headers={"Idempotency-Key": "nightly"}).status == 409
    assert job_ids(server) == before
