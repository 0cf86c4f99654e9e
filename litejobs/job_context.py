"""JobContext: what a running job sees of the server (the KindContext of a queued job), and the
Resources every job shares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from litejobs.config import Config
from litejobs.events import ChangeFeed
from litejobs.files import FileArea
from litejobs.store import Store, StoredFile, StoreUnavailable

log = logging.getLogger("litejobs.worker")


@dataclass
class Resources:
    """What kinds may use, handed to every JobContext."""

    config: Config
    fetcher: Any
    browser: Any = None
    files: FileArea | None = None
    #: per-host politeness shared by every running job (litejobs.politeness.HostGate)
    host_gate: Any = None


class ResourceView:
    """What every KindContext shares: the server's resources, by name."""

    resources: Resources

    @property
    def config(self) -> Config:
        return self.resources.config

    @property
    def fetcher(self) -> Any:
        return self.resources.fetcher

    @property
    def browser(self) -> Any:
        return self.resources.browser

    @property
    def host_gate(self) -> Any:
        return self.resources.host_gate


@dataclass
class JobContext(ResourceView):
    """The KindContext a running job sees."""

    job_id: str
    attempt: int
    resources: Resources
    _store: Store
    _feed: ChangeFeed
    _clock: Callable[[], int]
    files_saved: list[dict[str, Any]] = field(default_factory=list)
    #: the pool's hook for lending this job's slot while it waits (see parked)
    _park: Callable[[str, bool], None] | None = None
    #: the attempt's time budget: the job's timeout_s (see KindContext.timeout_s)
    timeout_s: float | None = None
    #: whether the attempt's clock stands still while it is parked (Kind.clock_stops_while_parked)
    clock_stops_while_parked: bool = False
    #: seconds spent parked so far; since when (event-loop time) it is parked now; parks open (a
    #: crawl's renders may queue together); set while none is
    _parked_s: float = 0.0
    _parked_since: float | None = None
    _parks: int = 0
    _unparked: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._unparked.set()

    @contextlib.asynccontextmanager
    async def parked(self) -> AsyncIterator[None]:
        """While parked the job is queued for a resource, not working: its slot is lent out and, for a
        kind whose clock stops while parked (one page: fetch, render, interact), its timeout_s does not
        run (parked_s), so a burst of renders does not time out queueing for pages. Parks may overlap
        (several renders of one crawl): the job is parked from the first one's start to the last's end."""
        if self._park is None:
            yield
            return
        loop = asyncio.get_running_loop()
        self._parks += 1
        if self._parks == 1:
            self._parked_since = loop.time()
            self._unparked.clear()
            self._park(self.job_id, True)
        try:
            yield
        finally:
            self._parks -= 1
            if self._parks == 0 and self._parked_since is not None:
                self._parked_s += loop.time() - self._parked_since
                self._parked_since = None
                self._unparked.set()
                self._park(self.job_id, False)

    def parked_s(self) -> float:
        """The time this attempt's clock stood still so far (the ongoing park included)."""
        if not self.clock_stops_while_parked:
            return 0.0
        now = asyncio.get_running_loop().time()
        return self._parked_s + (now - self._parked_since if self._parked_since is not None else 0.0)

    def clock_stands_still(self) -> bool:
        """Whether the attempt's clock stands still now (parked, and its kind's clock stops)."""
        return self.clock_stops_while_parked and self._parks > 0

    async def while_parked(self, work: asyncio.Future[Any]) -> None:
        """Wait until `work` ends or the job is parked no more."""
        unparked = asyncio.ensure_future(self._unparked.wait())
        try:
            await asyncio.wait({work, unparked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            unparked.cancel()

    async def save_pages(self, pages: list[dict[str, Any]]) -> None:
        await self._store.add_pages(self.job_id, pages)

    async def saved_pages(self, offset: int, limit: int) -> list[dict[str, Any]]:
        return await self._store.pages(self.job_id, offset, limit)

    async def saved_page_urls(self) -> list[str]:
        return await self._store.page_urls(self.job_id)

    async def report_progress(self, message: str, progress: float | None = None) -> None:
        """Advisory: a report the database cannot take now is dropped, and the job goes on (the next
        report, or the outcome, says more), rather than failing an attempt whose work is fine."""
        value = {"message": message, "progress": None if progress is None else max(0.0, min(1.0, progress))}
        try:
            await self._store.set_progress(self.job_id, value, self._clock())
            job = await self._store.get(self.job_id)
        except StoreUnavailable:
            log.debug("job %s: progress not recorded, the database cannot be reached", self.job_id)
            return
        if job is not None:
            self._feed.publish(job)

    async def save_file(self, name: str, data: bytes, content_type: str) -> str:
        assert self.resources.files is not None, "no file area configured"
        await self.resources.files.write(self.job_id, name, data)
        await self._store.add_file(StoredFile(self.job_id, name, content_type, len(data)))
        self.files_saved.append({"name": name, "content_type": content_type, "size": len(data)})
        return f"/v1/files/{self.job_id}/{name}"
