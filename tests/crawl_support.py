"""Helpers of the crawl tests: submit a crawl and wait for it, page through its result, its page set."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.support import Http


def crawl(http: Http, options: dict[str, Any] | None = None, **input: Any) -> dict[str, Any]:
    job = http.submit(input, kind="crawl", **{"timeout_s": 120, **(options or {})})
    return http.wait(job["job_id"], 60)


def all_pages(http: Http, job_id: str, limit: int = 100) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    offset: int | None = 0
    for _ in range(1000):
        if offset is None:
            return pages
        body = http.get(f"/v1/jobs/{job_id}/result?offset={offset}&limit={limit}").json
        pages += body["pages"]
        offset = body["next_offset"]
    raise AssertionError("paging did not end")


def page_set(pages: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(urlsplit(p["url"]).path, p["depth"]) for p in pages}
