"""The rate limiter keeps its memory bounded without giving any key a fresh bucket."""

from __future__ import annotations

import pytest

from litejobs.api import ratelimit
from litejobs.api.ratelimit import RateLimiter
from litejobs.errors import RateLimited


def test_a_flood_of_keyless_callers_does_not_refill_a_spent_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_CALLERS", 1000)
    limiter = RateLimiter(2.0, clock=lambda: 0.0)  # time stands still: nothing refills
    limiter.take("key-owner")
    limiter.take("key-owner")  # its burst of 2 spent

    for n in range(5000):  # keyless polls from 5,000 addresses
        limiter.take_keyless(f"10.0.{n // 256}.{n % 256}")

    with pytest.raises(RateLimited):
        limiter.take("key-owner")
    limiter.take_keyless("10.0.19.135")  # the last caller's second token
    with pytest.raises(RateLimited):  # the latest callers keep their spent buckets too
        limiter.take_keyless("10.0.19.135")
