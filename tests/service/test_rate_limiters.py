"""The rate limiters of ``service.auth.limits`` against naive reference models, under threads, and in the registry.

Times in the property tests are multiples of 1/64 s and rates multiples of 1/4 per second, so every sum, product
and difference the limiters compute is a dyadic fraction of a few bits, exact in a float. The models compute in
``Fraction``; the limiters' divisions by the rate are then single correctly rounded operations on exact operands,
equal to ``float`` of the model's exact quotient. So everything is compared exactly, with no tolerance to hide a
off-by-one at a boundary (a request exactly one window after an acceptance, a bucket exactly at one token).
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.auth.limits import (
    ConcurrencyLimit,
    Decision,
    KeyLimits,
    LimitConfig,
    LimitName,
    SlidingWindow,
    TokenBucket,
    tightest,
)

TICK = Fraction(1, 64)
steps = st.lists(st.integers(min_value=0, max_value=256), min_size=1, max_size=60)  # in ticks, up to 4 s apart


def times_of(ticks: list[int]) -> list[Fraction]:
    """Non-decreasing times from the gaps between them."""
    return [TICK * t for t in itertools.accumulate(ticks)]


def window_model(limit: int, window: Fraction, times: list[Fraction]) -> list[tuple[bool, int, Fraction, Fraction]]:
    """All acceptance times kept; accept iff fewer than ``limit`` lie in ``(now - window, now]``."""
    accepted: list[Fraction] = []
    out = []
    for now in times:
        inside = [t for t in accepted if now - window < t <= now]
        allowed = len(inside) < limit
        if allowed:
            accepted.append(now)
            inside.append(now)
        retry = Fraction(0) if allowed else inside[0] + window - now
        out.append((allowed, limit - len(inside), inside[-1] + window - now, retry))
    return out


def bucket_model(rate: Fraction, capacity: int, times: list[Fraction]) -> list[tuple[bool, int, Fraction, Fraction]]:
    """Tokens as an exact fraction, refilled naively from the previous request's time."""
    tokens, last = Fraction(capacity), times[0]
    out = []
    for now in times:
        tokens, last = min(Fraction(capacity), tokens + (now - last) * rate), now
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        retry = Fraction(0) if allowed else (1 - tokens) / rate
        out.append((allowed, int(tokens), (capacity - tokens) / rate, retry))
    return out


def observed(decisions: list[Decision]) -> list[tuple[bool, int, float, float]]:
    return [(d.allowed, d.remaining, d.reset_after, d.retry_after) for d in decisions]


def as_floats(model: list[tuple[bool, int, Fraction, Fraction]]) -> list[tuple[bool, int, float, float]]:
    return [(a, r, float(reset), float(retry)) for a, r, reset, retry in model]


@given(limit=st.integers(1, 8), window_ticks=st.integers(1, 640), ticks=steps)
def test_sliding_window_matches_the_reference_model(limit: int, window_ticks: int, ticks: list[int]) -> None:
    window, times = TICK * window_ticks, times_of(ticks)
    limiter = SlidingWindow(limit, float(window))
    assert observed([limiter.take(float(t)) for t in times]) == as_floats(window_model(limit, window, times))


@given(quarters=st.integers(1, 80), capacity=st.integers(1, 10), ticks=steps)
def test_token_bucket_matches_the_reference_model(quarters: int, capacity: int, ticks: list[int]) -> None:
    rate, times = Fraction(quarters, 4), times_of(ticks)
    bucket = TokenBucket(float(rate), capacity)
    assert observed([bucket.take(float(t)) for t in times]) == as_floats(bucket_model(rate, capacity, times))


@given(limit=st.integers(1, 5), ops=st.lists(st.booleans(), max_size=40))
def test_concurrency_limit_matches_a_counter(limit: int, ops: list[bool]) -> None:
    """``True`` acquires, ``False`` releases one of the slots held (if any)."""
    cap, held = ConcurrencyLimit(limit), 0
    for acquire in ops:
        if acquire:
            d = cap.acquire()
            assert d.allowed == (held < limit)
            held += d.allowed
            assert (d.remaining, d.retry_after) == (limit - held, 0.0 if d.allowed else cap.retry_hint)
        elif held:
            cap.release()
            held -= 1
    assert cap.is_idle(0.0) == (held == 0)


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads every microsecond, so that a take which is not atomic would interleave and over-admit."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def allowed_in_threads(take: Callable[[], Decision], threads: int = 200) -> int:
    start = threading.Barrier(threads)
    results: list[Decision] = []

    def run() -> None:
        start.wait()
        results.append(take())

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(results) == threads
    return sum(d.allowed for d in results)


@pytest.mark.usefixtures("busy_switching")
def test_200_threads_on_a_100_window_accept_exactly_100() -> None:
    window = SlidingWindow(100, 60)
    assert allowed_in_threads(lambda: window.take(5.0)) == 100


@pytest.mark.usefixtures("busy_switching")
def test_200_threads_on_a_bucket_of_50_accept_exactly_50() -> None:
    bucket = TokenBucket(20, 50)
    assert allowed_in_threads(lambda: bucket.take(5.0)) == 50


class YieldingTime(float):
    """A time whose arithmetic and comparisons yield the GIL first.

    On CPython with the GIL, a limiter's check-then-update is short enough that threads rarely interleave in it,
    lock or no lock; with this ``now`` they switch inside the limiter's own arithmetic (expiring, refilling), which
    is where an unlocked limiter loses updates and over-admits.
    """

    def _yield(self) -> float:
        time.sleep(0)
        return float(self)

    def __sub__(self, other: float) -> float:
        return self._yield() - other

    def __rsub__(self, other: float) -> float:
        return other - self._yield()

    def __add__(self, other: float) -> float:
        return self._yield() + other

    def __radd__(self, other: float) -> float:
        return other + self._yield()

    def __gt__(self, other: float) -> bool:
        return self._yield() > other

    def __lt__(self, other: float) -> bool:
        return self._yield() < other


@pytest.mark.usefixtures("busy_switching")
def test_threads_expiring_a_window_at_once_admit_exactly_the_freed_slots() -> None:
    window = SlidingWindow(100, 60)
    for t in [0.0] * 50 + [30.0] * 50:
        assert window.take(t).allowed
    assert allowed_in_threads(lambda: window.take(YieldingTime(60.0))) == 50  # the 50 from 0 left; those from 30 stay


@pytest.mark.usefixtures("busy_switching")
def test_threads_refilling_a_bucket_at_once_share_exactly_the_new_tokens() -> None:
    bucket = TokenBucket(20, 50)
    assert sum(bucket.take(0.0).allowed for _ in range(60)) == 50
    assert allowed_in_threads(lambda: bucket.take(YieldingTime(1.0))) == 20  # 1 s at 20/s


@pytest.mark.usefixtures("busy_switching")
def test_200_threads_through_the_registry_accept_exactly_the_limit() -> None:
    limits = KeyLimits(LimitConfig(batch_per_minute=100), max_entries=1)

    def take() -> Decision:
        d = limits.take("k", "batch", 5.0)
        assert d is not None
        return d

    assert allowed_in_threads(take) == 100


@pytest.mark.usefixtures("busy_switching")
def test_200_threads_on_10_stream_slots_get_exactly_10() -> None:
    cap = ConcurrencyLimit(10)
    assert allowed_in_threads(cap.acquire) == 10


def test_window_of_100_accepts_exactly_100_at_one_instant() -> None:
    window = SlidingWindow(100, 60)
    decisions = [window.take(0.0) for _ in range(200)]
    assert sum(d.allowed for d in decisions) == 100
    assert [d.remaining for d in decisions[:3]] == [99, 98, 97]
    assert decisions[99].remaining == 0 and not decisions[100].allowed


def test_a_denied_bucket_take_says_the_time_to_one_token() -> None:
    bucket = TokenBucket(0.5, 2)  # one token every 2 s
    first, second, third = bucket.take(0.0), bucket.take(0.0), bucket.take(0.5)
    assert (first.allowed, first.remaining, first.retry_after, first.reset_after) == (True, 1, 0.0, 2.0)
    assert (second.allowed, second.remaining, second.reset_after) == (True, 0, 4.0)
    assert (third.allowed, third.remaining, third.retry_after, third.reset_after) == (False, 0, 1.5, 3.5)
    assert (third.limit, third.name) == (2, "requests")
    assert bucket.take(2.0).allowed and not bucket.take(2.0).allowed


def test_a_denied_window_take_says_when_the_oldest_acceptance_leaves() -> None:
    window = SlidingWindow(2, 10, name="jobs")
    window.take(0.0)
    window.take(3.0)
    denied = window.take(5.0)
    assert (denied.allowed, denied.remaining, denied.retry_after, denied.reset_after) == (False, 0, 5.0, 8.0)
    assert (denied.limit, denied.name) == (2, "jobs")
    assert not window.take(9.5).allowed
    assert window.take(10.0).allowed  # the acceptance at 0 left the window (10 - 10, 10]


def test_an_older_now_counts_as_the_latest_seen() -> None:
    window, bucket = SlidingWindow(1, 10), TokenBucket(1, 1)
    assert window.take(10.0).allowed and bucket.take(10.0).allowed
    assert window.take(4.0) == window.take(10.0)  # not accepted "at 4" and expired early
    assert bucket.take(4.0).retry_after == 1.0


def test_stream_slot_releases_only_what_it_acquired() -> None:
    cap = ConcurrencyLimit(1)
    with cap.slot() as d:
        assert d.allowed and d.remaining == 0
        with cap.slot() as inner:
            assert not inner.allowed and inner.retry_after == 1.0
    assert cap.is_idle(0.0)
    with pytest.raises(RuntimeError, match="release without a matching acquire"):
        cap.release()


def decision(allowed: bool, limit: int, remaining: int, retry: float = 0.0, name: str = "x") -> Decision:
    return Decision(allowed, limit, remaining, 0.0, retry, name)


def test_tightest_reports_a_denied_limit_first_then_the_fewest_remaining() -> None:
    roomy, low, low_small, denied, denied_longer = (
        decision(True, 1200, 40, name="requests"),
        decision(True, 100, 3, name="batch"),
        decision(True, 50, 3, name="jobs"),
        decision(False, 100, 0, 2.0, name="batch"),
        decision(False, 50, 0, 30.0, name="jobs"),
    )
    assert tightest([roomy, low, None]) is low
    assert tightest([low, low_small, roomy]) is low_small  # ties on remaining: the smallest limit
    assert tightest([roomy, decision(True, 10, 0), denied]) is denied
    assert tightest([denied, denied_longer, low]) is denied_longer  # the wait the client must honour
    assert tightest([None, None]) is None and tightest([]) is None


def test_a_disabled_limit_answers_none_and_keeps_no_entry() -> None:
    limits = KeyLimits(LimitConfig(requests_per_minute=0, batch_per_minute=0, jobs_per_hour=0, concurrent_streams=0))
    assert [limits.take("k", name, 0.0) for name in ("requests", "batch", "jobs", "streams")] == [None] * 4
    assert len(limits) == 0
    with limits.hold("k") as d:
        assert d is None


def test_keys_are_limited_separately() -> None:
    limits = KeyLimits(LimitConfig(batch_per_minute=2, jobs_per_hour=1))

    def allowed(key: str, name: LimitName) -> bool:
        d = limits.take(key, name, 0.0)
        assert d is not None
        return d.allowed

    assert [allowed("a", "batch") for _ in range(3)] == [True, True, False]
    assert allowed("b", "batch")  # another key
    assert allowed("a", "jobs")  # another limit of the same key
    assert not allowed("a", "jobs") and allowed("b", "jobs")


def test_registry_builds_the_configured_limits() -> None:
    limits = KeyLimits(LimitConfig())
    got = {name: limits.take("k", name, 0.0) for name in ("requests", "batch", "jobs", "streams")}
    assert {n: (d.limit, d.remaining) for n, d in got.items() if d} == {
        "requests": (50, 49),
        "batch": (100, 99),
        "jobs": (50, 49),
        "streams": (10, 9),
    }
    assert got["requests"] and got["requests"].reset_after == 1 / 20  # 1200/min refills one token in 50 ms
    assert got["jobs"] and got["jobs"].reset_after == 3600.0
    with pytest.raises(ValueError, match="burst must be at least 1"):
        LimitConfig(burst=0)
    with pytest.raises(ValueError, match="jobs_per_hour must be 0"):
        LimitConfig(jobs_per_hour=-1)


def test_registry_reads_its_clock_when_not_given_now() -> None:
    now = [0.0]
    limits = KeyLimits(LimitConfig(batch_per_minute=1), clock=lambda: now[0])
    assert limits.take("k", "batch").allowed  # type: ignore[union-attr]
    now[0] = 59.0
    assert limits.take("k", "batch").retry_after == 1.0  # type: ignore[union-attr]
    now[0] = 60.0
    assert limits.take("k", "batch").allowed  # type: ignore[union-attr]


SMALL = LimitConfig(requests_per_minute=60, burst=3, batch_per_minute=2, jobs_per_hour=3, concurrent_streams=2)
ops = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from(["requests", "batch", "jobs"]), st.integers(0, 64 * 40)),
    min_size=1,
    max_size=80,
)


@given(ops=ops)
def test_sweeping_idle_entries_changes_no_decision(ops: list[tuple[int, LimitName, int]]) -> None:
    """Registries that sweep on growth, or after every take, answer exactly as one that never sweeps."""
    swept, always, kept = KeyLimits(SMALL, max_entries=1), KeyLimits(SMALL), KeyLimits(SMALL, max_entries=10**9)
    now = 0.0
    for key, name, gap in ops:
        now += gap / 64
        expected = kept.take(f"key-{key}", name, now)
        assert swept.take(f"key-{key}", name, now) == expected
        assert always.take(f"key-{key}", name, now) == expected
        always.sweep(now)
    assert len(always) <= len(kept)
    kept.sweep(now + 3600)
    assert len(kept) == 0  # an hour later every limiter is back at its full state


def test_a_sweep_drops_idle_limiters_but_never_a_stream_in_flight() -> None:
    limits = KeyLimits(SMALL, max_entries=4)
    assert limits.take("streaming", "streams", 0.0).allowed  # type: ignore[union-attr]
    for i in range(20):
        limits.take(f"key-{i}", "requests", float(i * 10))  # each bucket is full again 3 s later
    assert len(limits) <= 4 + 1
    assert limits.sweep(1000.0) >= 1 and len(limits) == 1  # only the held stream slot is left
    limits.release("streaming")
    assert limits.sweep(1000.0) == 1 and len(limits) == 0
    with pytest.raises(RuntimeError, match="release without a matching acquire"):
        limits.release("streaming")


def test_hold_releases_the_stream_slot() -> None:
    limits = KeyLimits(LimitConfig(concurrent_streams=1))
    with limits.hold("k") as d:
        assert d is not None and d.allowed
        assert not limits.take("k", "streams", 0.0).allowed  # type: ignore[union-attr]
    with limits.hold("k") as again:
        assert again is not None and again.allowed


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TokenBucket(0, 5), "rate_per_second must be a positive number"),
        (lambda: TokenBucket(float("nan"), 5), "rate_per_second must be a positive number"),
        (lambda: TokenBucket(1, 0), "capacity must be at least 1"),
        (lambda: SlidingWindow(0, 60), "limit must be at least 1"),
        (lambda: SlidingWindow(5, 0), "window_seconds must be a positive number"),
        (lambda: ConcurrencyLimit(0), "limit must be at least 1"),
    ],
)
def test_limiters_refuse_nonsense_parameters(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
