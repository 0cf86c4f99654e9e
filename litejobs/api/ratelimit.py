"""Token buckets for `[auth] rate_per_s`: a burst of one second's worth, then the rate; per key, and
per address for the vendor dialects' keyless polls."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from litejobs.errors import RateLimited

#: keyless callers' buckets kept at most; past it the least recently used tenth goes
MAX_CALLERS = 100_000

Buckets = dict[str, tuple[float, float]]


class RateLimiter:
    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1.0, rate_per_s)
        self.clock = clock
        #: by owner: as many as the configured keys (an unknown key is refused before it is counted)
        self._owners: Buckets = {}
        #: by address, for keyless polls: unbounded in number, so kept apart and bounded, lest a
        #: flood of addresses cost the keys their limits
        self._callers: Buckets = {}

    def take(self, owner: str) -> None:
        """Spend one token of `owner`'s bucket, or raise RateLimited saying when to come back."""
        self._take(self._owners, owner)

    def take_keyless(self, address: str) -> None:
        """The same for a caller with no key, by its address."""
        self._take(self._callers, address)
        if len(self._callers) > MAX_CALLERS:
            # the dict's order is least recently used first (_take pops and puts back); a forgotten
            # bucket starts full, as it would have refilled by the time its caller came back
            for address_ in list(itertools.islice(self._callers, len(self._callers) - MAX_CALLERS * 9 // 10)):
                del self._callers[address_]

    def _take(self, buckets: Buckets, name: str) -> None:
        if self.rate_per_s <= 0:
            return
        now = self.clock()
        tokens, last = buckets.pop(name, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate_per_s)
        if tokens < 1:
            buckets[name] = (tokens, now)
            raise RateLimited(retry_after_s=(1 - tokens) / self.rate_per_s)
        buckets[name] = (tokens - 1, now)
