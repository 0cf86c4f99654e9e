"""HostGate: per-host request limits (in flight, and spacing) shared by every job in the process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

#: a robots.txt Crawl-delay is honoured up to this; a larger one would stall a crawl for hours
MAX_CRAWL_DELAY_S = 60.0
#: crawl delays remembered at once (the oldest is forgotten first)
MAX_REMEMBERED_HOSTS = 10_000


class Gate(Protocol):
    """What crawl, map and robots.txt call around each request to a host: HostGate holds the limits
    for one process, SharedHostGate (litejobs/shared_politeness.py) for every node on one PostgreSQL."""

    def slot(self, host: str) -> AbstractAsyncContextManager[None]:
        """Enter before the request starts, leave when it is done."""

    def set_crawl_delay(self, host: str, delay_s: float) -> None:
        """Space requests to `host` by a robots.txt Crawl-delay (when longer than the configured delay)."""

    def delay_s(self, host: str) -> float:
        """The spacing between request starts to `host`, as far as this process knows."""


@dataclass
class _Host:
    slots: asyncio.Semaphore
    #: when the next request to this host may start (clock seconds)
    next_start_at: float = 0.0
    #: tasks holding or waiting for a slot
    users: int = 0
    #: requests holding a slot
    active: int = 0


@dataclass
class HostGate:
    """`async with gate.slot(host):` around each request to `host` (`host[:port]`).

    At most `per_host_concurrency` requests to one host are in flight, and their starts are at least
    `per_host_delay_ms` apart — or the host's robots.txt Crawl-delay apart, when that is longer. One
    gate serves the whole process, so ten crawls of one site share its limits.
    """

    per_host_concurrency: int
    per_host_delay_ms: int = 0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
    _hosts: dict[str, _Host] = field(default_factory=dict, init=False, repr=False)
    _crawl_delays: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def set_crawl_delay(self, host: str, delay_s: float) -> None:
        """Remember a host's robots.txt Crawl-delay (capped at MAX_CRAWL_DELAY_S)."""
        self._crawl_delays.pop(host, None)
        self._crawl_delays[host] = min(max(0.0, delay_s), MAX_CRAWL_DELAY_S)
        while len(self._crawl_delays) > MAX_REMEMBERED_HOSTS:
            del self._crawl_delays[next(iter(self._crawl_delays))]

    def delay_s(self, host: str) -> float:
        """The spacing between request starts to `host`."""
        return max(self.per_host_delay_ms / 1000, self._crawl_delays.get(host, 0.0))

    def in_flight(self, host: str) -> int:
        state = self._hosts.get(host)
        return 0 if state is None else state.active

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(asyncio.Semaphore(self.per_host_concurrency))
        state.users += 1
        try:
            async with state.slots:
                await self._wait_turn(host, state)
                state.active += 1
                try:
                    yield
                finally:
                    state.active -= 1
        finally:
            state.users -= 1
            self._forget_if_idle(host, state)

    async def _wait_turn(self, host: str, state: _Host) -> None:
        delay_s = self.delay_s(host)
        if delay_s <= 0:
            return
        now = self.clock()
        # Reserve the start time before sleeping, so that requests queued together space themselves out.
        start_at = max(now, state.next_start_at)
        state.next_start_at = start_at + delay_s
        if start_at > now:
            await self.sleep(start_at - now)

    def _forget_if_idle(self, host: str, state: _Host) -> None:
        # Only an idle host whose spacing has run out may go: keeping it would be the same as forgetting it.
        if state.users == 0 and state.next_start_at <= self.clock() and self._hosts.get(host) is state:
            del self._hosts[host]
