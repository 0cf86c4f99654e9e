"""A crawl's stored page: its shape when loaded (outputs, title, in-scope links) or when it failed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litejobs.errors import JobError
from litejobs.extract import Document
from litejobs.kinds.crawl_input import CrawlParams
from litejobs.kinds.fetch import build_outputs
from litejobs.urls import Scope, normalize_url

#: the private key of a stored page that lists its new in-scope links, for a resumed crawl
LINKS_KEY = "_links"


def digest_page(url: str, depth: int, loaded: Mapping[str, Any], params: CrawlParams, scope: Scope) -> dict[str, Any]:
    """A stored page from a loaded one, with its in-scope links (CPU work: runs in a thread)."""
    outputs = build_outputs(loaded, params.page.output, params.page.extract)
    content_type = loaded["content_type"]
    doc = Document(loaded["html"], loaded["final_url"]) if "html" in content_type or not content_type else None
    status = loaded["status_code"]
    page: dict[str, Any] = {"url": url, "depth": depth, "status_code": status, "success": status < 400}
    page["title"] = doc.title() if doc else None
    page.update(outputs)
    page["error"] = None if status < 400 else {"code": "upstream_status", "message": f"the page answered HTTP {status}"}
    if doc is not None and depth < params.max_depth:
        normalised = (normalize_url(link) for link in doc.links())
        page[LINKS_KEY] = list(dict.fromkeys(u for u in normalised if u is not None and scope.admits(u)))
    return page


def failed_page(url: str, depth: int, exc: BaseException) -> dict[str, Any]:
    """A page that could not be had: no content, yet every page's keys (final_url its URL, content_type null)."""
    code, message = (exc.code, exc.message) if isinstance(exc, JobError) else ("internal_error", repr(exc))
    page = {"url": url, "depth": depth, "status_code": getattr(exc, "status_code", None), "success": False}
    return {**page, "title": None, "final_url": url, "content_type": None, "error": {"code": code, "message": message}}
