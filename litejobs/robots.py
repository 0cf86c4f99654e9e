"""robots.txt (RFC 9309): parsing, matching a URL, and a per-crawl cache that fetches each origin's once."""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from litejobs.errors import FetchError, UpstreamStatus
from litejobs.urls import host_key, normalize_escapes, origin_of

if TYPE_CHECKING:
    from litejobs.fetcher import Fetcher

#: RFC 9309 asks crawlers to read at least 500 KiB; larger files are cut there
MAX_ROBOTS_BYTES = 512 * 1024
ROBOTS_TIMEOUT_S = 10.0
_KEYS = ("user-agent", "allow", "disallow", "crawl-delay", "sitemap")
#: how the error of an unreachable robots.txt goes on (RFC 9309 §2.3.1.4)
_NOTHING_FROM = "so RFC 9309 forbids fetching anything from "


@dataclass(frozen=True)
class Rule:
    allow: bool
    #: the path pattern as written (percent-escapes normalised); its length ranks the match
    pattern: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Robots:
    """The rules of one origin that apply to this crawler."""

    rules: tuple[Rule, ...] = ()
    crawl_delay_s: float | None = None
    sitemaps: tuple[str, ...] = ()
    #: why robots.txt could not be had (5xx, 429, network error, timeout), as the error a crawl of
    #: this origin's start URL fails with; RFC 9309 says assume then that nothing is allowed
    unreachable: FetchError | None = None

    def allows(self, url: str) -> bool:
        """Whether a normalised URL may be fetched: the longest matching rule wins, Allow on a tie."""
        parts = urlsplit(url)
        if parts.path == "/robots.txt":
            return True
        if self.unreachable is not None:
            return False
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        best: Rule | None = None
        for rule in self.rules:
            if rule.regex.match(target) and (
                best is None
                or len(rule.pattern) > len(best.pattern)
                or (len(rule.pattern) == len(best.pattern) and rule.allow)
            ):
                best = rule
        return best is None or best.allow


ALLOW_ALL = Robots()


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: `litejobs/0.1 (+...)` → `litejobs`."""
    return (user_agent.split() or [""])[0].split("/")[0].lower()


def _rule(allow: bool, value: str) -> Rule:
    pattern = normalize_escapes(value)
    anchored = pattern.endswith("$")
    body = pattern[:-1] if anchored else pattern
    regex = ".*".join(re.escape(part) for part in body.split("*")) + (r"\Z" if anchored else "")
    return Rule(allow, pattern, re.compile(regex))


def _lines(text: str) -> list[tuple[str, str]]:
    pairs = []
    for raw in text[:MAX_ROBOTS_BYTES].splitlines():
        key, sep, value = raw.split("#", 1)[0].partition(":")
        key = key.strip().lower()
        if sep and key in _KEYS:
            pairs.append((key, value.strip()))
    return pairs


def parse_robots(text: str, user_agent: str, base_url: str = "") -> Robots:
    """The rules for `user_agent`: its own groups if any name it, else the `*` groups, else none."""
    token = agent_token(user_agent)
    groups: list[tuple[set[str], list[tuple[str, str]]]] = []
    sitemaps: list[str] = []
    in_agents = False
    for key, value in _lines(text):
        if key == "sitemap":
            if value:
                sitemaps.append(urljoin(base_url, value) if base_url else value)
        elif key == "user-agent":
            if not in_agents:
                groups.append((set(), []))
            groups[-1][0].add(value.split("/")[0].strip().lower())
            in_agents = True
        elif groups:
            groups[-1][1].append((key, value))
            in_agents = False
    chosen = [lines for agents, lines in groups if token and token in agents]
    if not chosen:
        chosen = [lines for agents, lines in groups if "*" in agents]
    rules: list[Rule] = []
    delay: float | None = None
    for key, value in (pair for lines in chosen for pair in lines):
        if key in ("allow", "disallow") and value:
            rules.append(_rule(key == "allow", value))
        elif key == "crawl-delay" and delay is None:
            delay = _seconds(value)
    return Robots(tuple(rules), delay, tuple(dict.fromkeys(sitemaps)))


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class RobotsCache:
    """Each origin's robots.txt, fetched once (through the host gate) and kept for this cache's life.

    Status rules of RFC 9309: 2xx is parsed (its first MAX_ROBOTS_BYTES); 4xx (401 and 403
    included) means no rules; 5xx, 429, a network error or a timeout mean the origin is unreachable,
    so nothing may be fetched from it. A Crawl-delay is handed to the gate, which then spaces
    requests to the host by it. The file is asked for with `user_agent`, the agent its groups are
    matched on.
    """

    def __init__(self, fetcher: Fetcher, gate: Any, user_agent: str) -> None:
        self.fetcher = fetcher
        self.gate = gate
        self.user_agent = user_agent
        self._robots: dict[str, Robots] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, url: str) -> Robots:
        origin = origin_of(url)
        found = self._robots.get(origin)
        if found is not None:
            return found
        # A lock, not a shared task: a cancelled crawl must leave no fetch running behind it.
        async with self._locks.setdefault(origin, asyncio.Lock()):
            if origin not in self._robots:
                self._robots[origin] = await self._load(origin)
        return self._robots[origin]

    def known(self, url: str) -> Robots | None:
        """The rules of `url`'s origin if its robots.txt was read already; None if not (no I/O)."""
        return self._robots.get(origin_of(url))

    async def allows(self, url: str) -> bool:
        return (await self.get(url)).allows(url)

    async def _load(self, origin: str) -> Robots:
        host = host_key(origin)
        try:
            async with self.gate.slot(host):
                page = await self.fetcher.fetch(
                    f"{origin}/robots.txt",
                    headers={"User-Agent": self.user_agent},
                    timeout_s=ROBOTS_TIMEOUT_S,
                    max_body_bytes=MAX_ROBOTS_BYTES,
                    truncate=True,
                )
        except FetchError as exc:
            message = f"{origin}/robots.txt could not be fetched ({exc.message}), {_NOTHING_FROM}{origin}"
            return Robots(unreachable=type(exc)(message, retryable=exc.retryable))
        status = page.status_code
        if 200 <= status < 300:
            # A cut file's last line may be a rule cut short: only whole lines are read.
            text = page.text.rsplit("\n", 1)[0] if page.truncated else page.text
            robots = parse_robots(text, self.user_agent, page.final_url)
            if robots.crawl_delay_s:
                self.gate.set_crawl_delay(host, robots.crawl_delay_s)
            return robots
        if 400 <= status < 500 and status != 429:
            return ALLOW_ALL
        error = UpstreamStatus(status, f"{origin}/robots.txt answered HTTP {status}, {_NOTHING_FROM}{origin}")
        error.retryable = status >= 500 or status == 429  # an outage passes; an odd 1xx or 3xx does not
        return Robots(unreachable=error)
