"""The one token bucket (request rates per client, frame and byte rates per call), on an explicit clock."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runtime.ratelimit import RateLimiter, TokenBucket
from runtime.settings import load_settings


def test_bucket_spends_refills_and_never_exceeds_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(now=0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(now=0.5)  # 0.5 s x 2/s = one token
    assert not bucket.take(now=0.5)
    assert bucket.level(now=100.0) == 3  # idle for long: a full burst, not 200 tokens
    assert not bucket.take(amount=4, now=100.0)  # more than the burst never fits
    assert bucket.take(amount=3, now=100.0)


def test_a_clock_that_steps_back_grants_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert bucket.take(now=10.0)
    assert not bucket.take(now=5.0)
    assert not bucket.take(now=10.5)  # and the step back did not move the refill origin earlier
    assert bucket.take(now=11.0)


def test_limiter_keeps_one_bucket_per_client_and_bounds_them() -> None:
    limiter = RateLimiter(1.0, 2, max_clients=4)
    assert [limiter.allow("a", now=0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("b", now=0.0)
    for n in range(10):
        limiter.allow(f"other-{n}", now=0.0)
    assert len(limiter._buckets) <= 4


@pytest.mark.parametrize("overrides", [{"booking_limit_seats": 10}, {"trusted_proxy_hops": 0},
                                       {"booking_limit_per_day": -1}])
def test_limit_settings_are_validated(overrides: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        load_settings(**overrides)  # a seats cap under MAX_PARTY_SIZE (20) would refuse every large party
