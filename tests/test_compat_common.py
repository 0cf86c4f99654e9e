"""What every dialect shares: the mounts, one job table, reads by job id, and vendor error bodies."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from litejobs.jobs import JobResult, JobState
from litejobs.kinds import KindContext
from tests.file_kinds import png_like
from tests.support import Http, Response, ServerThread, TargetSite, make_config

ALICE, BOB = "k-alice", "k-bob"
#: plugin kinds that no dialect submits itself, whose inputs and outputs are not a fetch's
PLUGINS = {
    "odd": "tests.test_compat_common:odd_outputs",
    "shout": "tests.plugin_example:shout",
    "snapshot": "tests.file_kinds:snapshot",
}
#: every dialect's status and result routes, with the key as its clients send it (none: the id is enough)
READS = {
    "scraperapi": ("/compat/scraperapi/jobs/{id}", {}),
    "scrapellm": ("/compat/scrapellm/jobs/{id}", {}),
    "scrapio": ("/compat/scrapio/v1/jobs/{id}", {"Authorization": f"Bearer {ALICE}"}),
    "scrapio result": ("/compat/scrapio/v1/jobs/{id}/result", {"Authorization": f"Bearer {ALICE}"}),
    "omniscrape": ("/compat/omniscrape/v1/jobs/{id}", {"X-API-Key": ALICE}),
    "spidra": ("/compat/spidra/api/scrape/{id}", {"x-api-key": ALICE}),
}


async def odd_outputs(input: dict[str, Any], ctx: KindContext) -> JobResult:
    """A plugin kind whose outputs and stats use names the dialects read, holding other types."""
    outputs = {"pages": [1, "two", {"title": 3}], "headers": ["x"], "html": 5, "status_code": "n/a"}
    return JobResult(JobState.COMPLETED, outputs, {"elapsed_ms": "fast", "ai": "none", "duration_ms": []})


odd_outputs.input_schema = {}  # type: ignore[attr-defined]


def poll(read: Callable[[], Response], done: Callable[[Any], bool], timeout_s: float = 15) -> Any:
    """Poll as the vendors' docs do (every 50 ms here) until `done(body)`, for at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        resp = read()
        assert resp.status == 200, (resp.status, resp.body)
        if done(resp.json) or time.monotonic() > deadline:
            return resp.json
        time.sleep(0.05)


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path, auth={"keys": [ALICE, BOB]})) as running:
        yield running


@pytest.mark.parametrize(
    "path",
    [
        "/compat/scraperapi/jobs",
        "/compat/scrapio/v1/jobs",
        "/compat/omniscrape/v1/scrape/async",
        "/compat/spidra/api/scrape",
        "/compat/scrapellm/scrapers/fetch/jobs",
    ],
)
def test_every_vendor_is_mounted_and_validates_like_the_native_api(server: ServerThread, path: str) -> None:
    resp = server.http.post(path, {"nonsense": 1})
    assert resp.status == 422, resp.body


def test_an_unknown_vendor_is_404(server: ServerThread) -> None:
    assert server.http.post("/compat/nope/jobs", {"url": "https://example.com"}).status == 404


def test_a_vendor_job_is_a_native_job_with_the_same_owner(keyed: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<h1>Hi</h1>")
    submitted = Http(keyed.base_url).post("/compat/scraperapi/jobs", {"apiKey": ALICE, "url": url, "meta": {"r": 7}})
    job_id = submitted.json["id"]
    native = Http(keyed.base_url, ALICE).wait(job_id)
    assert native["kind"] == "fetch" and native["status"] == "completed" and native["meta"] == {"r": 7}
    assert native["max_attempts"] == 3 and native["expires_at"]
    assert Http(keyed.base_url, BOB).get(f"/v1/jobs/{job_id}").status == 403
    listed = Http(keyed.base_url, ALICE).get("/v1/jobs").json["jobs"]
    assert [j["job_id"] for j in listed] == [job_id]


def test_a_job_url_works_without_a_key_and_a_presented_key_must_own_it(keyed: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<h1>Hi</h1>")
    job_id = Http(keyed.base_url).post("/compat/scraperapi/jobs", {"apiKey": BOB, "url": url}).json["id"]
    anyone = Http(keyed.base_url)
    assert anyone.get(f"/compat/scraperapi/jobs/{job_id}").status == 200
    assert anyone.get(f"/compat/scrapellm/jobs/{job_id}").status == 200
    assert Http(keyed.base_url, ALICE).get(f"/compat/scraperapi/jobs/{job_id}").status == 403
    assert Http(keyed.base_url, "k-wrong").get(f"/compat/scraperapi/jobs/{job_id}").status == 401
    assert anyone.get("/compat/scraperapi/jobs/job_00000000000000000000000000000000").status == 404
    assert anyone.get("/compat/scraperapi/jobs/not-a-job").status == 404


def test_routes_that_the_vendors_guard_still_need_a_key(keyed: ServerThread) -> None:
    anyone = Http(keyed.base_url)
    assert anyone.post("/compat/scraperapi/jobs", {"url": "https://example.com"}).status == 401
    assert anyone.get("/compat/scrapio/v1/jobs/job_x").status == 401
    spidra = anyone.get("/compat/spidra/api/scrape/job_x")
    assert spidra.status == 401 and spidra.json["status"] == "error" and "API key" in spidra.json["message"]
    omni = anyone.get("/compat/omniscrape/v1/jobs/job_x")
    assert omni.status == 401 and omni.json["success"] is False and omni.json["error"]["code"] == "unauthorized"


def test_every_dialect_reads_a_job_of_any_kind(tmp_path: Path, site: TargetSite) -> None:
    url = site.add_html("/", "<h1>Hi</h1>")
    inputs = {
        "fetch": {"url": url},
        "multi_fetch": {"urls": [url]},
        "crawl": {"url": url, "max_pages": 1, "respect_robots": False},
        "map": {"url": url, "use_sitemap": False},
        "shout": {"text": "hi"},
        "snapshot": {"size": 64},
        "odd": {},
    }
    with ServerThread(make_config(tmp_path, auth={"keys": [ALICE]}, kinds=PLUGINS)) as api:
        alice = Http(api.base_url, ALICE)
        jobs = {kind: alice.submit(raw, kind)["job_id"] for kind, raw in inputs.items()}
        assert {kind: alice.wait(job_id)["status"] for kind, job_id in jobs.items()} == dict.fromkeys(
            inputs, "completed"
        )
        answers = {
            (dialect, kind): Http(api.base_url).get(path.format(id=job_id), headers=headers).status
            for dialect, (path, headers) in READS.items()
            for kind, job_id in jobs.items()
        }
    assert answers == dict.fromkeys(answers, 200)


def test_a_scrapellm_file_link_is_absolute_and_serves_the_file_with_the_key(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path, auth={"keys": [ALICE]}, kinds=PLUGINS)) as api:
        anyone = Http(api.base_url)
        job = anyone.post(f"/compat/scrapellm/scrapers/snapshot/jobs?api_key={ALICE}&size=64").json
        done = poll(lambda: anyone.get(f"/compat/scrapellm/jobs/{job['job_id']}"), lambda b: b["status"] != "pending")
        link = done["result"]["file"]
        assert link == f"{api.base_url}/v1/files/{job['job_id']}/snapshot.png"
        served = anyone.get(f"{link[len(api.base_url) :]}?api_key={ALICE}")
        assert served.status == 200 and served.body == png_like(64)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/compat/scraperapi/jobs", {"url": "{url}"}),
        ("/compat/spidra/api/scrape", {"urls": ["{url}"]}),
        ("/compat/scrapellm/scrapers/fetch/jobs", {"url": "{url}"}),
    ],
)
def test_without_a_queue_a_dialect_with_no_sync_route_names_the_native_one_by_its_url(
    tmp_path: Path, site: TargetSite, path: str, body: dict[str, Any]
) -> None:
    url = site.add_html("/", "<h1>Hi</h1>")
    with ServerThread(make_config(tmp_path, queue={"enabled": False})) as api:
        sent = {name: [url] if isinstance(value, list) else url for name, value in body.items()}
        refused = api.http.post(path, sent)
        named = f"POST {api.base_url}/v1/scrape"
        assert refused.status == 503 and named in refused.body.decode() and "native API" in refused.body.decode()
        assert api.http.post("/v1/scrape", {"url": url}).json["status"] == "completed"  # the route exists
