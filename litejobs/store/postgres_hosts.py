"""The per-host politeness half of PostgresStore: request slots and start times every node shares.

A host has `slots` numbered leases (host_leases) and one row (host_gates) that holds the earliest
start of its next request and the robots.txt Crawl-delay some node learned. Times come from the
database's clock (now()), so the nodes' own clocks never matter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

#: the NOTIFY channel of a released slot that another node was waiting for; the payload is the host
HOSTS_CHANNEL = "litejobs_hosts"
#: a release notifies while a node found every slot taken this recently (waiters re-poll within 1 s)
WAITER_WINDOW_S = 5


@dataclass(frozen=True)
class HostTurn:
    """What one try at a host's slot gave."""

    #: the slot taken, or None when every slot is leased
    slot: int | None
    #: seconds to sleep before the request starts (its reserved start, by the database's clock)
    wait_s: float
    #: the spacing in force for the host: the caller's delay or the stored Crawl-delay, the longer
    delay_ms: int
    #: slots that looked free when the statement began: more than one means another try may succeed
    free_slots: int


# One statement: pick a free slot at random (live leases excepted) and lease it, taking over an expired
# lease in place; then, on the host's row, reserve the request's start (next_at = greatest(next_at,
# now) + delay) when a slot was taken, or note that a node is waiting when none was. Two nodes that
# pick the same slot meet at ON CONFLICT: the second waits for the first to commit, finds the lease
# live, and takes nothing.
_TAKE = """
WITH free AS (
    SELECT s AS slot FROM generate_series(0, $3::int - 1) AS s
    EXCEPT SELECT slot FROM host_leases WHERE host = $1 AND expires_at > now()
), chosen AS (
    SELECT slot FROM free ORDER BY random() LIMIT 1
), taken AS (
    INSERT INTO host_leases AS l (host, slot, holder, expires_at)
    SELECT $1, slot, $2, now() + $4::int * interval '1 millisecond' FROM chosen
    ON CONFLICT (host, slot) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE l.expires_at <= now()
    RETURNING slot
), gate AS (
    INSERT INTO host_gates AS g (host, next_at, crawl_delay_ms, waited_at)
    SELECT $1, CASE WHEN got THEN now() + greatest($5::int, coalesce($6::int, 0)) * interval '1 millisecond'
                    ELSE now() END,
           coalesce($6::int, 0), CASE WHEN got THEN NULL ELSE now() END
    FROM (SELECT EXISTS (SELECT 1 FROM taken) AS got) AS t
    ON CONFLICT (host) DO UPDATE SET
        crawl_delay_ms = coalesce($6::int, g.crawl_delay_ms),
        next_at = CASE WHEN EXCLUDED.waited_at IS NULL
            THEN greatest(g.next_at, now()) + greatest($5::int, coalesce($6::int, g.crawl_delay_ms))
                 * interval '1 millisecond'
            ELSE g.next_at END,
        waited_at = coalesce(EXCLUDED.waited_at, g.waited_at)
    RETURNING next_at, greatest($5::int, crawl_delay_ms) AS delay_ms
)
SELECT (SELECT slot FROM taken) AS slot,
       (SELECT count(*) FROM free) AS free_slots,
       delay_ms,
       extract(epoch FROM next_at - delay_ms * interval '1 millisecond' - clock_timestamp())::float8 AS wait_s
FROM gate
"""

# Delete the lease, and wake waiting nodes only when one waited lately: an uncontended host costs no NOTIFY.
_RELEASE = f"""
WITH gone AS (DELETE FROM host_leases WHERE host = $1 AND holder = $2 RETURNING host)
SELECT pg_notify('{HOSTS_CHANNEL}', $1) FROM host_gates
WHERE host = $1 AND waited_at > now() - interval '{WAITER_WINDOW_S} seconds' AND EXISTS (SELECT 1 FROM gone)
"""

# Expired leases go (an expired lease is free already: this only keeps the table small); a host row
# goes once its spacing ran out `idle_s` ago and no live lease remains, its Crawl-delay with it.
_SWEEP = """
WITH stale AS (DELETE FROM host_leases WHERE expires_at <= now())
DELETE FROM host_gates g WHERE g.next_at < now() - $1::float8 * interval '1 second'
AND NOT EXISTS (SELECT 1 FROM host_leases l WHERE l.host = g.host AND l.expires_at > now())
RETURNING host
"""


class HostSlots:
    """Mixed into PostgresStore: the optional capability SharedHostGate (litejobs/shared_politeness.py)
    looks for. SqliteStore has no such methods: one process, so the in-memory HostGate is exact."""

    if TYPE_CHECKING:

        async def _fetch(self, sql: str, *args: Any) -> list[Any]: ...

    async def take_host_slot(
        self, host: str, holder: str, slots: int, lease_ms: int, delay_ms: int, crawl_delay_ms: int | None = None
    ) -> HostTurn:
        """Lease one of `slots` for `lease_ms` under `holder`, and reserve the request's start;
        `crawl_delay_ms`, when given, is stored as the host's Crawl-delay first."""
        row = (await self._fetch(_TAKE, host, holder, slots, lease_ms, delay_ms, crawl_delay_ms))[0]
        return HostTurn(row["slot"], max(0.0, row["wait_s"]), row["delay_ms"], row["free_slots"])

    async def renew_host_slot(self, host: str, holder: str, lease_ms: int) -> bool:
        """Push a held lease `lease_ms` ahead; False when it is gone (it expired and was taken over)."""
        rows = await self._fetch(
            "UPDATE host_leases SET expires_at = now() + $3::int * interval '1 millisecond' "
            "WHERE host = $1 AND holder = $2 RETURNING slot",
            host,
            holder,
            lease_ms,
        )
        return bool(rows)

    async def release_host_slot(self, host: str, holder: str) -> None:
        """Give the lease back (nothing when it is gone already)."""
        await self._fetch(_RELEASE, host, holder)

    async def sweep_hosts(self, idle_s: float) -> int:
        """Delete expired leases and the rows of hosts idle for `idle_s`; returns the hosts deleted."""
        return len(await self._fetch(_SWEEP, idle_s))

    def on_host_released(self, callback: Callable[[str], None]) -> None:
        """Call `callback(host)` when any node releases a slot of a host that some node waits for.
        Notices missed while the listener reconnects only cost latency: waiters poll too."""
        self._host_callbacks = [*getattr(self, "_host_callbacks", []), callback]

    def _host_notice_handlers(self) -> dict[str, Callable[[str], None]]:
        """The channel this mixin LISTENs on; PostgresStore adds it to the listener's."""
        return {HOSTS_CHANNEL: self._on_host_released}

    def _on_host_released(self, host: str) -> None:
        for callback in getattr(self, "_host_callbacks", ()):
            callback(host)
