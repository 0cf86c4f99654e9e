"""Per-key token buckets for `[auth] rate_per_s`: a burst of one second's worth, then the rate."""

from __future__ import annotations

import time
from collections.abc import Callable

from litejobs.errors import RateLimited


class RateLimiter:
    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1.0, rate_per_s)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, owner: str) -> None:
        """Spend one token of `owner`'s bucket, or raise RateLimited saying when to come back."""
        if self.rate_per_s <= 0:
            return
        now = self.clock()
        tokens, last = self._buckets.get(owner, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate_per_s)
        if tokens < 1:
            self._buckets[owner] = (tokens, now)
            raise RateLimited(retry_after_s=(1 - tokens) / self.rate_per_s)
        self._buckets[owner] = (tokens - 1, now)
        if len(self._buckets) > 100_000:  # bounded memory however many keys appear
            self._buckets.clear()
