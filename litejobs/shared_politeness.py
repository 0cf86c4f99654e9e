"""SharedHostGate: the per-host limits of HostGate, held in PostgreSQL so that they hold across nodes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from litejobs.config import CrawlConfig
from litejobs.politeness import MAX_CRAWL_DELAY_S, MAX_REMEMBERED_HOSTS, Gate, HostGate
from litejobs.store.postgres_hosts import HostTurn

log = logging.getLogger("litejobs.politeness")

#: a waiter re-polls after this, doubling up to MAX_BACKOFF_S; a release it hears of wakes it sooner
FIRST_BACKOFF_S = 0.02
MAX_BACKOFF_S = 1.0
#: a node sweeps idle host rows at most this often (after a release), and a row is idle after HOST_IDLE_S
SWEEP_EVERY_S = 60.0
HOST_IDLE_S = 3600.0


class SharedHosts(Protocol):
    """The store capability SharedHostGate runs on (PostgresStore's HostSlots mixin)."""

    async def take_host_slot(
        self, host: str, holder: str, slots: int, lease_ms: int, delay_ms: int, crawl_delay_ms: int | None = None
    ) -> HostTurn: ...

    async def renew_host_slot(self, host: str, holder: str, lease_ms: int) -> bool: ...

    async def release_host_slot(self, host: str, holder: str) -> None: ...

    async def sweep_hosts(self, idle_s: float) -> int: ...

    def on_host_released(self, callback: Callable[[str], None]) -> None: ...


def host_gate_for(store: Any, crawl: CrawlConfig, node: str) -> Gate:
    """The shared gate when the store offers the capability (PostgreSQL: several nodes may crawl one
    host) and `[crawl] shared_gate` asks for it; the exact, free in-memory HostGate otherwise (SQLite:
    one process; or an operator who trades cross-node limits for two statements less per request)."""
    if not crawl.shared_gate or not hasattr(store, "take_host_slot"):
        return HostGate(crawl.per_host_concurrency, crawl.per_host_delay_ms)
    return SharedHostGate(
        store, crawl.per_host_concurrency, crawl.per_host_delay_ms, lease_s=crawl.host_lease_s, node=node
    )


@dataclass
class SharedHostGate:
    """`async with gate.slot(host):` like HostGate, for every node on the database at once.

    A request first passes this process's own HostGate (so a node's waiters queue in memory, not in
    the database), then leases one of the host's `per_host_concurrency` slots and reserves its start
    in one statement, sleeps until that start, and releases the lease when done: two statements per
    request while nobody waits. A lease lasts `lease_s` and is renewed every third of it while the
    request runs (a rendered page may wait long for a browser tab), so a SIGKILLed node's slots
    come free `lease_s` after its last renewal at most.
    """

    store: SharedHosts
    per_host_concurrency: int
    per_host_delay_ms: int = 0
    lease_s: float = 30.0
    #: names this node's leases (host_leases.holder) for whoever reads the table
    node: str = field(default_factory=lambda: secrets.token_hex(4))
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
    _local: HostGate = field(init=False, repr=False)
    _crawl_delays: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    #: Crawl-delays learned here and not yet written: the host's next statement carries them
    _unsent: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _waiters: dict[str, set[asyncio.Event]] = field(default_factory=dict, init=False, repr=False)
    _tokens: Any = field(default_factory=itertools.count, init=False, repr=False)
    _swept_at: float = field(default_factory=time.monotonic, init=False, repr=False)
    _releases: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self._local = HostGate(self.per_host_concurrency, 0)
        self.store.on_host_released(self._on_release)

    @property
    def lease_ms(self) -> int:
        return max(1, round(self.lease_s * 1000))

    def set_crawl_delay(self, host: str, delay_s: float) -> None:
        """Remember a robots.txt Crawl-delay; the next request to `host` stores it for every node."""
        delay_s = min(max(0.0, delay_s), MAX_CRAWL_DELAY_S)
        self._remember(host, delay_s)
        self._unsent.pop(host, None)
        self._unsent[host] = round(delay_s * 1000)
        while len(self._unsent) > MAX_REMEMBERED_HOSTS:
            del self._unsent[next(iter(self._unsent))]

    def delay_s(self, host: str) -> float:
        """The spacing between request starts to `host`, as this node last saw it in the database."""
        return max(self.per_host_delay_ms / 1000, self._crawl_delays.get(host, 0.0))

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        async with self._local.slot(host):
            holder = f"{self.node}:{next(self._tokens)}"
            try:
                turn = await self._take(host, holder)
            except BaseException:
                # cancelled (or failed) while the statement ran: a lease it took is ours to give back
                await self._release(host, holder)
                raise
            renewing = asyncio.create_task(self._renew(host, holder))
            try:
                if turn.wait_s > 0:
                    await self.sleep(turn.wait_s)
                yield
            finally:
                renewing.cancel()
                await self._release(host, holder)
                await self._sweep_now_and_then()

    async def _take(self, host: str, holder: str) -> HostTurn:
        """Try until a slot is leased: at once again after losing a race for a free slot, else after a
        growing, jittered pause that a release on any node cuts short (NOTIFY). Never a busy loop."""
        woken = asyncio.Event()
        self._waiters.setdefault(host, set()).add(woken)
        backoff_s = FIRST_BACKOFF_S
        try:
            while True:
                woken.clear()
                unsent = self._unsent.pop(host, None)
                try:
                    turn = await self.store.take_host_slot(
                        host, holder, self.per_host_concurrency, self.lease_ms, self.per_host_delay_ms, unsent
                    )
                except BaseException:
                    if unsent is not None:
                        self._unsent.setdefault(host, unsent)
                    raise
                self._remember(host, turn.delay_ms / 1000)
                if turn.slot is not None:
                    return turn
                if turn.free_slots > 1:
                    continue  # another node took the slot this one chose; others looked free
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff_s * random.uniform(0.5, 1.0)):
                        await woken.wait()
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
        finally:
            waiting = self._waiters[host]
            waiting.discard(woken)
            if not waiting:
                del self._waiters[host]

    async def _renew(self, host: str, holder: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                if not await self.store.renew_host_slot(host, holder, self.lease_ms):
                    log.warning("the lease of a request to %s expired before it finished; its slot was free", host)
                    return
            except Exception as exc:  # the database is away: the lease may lapse, the request goes on
                log.warning("could not renew the lease of a request to %s: %r", host, exc)

    async def _release(self, host: str, holder: str) -> None:
        """Shielded: a second cancel must not leave the lease behind (it would hold a slot until it expires)."""
        task = asyncio.ensure_future(self.store.release_host_slot(host, holder))
        self._releases.add(task)
        task.add_done_callback(self._released)
        with contextlib.suppress(Exception):
            await asyncio.shield(task)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releases.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not release a host slot (it frees when its lease expires): %r", task.exception())

    async def _sweep_now_and_then(self) -> None:
        if time.monotonic() - self._swept_at < SWEEP_EVERY_S:
            return
        self._swept_at = time.monotonic()
        try:
            await self.store.sweep_hosts(HOST_IDLE_S)
        except Exception as exc:
            log.warning("could not sweep idle host rows: %r", exc)

    def _on_release(self, host: str) -> None:
        for woken in self._waiters.get(host, ()):
            woken.set()

    def _remember(self, host: str, delay_s: float) -> None:
        if self._crawl_delays.get(host) == delay_s:
            return
        self._crawl_delays.pop(host, None)
        if delay_s > self.per_host_delay_ms / 1000:  # only what differs from the configured spacing
            self._crawl_delays[host] = delay_s
        while len(self._crawl_delays) > MAX_REMEMBERED_HOSTS:
            del self._crawl_delays[next(iter(self._crawl_delays))]
