"""Job kinds: each module names a kind, parses its input, and runs it against a KindContext.

A kind is `Kind(name, parse, run)`: `parse(raw_input) -> params` raises ValidationFailed (a 422 at
submit, never a failed job); `run(params, ctx) -> JobResult` raises JobError subclasses on failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from litejobs.errors import UnsupportedKind
from litejobs.jobs import JobResult

if TYPE_CHECKING:
    from litejobs.config import Config
    from litejobs.fetcher import Fetcher


class KindContext(Protocol):
    """What a running job may use: resources and a way to report back. Built by the worker."""

    job_id: str
    attempt: int
    #: the attempt's time budget in seconds (the job's timeout_s; inline, limits.sync_timeout_s; None
    #: when unknown): a kind that does several things shares it out, to answer with what it has in time
    timeout_s: float | None
    config: Config
    fetcher: Fetcher
    #: the browser pool (litejobs.browser.BrowserPool) or None when the server has none
    browser: Any

    #: per-host politeness shared by all jobs (litejobs.politeness.HostGate), or None
    host_gate: Any

    def parked(self) -> AbstractAsyncContextManager[None]:
        """Enter while waiting for a shared resource (a browser page): the job's worker slot is
        lent to other jobs meanwhile, so render jobs queueing for pages do not starve the rest."""

    async def save_pages(self, pages: list[dict[str, Any]]) -> None:
        """Store result pages of a multi-page job as they finish (read back page by page)."""

    async def saved_pages(self, offset: int, limit: int) -> list[dict[str, Any]]:
        """Pages stored by earlier attempts, in order, private keys included (a crawl's resume)."""

    async def saved_page_urls(self) -> list[str]:
        """URLs of pages stored by earlier attempts: a resumed job does not fetch them again."""

    async def report_progress(self, message: str, progress: float | None = None) -> None:
        """Record `{message, progress}` on the job (progress in [0, 1])."""

    async def save_file(self, name: str, data: bytes, content_type: str) -> str:
        """Store an artefact of this job; returns its URL path (/v1/files/{job_id}/{name})."""


@dataclass(frozen=True)
class Kind:
    name: str
    parse: Callable[[Mapping[str, Any]], Any]
    run: Callable[[Any, KindContext], Awaitable[JobResult]]
    #: whether POST /v1/scrape may run this kind inline
    sync_allowed: bool = True
    #: whether the job's timeout_s stands still while it is parked (queued for a browser page): right
    #: for a kind whose whole work is one page; a kind doing several things at once (a crawl) keeps its
    #: clock, or its timeout would bound little
    clock_stops_while_parked: bool = False


class KindRegistry:
    """The kinds a server runs: built-ins plus plugins, by name."""

    def __init__(self, kinds: list[Kind]) -> None:
        self._kinds = {kind.name: kind for kind in kinds}

    def get(self, name: str) -> Kind:
        try:
            return self._kinds[name]
        except KeyError:
            known = ", ".join(sorted(self._kinds))
            raise UnsupportedKind(f"unknown job kind {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def add(self, kind: Kind) -> None:
        self._kinds[kind.name] = kind


def builtin_kinds() -> list[Kind]:
    from litejobs.kinds import fetch

    kinds = [fetch.KIND, fetch.RENDER_KIND]
    for module_name in ("interact", "crawl", "map"):
        try:
            module = __import__(f"litejobs.kinds.{module_name}", fromlist=["KIND"])
        except ModuleNotFoundError:
            continue
        kinds.append(module.KIND)
    return kinds
