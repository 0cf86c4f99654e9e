"""Webhooks: a signed POST of the job on the events its owner asked for, with durable retries.

A change on the feed that a job's webhook asks for becomes a `pending` row in the store (the job
body, encoded once, so every retry sends and signs the same bytes). The Deliverer sends due rows
with bounded concurrency and records each outcome: `delivered`, `pending` again with a backoff, or
`failed`. Rows live in SQLite, so a restarted server resumes the pending ones.

Fairness: a receiver that never answers holds a slot for the whole timeout_s, so slots are shared
out as endpoint-isolating senders do: due rows are claimed in turns across receivers (the URL's
scheme and authority), a receiver holds at most `concurrency - 1` slots, and one whose last attempt
failed (no answer, 5xx, 408, 429) one slot, with every failing receiver together at most half of
them. Another receiver's webhook then always finds a slot (with `concurrency` of 2 or more).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from litejobs import jsontext
from litejobs.config import WebhooksConfig
from litejobs.errors import FetchError, StorageFull, StoreUnavailable
from litejobs.fetcher import PolicyResolver
from litejobs.jobs import Job, JobState, backoff_s
from litejobs.netpolicy import NetworkPolicy
from litejobs.store import Delivery, Store

log = logging.getLogger("litejobs.webhooks")

#: how often the Deliverer looks for due rows anyway: retries of another process, or after a restart
POLL_S = 1.0
#: a claimed row stays its sender's this long past the attempt's timeout; a sender that died
#: meanwhile (a crash) leaves it to be sent again: delivery is at-least-once, like jobs
CLAIM_MARGIN_S = 30.0
#: how much of a refusing receiver's answer goes into last_error
ANSWER_SNIPPET_BYTES = 300
#: 4xx answers that say "later", not "never"
_RETRYABLE_4XX = frozenset({408, 429})


#: how far back the start-up catch-up looks for jobs whose delivery was never recorded
CATCH_UP_MS = 3_600_000
CATCH_UP_LIMIT = 10_000


#: how many failing receivers the Deliverer remembers (the oldest is forgotten first)
FAILING_MEMORY = 10_000


def receiver_of(url: str) -> str:
    """Who a delivery goes to, for sharing the slots: the URL up to its path, lower-cased. The
    stores' claims group rows by the same expression (sqlite_webhooks.RECEIVER)."""
    end = url.find("/", 8)  # past "https://" and the host's first character
    return (url if end < 0 else url[:end]).lower()


def sign(secret: str, body: bytes) -> str:
    """The X-Litejobs-Signature value: `sha256=` and the HMAC-SHA256 hex of the exact body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_of(job: Job) -> str:
    """The event a change of `job` is: "progress" for a progress report, else its status."""
    if job.status is JobState.ACTIVE and job.progress is not None:
        return "progress"
    return job.status.value


@dataclass(frozen=True)
class Outcome:
    """How one attempt went: the receiver's HTTP status (None if it never answered) and why not 2xx."""

    status: int | None
    error: str | None = None
    retryable: bool = False

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def outcome_of(status: int, answer: bytes) -> Outcome:
    """2xx delivers; 5xx, 408 and 429 are worth another try; other answers will not change."""
    if 200 <= status < 300:
        return Outcome(status)
    snippet = answer.decode("utf-8", "replace").strip()
    detail = f"the receiver answered HTTP {status}" + (f": {snippet}" if snippet else "")
    if 300 <= status < 400:
        return Outcome(status, f"{detail} (redirects are not followed: give the final URL)")
    return Outcome(status, detail, retryable=status >= 500 or status in _RETRYABLE_4XX)


class WebhookSender:
    """POSTs through its own aiohttp session under the fetch network policy: the resolver drops
    refused addresses, IP literals are checked before connecting, and redirects are not followed
    (a redirect could lead where the policy was never asked)."""

    def __init__(self, policy: NetworkPolicy, timeout_s: float, user_agent: str, *, resolver: Any = None) -> None:
        """`resolver` replaces the system DNS lookup (tests); the policy is applied to its answers."""
        self.policy = policy
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        self._inner_resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebhookSender:
        resolver = PolicyResolver(self._inner_resolver or aiohttp.DefaultResolver(), self.policy)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver),
            trust_env=False,  # a proxy from the environment would bypass the network policy
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """One attempt; never raises for the receiver's or the network's faults."""
        assert self._session is not None, "the WebhookSender is not open"
        try:
            self._check_literal_host(url)
            async with self._session.post(
                url, data=body, headers={"User-Agent": self.user_agent, **headers}, allow_redirects=False
            ) as resp:
                answer = b"" if 200 <= resp.status < 300 else await resp.content.read(ANSWER_SNIPPET_BYTES)
                return outcome_of(resp.status, answer)
        except FetchError as exc:  # refused by the policy, or a name that does not resolve
            return Outcome(None, f"{exc.code}: {exc.message}", retryable=exc.retryable)
        except TimeoutError:
            return Outcome(None, f"timeout: no answer within {self.timeout_s:g} s", retryable=True)
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(None, f"network_error: {type(exc).__name__}: {exc}", retryable=True)

    def _check_literal_host(self, url: str) -> None:
        # aiohttp connects to IP-literal hosts without asking the resolver (as in Fetcher)
        parsed = URL(url)
        host = parsed.raw_host or ""
        if ":" in host or host.replace(".", "").isdigit():
            self.policy.check_ip(host, parsed.port)


Attempted = Callable[[Delivery, Outcome, str], None]


class Deliverer:
    """`on_change` (a ChangeFeed listener) records deliveries; while open, a task sends due ones,
    `concurrency` at once, woken on each new row, at each retry's time, and every POLL_S."""

    def __init__(
        self,
        store: Store,
        config: WebhooksConfig,
        sender: WebhookSender,
        *,
        body_of: Callable[[Job], dict[str, Any]],
        clock: Callable[[], int],
        on_attempt: Attempted | None = None,
    ) -> None:
        """`body_of` renders the job as the API does (api/http.job_body, handed in by App so that this
        layer does not import the edge); `on_attempt(delivery, outcome, new_state)` feeds metrics."""
        self.store = store
        self.config = config
        self.sender = sender
        self.body_of = body_of
        self.clock = clock
        self.on_attempt = on_attempt or (lambda delivery, outcome, state: None)
        self._wake = asyncio.Event()
        self._adding: set[asyncio.Task[Any]] = set()
        self._sending: dict[str, asyncio.Task[None]] = {}
        #: the receiver of each delivery being sent, by delivery id
        self._receivers: dict[str, str] = {}
        #: receivers whose last attempt here failed and may be retried (insertion-ordered, bounded)
        self._failing: dict[str, None] = {}
        self._loop_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Deliverer:
        self._loop_task = asyncio.create_task(self._deliver_forever(), name="litejobs-webhooks")
        self._spawn(self._catch_up())
        return self

    async def _catch_up(self) -> None:
        """A job's end and its delivery row are two writes: a crash between them would lose the
        webhook. At start, record the deliveries missing for jobs that ended in the last hour."""
        since = self.clock() - CATCH_UP_MS
        for job_id in await self.store.jobs_missing_delivery(since, CATCH_UP_LIMIT):
            job = await self.store.get(job_id)
            if job is not None and job.webhook and event_of(job) in job.webhook.get("events", ()):
                await self._add(job, event_of(job))

    async def __aexit__(self, *exc_info: object) -> None:
        loop_task, self._loop_task = self._loop_task, None
        if self._adding:  # rows for changes already announced: write them, so the next start sends them
            await asyncio.wait(set(self._adding), timeout=5)
        if loop_task is not None:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        in_flight = dict(self._sending)
        for task in in_flight.values():
            task.cancel()
        if in_flight:
            await asyncio.wait(set(in_flight.values()), timeout=5)
            with contextlib.suppress(Exception):
                await self.store.release_deliveries(list(in_flight), self.clock())

    def on_change(self, job: Job) -> None:
        """Feed listener: record a delivery when the job's webhook asks for this event."""
        hook = job.webhook
        if not hook or self._loop_task is None:
            return
        event = event_of(job)
        if event in hook.get("events", ()):
            self._spawn(self._add(job, event))

    async def resend(self, job: Job) -> Delivery:
        """A new delivery of the job as it is now, whatever events its webhook asked for."""
        assert job.webhook is not None
        return await self._add(job, event_of(job))

    async def _add(self, job: Job, event: str) -> Delivery:
        assert job.webhook is not None
        body = jsontext.encode(self.body_of(job))
        delivery = await self.store.add_delivery(job.id, event, job.webhook["url"], body, self.clock())
        self._wake.set()
        return delivery

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._adding.add(task)
        task.add_done_callback(self._added)

    def _added(self, task: asyncio.Task[Any]) -> None:
        self._adding.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # the job may have expired and been deleted meanwhile (the row's foreign key)
            log.warning("could not record a webhook delivery: %s", task.exception())

    async def _deliver_forever(self) -> None:
        lease_ms = int((self.config.timeout_s + CLAIM_MARGIN_S) * 1000)
        while True:
            self._wake.clear()
            free = self.config.concurrency - len(self._sending)
            if free > 0:
                # the claim may return rows of receivers at their cap: ask for that many more, so that
                # the first row of every other receiver is among them; the capped ones go back at once
                limit = free + min(self.config.concurrency, len(set(self._receivers.values())) + len(self._failing))
                try:
                    due = await self.store.claim_deliveries(self.clock(), limit, lease_ms)
                except (StoreUnavailable, StorageFull):  # logged once by the store, as is its end
                    due = []
                except Exception:
                    log.exception("claiming webhook deliveries failed; trying again")
                    due = []
                started, held_back = self._start_fairly(due, free)
                if held_back:
                    await self._give_back(held_back)
                elif due and started == free:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    def _start_fairly(self, due: list[Delivery], free: int) -> tuple[int, list[Delivery]]:
        """Start up to `free` of the claimed rows in turns across receivers, each within its cap;
        returns how many started and the rows held back."""
        busy = self._busy_by_receiver()
        failing_busy = sum(n for receiver, n in busy.items() if receiver in self._failing)
        waiting = sorted(due, key=lambda d: d.attempts > 0)  # first attempts ahead of retries, else oldest
        started = 0
        while waiting and started < free:
            candidates = [d for d in waiting if self._has_room(receiver_of(d.url), busy, failing_busy)]
            if not candidates:
                break
            pick = min(candidates, key=lambda d: busy.get(receiver_of(d.url), 0))
            waiting.remove(pick)
            receiver = receiver_of(pick.url)
            busy[receiver] = busy.get(receiver, 0) + 1
            failing_busy += receiver in self._failing
            self._start(pick, receiver)
            started += 1
        return started, waiting

    def _has_room(self, receiver: str, busy: dict[str, int], failing_busy: int) -> bool:
        slots = self.config.concurrency
        if receiver in self._failing:
            return busy.get(receiver, 0) < 1 and failing_busy < max(1, slots // 2)
        return busy.get(receiver, 0) < max(1, slots - 1)

    def _busy_by_receiver(self) -> dict[str, int]:
        busy: dict[str, int] = {}
        for receiver in self._receivers.values():
            busy[receiver] = busy.get(receiver, 0) + 1
        return busy

    def _start(self, delivery: Delivery, receiver: str) -> None:
        task = asyncio.create_task(self._send(delivery), name=f"litejobs-webhook-{delivery.id}")
        self._sending[delivery.id] = task
        self._receivers[delivery.id] = receiver
        task.add_done_callback(functools.partial(self._sent, delivery.id))

    async def _give_back(self, held_back: list[Delivery]) -> None:
        """Claimed rows whose receiver is at its cap are due again now, for this or another process."""
        try:
            await self.store.release_deliveries([d.id for d in held_back], self.clock())
        except (StoreUnavailable, StorageFull):
            pass  # their claim runs out instead (CLAIM_MARGIN_S past the timeout)
        except Exception:
            log.exception("could not give back %d webhook deliveries; their claim will run out", len(held_back))

    def _sent(self, delivery_id: str, task: asyncio.Task[None]) -> None:
        self._sending.pop(delivery_id, None)
        self._receivers.pop(delivery_id, None)
        self._wake.set()

    def _note_receiver(self, receiver: str, outcome: Outcome) -> None:
        """Remember who is failing: a delivered answer clears it, a retryable failure sets it."""
        if outcome.delivered:
            self._failing.pop(receiver, None)
        elif outcome.retryable:
            self._failing.pop(receiver, None)
            self._failing[receiver] = None
            if len(self._failing) > FAILING_MEMORY:
                del self._failing[next(iter(self._failing))]

    async def _send(self, delivery: Delivery) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Litejobs-Event": delivery.event,
            "X-Litejobs-Delivery": delivery.id,
        }
        if self.config.secret:
            headers["X-Litejobs-Signature"] = sign(self.config.secret, delivery.payload)
        try:
            outcome = await self.sender.post(delivery.url, delivery.payload, headers)
        except Exception as exc:  # a bug, not the receiver's fault: keep the row moving, say what broke
            log.exception("webhook %s could not be sent", delivery.id)
            outcome = Outcome(None, f"internal_error: {type(exc).__name__}: {exc}", retryable=True)
        self._note_receiver(receiver_of(delivery.url), outcome)
        attempt = delivery.attempts + 1
        next_at = None
        if outcome.delivered:
            state = "delivered"
        elif outcome.retryable and attempt <= self.config.max_retries:
            state = "pending"
            delay_s = backoff_s(attempt, self.config.backoff_base_s, self.config.backoff_max_s, random.random())
            next_at = self.clock() + int(delay_s * 1000)
        else:
            state = "failed"
        if not outcome.delivered:
            log.info(
                "webhook %s (%s of %s): %s; now %s", delivery.id, delivery.event, delivery.job_id, outcome.error, state
            )
        try:
            await self.store.record_delivery(delivery.id, state, next_at, outcome.status, outcome.error, self.clock())
        except (StoreUnavailable, StorageFull):  # the store logs the outage once, and its end
            log.info("could not record webhook delivery %s (the store is away); it will be sent again", delivery.id)
            return
        except Exception:
            log.exception("could not record webhook delivery %s; it will be sent again", delivery.id)
            return
        self.on_attempt(delivery, outcome, state)
        if next_at is not None:
            asyncio.get_running_loop().call_later(max(0.0, (next_at - self.clock()) / 1000), self._wake.set)
