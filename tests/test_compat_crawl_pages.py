"""A crawl's pages through the dialects that read jobs: in each vendor's shape, `?offset=&limit=` at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.support import Http, ServerThread, TargetSite, make_config
from tests.test_compat_common import poll

KEY = "crawl-key"
HOME = "<title>Home</title><h1>Home</h1><a href='/a'>a</a> <a href='/b'>b</a>"
PAGES = {"/": HOME, "/a": "<title>A</title><h1>Page A</h1>", "/b": "<title>B</title><h1>Page B</h1>"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path, auth={"keys": [KEY]})) as running:
        yield running


@pytest.fixture
def start_url(site: TargetSite) -> str:
    for path, html in PAGES.items():
        site.add_html(path, html)
    return site.url("/")


def crawled(api: ServerThread, start_url: str) -> str:
    """A three-page crawl submitted natively (any dialect reads any job), once it has completed."""
    alice = Http(api.base_url, KEY)
    job_id = alice.submit({"url": start_url, "max_pages": 3, "respect_robots": False}, "crawl")["job_id"]
    assert alice.wait(job_id)["status"] == "completed"
    return job_id  # type: ignore[no-any-return]


def headings(markdowns: list[Any]) -> list[str]:
    return [str(text).splitlines()[0] for text in markdowns]


def stored_order(api: ServerThread, job_id: str) -> list[str]:
    """The pages' headings as the native result lists them: the home page first, then /a and /b in the
    order they finished (fetched together, so either may come first); each dialect pages through that."""
    pages = Http(api.base_url, KEY).get(f"/v1/jobs/{job_id}/result").json["pages"]
    order = headings([p["markdown"] for p in pages])
    assert order[0] == "# Home" and sorted(order[1:]) == ["# Page A", "# Page B"]
    return order


def test_a_scrapellm_crawl_scraper_gives_its_pages_with_its_counts(api: ServerThread, start_url: str) -> None:
    query = urlencode({"api_key": KEY, "url": start_url, "max_pages": 3, "respect_robots": "false"})
    job = Http(api.base_url).post(f"/compat/scrapellm/scrapers/crawl/jobs?{query}").json
    path = f"/compat/scrapellm/jobs/{job['job_id']}"
    done = poll(lambda: Http(api.base_url).get(path), lambda b: b["status"] != "pending")
    result = done["result"]
    order = stored_order(api, job["job_id"])
    assert done["status"] == "done" and result["pages_crawled"] == 3
    assert headings([p["markdown"] for p in result["pages"]]) == order
    assert result["total_pages"] == 3 and result["next_offset"] is None
    second = Http(api.base_url).get(f"{path}?offset=1&limit=1").json["result"]
    assert headings([p["markdown"] for p in second["pages"]]) == order[1:2] and second["next_offset"] == 2


def test_scraperapi_gives_a_crawls_pages_in_its_response(api: ServerThread, start_url: str) -> None:
    job_id = crawled(api, start_url)
    response = Http(api.base_url).get(f"/compat/scraperapi/jobs/{job_id}?limit=2").json["response"]
    assert headings([p["markdown"] for p in response["pages"]]) == stored_order(api, job_id)[:2]
    assert response["total_pages"] == 3 and response["next_offset"] == 2
    assert response["body"] == "" and response["statusCode"] is None  # no one page is the answer


def test_omniscrape_gives_a_crawls_pages_in_its_result_data(api: ServerThread, start_url: str) -> None:
    job_id = crawled(api, start_url)
    polled = Http(api.base_url).get(f"/compat/omniscrape/v1/jobs/{job_id}?offset=2", headers={"X-API-Key": KEY})
    data = polled.json["data"]["result"]["data"]
    assert headings([p["markdown"] for p in data["pages"]]) == stored_order(api, job_id)[2:]
    assert data["total_pages"] == 3 and data["next_offset"] is None


def test_spidra_gives_a_crawls_pages_as_its_data_entries(api: ServerThread, start_url: str) -> None:
    job_id = crawled(api, start_url)
    result = Http(api.base_url).get(f"/compat/spidra/api/scrape/{job_id}?limit=2", headers={"x-api-key": KEY}).json
    entries = result["result"]["data"]
    order = stored_order(api, job_id)[:2]
    second = order[1][-1]  # "A" or "B": whichever finished first
    assert [(e["url"], e["title"], e["success"]) for e in entries] == [
        (start_url, "Home", True),
        (start_url + second.lower(), second, True),
    ]
    assert headings([e["markdownContent"] for e in entries]) == order
    assert result["result"]["total_pages"] == 3 and result["result"]["next_offset"] == 2
