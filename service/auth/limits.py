"""Per-key rate limits: a token bucket, an exact sliding window, a concurrency cap, and the per-process registry.

Four limits apply to every API key (``LimitConfig``): ``requests`` (a token bucket, 1200/min with bursts of 50),
``batch`` (100 batch operations in any 60 s), ``jobs`` (50 job creations in any hour) and ``streams`` (10 streams in
flight). Each check answers a ``Decision``; ``tightest`` picks the one the ``X-RateLimit-*`` headers report.

Why our own small limiters rather than the ``limits`` package: ``limits`` offers fixed and moving windows but no
token bucket with a burst, and our window limits must be exact under threads (200 threads taking at once on a
100-limit window accept exactly 100). The limiters below are a few dozen lines each, checked against naive
reference models by property tests (``tests/service/test_rate_limiters.py``), which is easier to trust.

Time is always passed in: every method takes ``now`` (monotonic seconds), so tests drive the clock; only
``KeyLimits`` reads a clock, its injected one, when a caller gives no ``now``. Time never runs backwards here: a
``now`` older than one already seen (two threads read the clock, the later one gets the lock first) counts as the
latest seen, so a limiter's state stays ordered.

Example::

    limits = KeyLimits(LimitConfig())
    decision = limits.take("key-1", "requests")  # None when that limit is disabled (0)
    if decision is not None and not decision.allowed:
        ...  # 429 with Retry-After: decision.retry_after
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

LimitName = Literal["requests", "batch", "jobs", "streams"]
LIMIT_NAMES: tuple[LimitName, ...] = ("requests", "batch", "jobs", "streams")


@dataclass(frozen=True)
class Decision:
    """The answer of one limit to one request.

    ``reset_after`` is the time until the limit is fully restored (0 when it is, or for a concurrency cap, which
    frees on release, not with time); ``retry_after`` the time until a request would be allowed again (0 when
    this one was).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    name: str


def tightest(decisions: Iterable[Decision | None]) -> Decision | None:
    """The decision the ``X-RateLimit-*`` headers report: a denied one first (the longest wait), else the one with
    the fewest ``remaining`` (ties: the smallest limit). ``None`` entries (limits not applied) are skipped; ``None``
    when nothing was applied, so the caller emits no headers.

    >>> a = Decision(True, 50, 3, 1.0, 0.0, "requests"); b = Decision(True, 10, 3, 5.0, 0.0, "batch")
    >>> tightest([a, None, b]).name
    'batch'
    """
    applied = [d for d in decisions if d is not None]
    denied = [d for d in applied if not d.allowed]
    if denied:
        return max(denied, key=lambda d: d.retry_after)
    return min(applied, key=lambda d: (d.remaining, d.limit), default=None)


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate_per_second``; a request takes one. Starts full.

    1200/min with bursts of 50 is ``TokenBucket(20, 50)``.
    """

    def __init__(self, rate_per_second: float, capacity: int, *, name: str = "requests") -> None:
        if not rate_per_second > 0 or math.isinf(rate_per_second):
            raise ValueError(f"token bucket {name!r}: rate_per_second must be a positive number, not {rate_per_second}")
        if capacity < 1:
            raise ValueError(f"token bucket {name!r}: capacity must be at least 1, not {capacity}")
        self.rate = rate_per_second
        self.capacity = capacity
        self.name = name
        self._tokens = float(capacity)
        self._last = -math.inf  # no refill is needed before the first take: it starts full
        self._lock = threading.Lock()

    def take(self, now: float) -> Decision:
        with self._lock:
            self._refill(now)
            allowed = self._tokens >= 1
            if allowed:
                self._tokens -= 1
            retry = 0.0 if allowed else (1 - self._tokens) / self.rate
            reset = (self.capacity - self._tokens) / self.rate
            return Decision(allowed, self.capacity, math.floor(self._tokens), reset, retry, self.name)

    def is_idle(self, now: float) -> bool:
        """Back at its full state: a fresh bucket would answer exactly the same from ``now`` on."""
        with self._lock:
            self._refill(now)
            return self._tokens >= self.capacity

    def _refill(self, now: float) -> None:
        if now > self._last:
            if self._last > -math.inf:
                self._tokens = min(float(self.capacity), self._tokens + (now - self._last) * self.rate)
            self._last = now


class SlidingWindow:
    """At most ``limit`` acceptances in any window of ``window_seconds``: exact, not an approximation.

    A request at ``now`` is accepted iff fewer than ``limit`` acceptances lie in ``(now - window, now]``. The
    acceptance times are kept in a deque, at most ``limit`` long.
    """

    def __init__(self, limit: int, window_seconds: float, *, name: str = "batch") -> None:
        if limit < 1:
            raise ValueError(f"sliding window {name!r}: limit must be at least 1, not {limit}")
        if not window_seconds > 0 or math.isinf(window_seconds):
            raise ValueError(f"sliding window {name!r}: window_seconds must be a positive number, not {window_seconds}")
        self.limit = limit
        self.window = window_seconds
        self.name = name
        self._accepted: deque[float] = deque()
        self._latest = -math.inf
        self._lock = threading.Lock()

    def take(self, now: float) -> Decision:
        with self._lock:
            now = self._expire(now)
            accepted = self._accepted
            allowed = len(accepted) < self.limit
            if allowed:
                accepted.append(now)
            retry = 0.0 if allowed else accepted[0] + self.window - now
            reset = accepted[-1] + self.window - now
            return Decision(allowed, self.limit, self.limit - len(accepted), reset, retry, self.name)

    def is_idle(self, now: float) -> bool:
        """No acceptance left in the window: a fresh window would answer exactly the same from ``now`` on."""
        with self._lock:
            self._expire(now)
            return not self._accepted

    def _expire(self, now: float) -> float:
        """Drop the acceptances that left the window by ``now``; the effective (never decreasing) ``now``."""
        now = max(now, self._latest)
        self._latest = now
        while self._accepted and now - self._accepted[0] >= self.window:
            self._accepted.popleft()
        return now


class ConcurrencyLimit:
    """At most ``limit`` in flight: ``acquire`` before, ``release`` after (only after an allowed acquire).

    A slot frees on release, not with time, so the wait is unknown: a denied acquire says ``retry_after =
    retry_hint`` (1 s unless told), for a ``Retry-After`` header.
    """

    def __init__(self, limit: int, *, name: str = "streams", retry_hint: float = 1.0) -> None:
        if limit < 1:
            raise ValueError(f"concurrency limit {name!r}: limit must be at least 1, not {limit}")
        self.limit = limit
        self.name = name
        self.retry_hint = retry_hint
        self._in_flight = 0
        self._lock = threading.Lock()

    def acquire(self) -> Decision:
        with self._lock:
            allowed = self._in_flight < self.limit
            if allowed:
                self._in_flight += 1
            retry = 0.0 if allowed else self.retry_hint
            return Decision(allowed, self.limit, self.limit - self._in_flight, 0.0, retry, self.name)

    def release(self) -> None:
        with self._lock:
            if self._in_flight == 0:
                raise RuntimeError(f"concurrency limit {self.name!r}: release without a matching acquire")
            self._in_flight -= 1

    @contextmanager
    def slot(self) -> Iterator[Decision]:
        """``with limit.slot() as d:`` acquires, and releases on exit if ``d.allowed`` (check it inside)."""
        decision = self.acquire()
        try:
            yield decision
        finally:
            if decision.allowed:
                self.release()

    def take(self, now: float) -> Decision:
        """``acquire`` (``now`` is not used), so the registry treats every limiter alike."""
        return self.acquire()

    def is_idle(self, now: float) -> bool:
        with self._lock:
            return self._in_flight == 0


class _Limiter(Protocol):
    def take(self, now: float) -> Decision: ...

    def is_idle(self, now: float) -> bool: ...


@dataclass(frozen=True)
class LimitConfig:
    """The limits of every API key; 0 disables a limit (``KeyLimits.take`` then answers ``None``)."""

    requests_per_minute: int = 1200
    burst: int = 50
    batch_per_minute: int = 100
    jobs_per_hour: int = 50
    concurrent_streams: int = 10

    def __post_init__(self) -> None:
        for field in ("requests_per_minute", "burst", "batch_per_minute", "jobs_per_hour", "concurrent_streams"):
            if getattr(self, field) < 0:
                raise ValueError(f"rate limit {field} must be 0 (disabled) or more, not {getattr(self, field)}")
        if self.requests_per_minute > 0 and self.burst < 1:
            raise ValueError(f"rate limit burst must be at least 1 when requests_per_minute is set, not {self.burst}")

    def limiter(self, name: LimitName) -> _Limiter | None:
        """A fresh limiter for ``name``; ``None`` when that limit is disabled."""
        if name == "requests":
            return (
                TokenBucket(self.requests_per_minute / 60, self.burst, name=name) if self.requests_per_minute else None
            )
        if name == "batch":
            return SlidingWindow(self.batch_per_minute, 60.0, name=name) if self.batch_per_minute else None
        if name == "jobs":
            return SlidingWindow(self.jobs_per_hour, 3600.0, name=name) if self.jobs_per_hour else None
        if name == "streams":
            return ConcurrencyLimit(self.concurrent_streams, name=name) if self.concurrent_streams else None
        raise ValueError(f"unknown rate limit {name!r}: expected one of {', '.join(LIMIT_NAMES)}")


class KeyLimits:
    """The per-process registry: one limiter per ``(key_id, limit name)``, made on first use.

    ``take`` answers ``None`` when that limit is disabled (0 in the config): no limit applied, so no headers for
    it. Every call holds the registry's one lock, which makes ``take`` atomic and keeps a sweep from dropping a
    limiter another thread is using (the work under it is O(1), far below the cost of a request).

    Memory: when the map grows past ``max_entries`` (and then past twice its size after the last sweep, so sweeps
    cost O(1) per take on average), the limiters back at their full state are dropped: a fresh one made on the next
    use answers exactly the same, so sweeping changes no decision. A stream in flight is never idle, so ``release``
    always finds its limiter. The map holds at most about twice the peak number of non-idle entries, or
    ``max_entries``.
    """

    def __init__(
        self, config: LimitConfig, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000
    ) -> None:
        self.config = config
        self._clock = clock
        self._max_entries = max_entries
        self._sweep_at = max_entries
        self._limiters: dict[tuple[str, LimitName], _Limiter] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, name: LimitName, now: float | None = None) -> Decision | None:
        """Count one request of ``key_id`` against ``name`` (for ``streams``: acquire a slot)."""
        with self._lock:
            now = self._clock() if now is None else now
            limiter = self._limiters.get((key_id, name))
            if limiter is None:
                limiter = self.config.limiter(name)
                if limiter is None:
                    return None
                if len(self._limiters) >= self._sweep_at:
                    self._sweep(now)  # before adding: a fresh limiter is idle and would be swept with the rest
                self._limiters[(key_id, name)] = limiter
            return limiter.take(now)

    def release(self, key_id: str, name: LimitName = "streams") -> None:
        """Free the slot an allowed ``take(key_id, name)`` of a concurrency limit acquired."""
        with self._lock:
            limiter = self._limiters.get((key_id, name))
            if not isinstance(limiter, ConcurrencyLimit):
                raise RuntimeError(f"rate limit {name!r} of key {key_id!r}: release without a matching acquire")
            limiter.release()

    @contextmanager
    def hold(self, key_id: str, name: LimitName = "streams") -> Iterator[Decision | None]:
        """``with limits.hold(key) as d:`` takes a slot, and releases it on exit if ``d`` allowed it."""
        decision = self.take(key_id, name)
        try:
            yield decision
        finally:
            if decision is not None and decision.allowed:
                self.release(key_id, name)

    def sweep(self, now: float | None = None) -> int:
        """Drop the limiters back at their full state now; how many were dropped."""
        with self._lock:
            return self._sweep(self._clock() if now is None else now)

    def __len__(self) -> int:
        with self._lock:
            return len(self._limiters)

    def _sweep(self, now: float) -> int:
        idle = [entry for entry, limiter in self._limiters.items() if limiter.is_idle(now)]
        for entry in idle:
            del self._limiters[entry]
        self._sweep_at = max(self._max_entries, 2 * len(self._limiters))
        return len(idle)
