"""A crawl's input: its pages' fetch options, its limits and its scope (docs/crawl.md, "Input")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litejobs.fields import Fields
from litejobs.kinds.fetch import BROWSER_OUTPUTS, FetchParams, read_fetch_fields

DEFAULT_MAX_PAGES = 50
DEFAULT_MAX_DEPTH = 2
MAX_DEPTH = 100
MAX_PATTERNS = 100


@dataclass(frozen=True)
class CrawlParams:
    url: str
    page: FetchParams
    max_pages: int = DEFAULT_MAX_PAGES
    max_depth: int = DEFAULT_MAX_DEPTH
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    same_domain: bool = True
    allow_subdomains: bool = False
    respect_robots: bool = True


def parse_crawl(raw: Mapping[str, Any]) -> CrawlParams:
    f = Fields(raw, "input")
    values = read_fetch_fields(f)
    crawl = {
        "max_pages": f.int("max_pages", DEFAULT_MAX_PAGES, low=1, high=1_000_000),
        "max_depth": f.int("max_depth", DEFAULT_MAX_DEPTH, low=0, high=MAX_DEPTH),
        "include": tuple(_patterns(f, "include")),
        "exclude": tuple(_patterns(f, "exclude")),
        "same_domain": f.bool("same_domain", True),
        "allow_subdomains": f.bool("allow_subdomains", False),
        "respect_robots": f.bool("respect_robots", True),
    }
    if values["method"] != "GET":
        f.problem("method", "a crawl fetches every page with GET")
    if values["body"] is not None:
        f.problem("body", "a crawl sends no request body")
    for name in BROWSER_OUTPUTS & set(values["output"]):
        f.problem("output", f"{name} is not available per crawl page; use a render job for one page")
    if values["extract"] is not None and values["extract"].prompt:
        # a model call per page would make a 1,000-page crawl 1,000 paid calls: refused, not ignored
        f.problem("extract.prompt", "is not run per crawl page; use multi_fetch or a fetch job for the pages you want")
    f.finish()
    return CrawlParams(url=values["url"], page=FetchParams(**values), **crawl)


def _patterns(f: Fields, key: str) -> list[str]:
    patterns = f.str_list(key, [], max_items=MAX_PATTERNS) or []
    for pattern in patterns:
        if not pattern.strip() or len(pattern) > 1000:
            f.problem(key, "patterns must be 1 to 1000 characters")
    return list(patterns)
