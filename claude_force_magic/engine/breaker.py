"""A circuit breaker: stop calling a failing service for a while, then let one probe decide.

``closed``: calls go through; ``threshold`` consecutive failures open it. ``open``: calls fail
fast with :class:`CircuitOpenError` (``retry_in`` seconds) without reaching the network, for
``cooldown_seconds``. ``half_open``: exactly one probe call is let through; its success closes
the circuit, its failure opens it for another cool-down. Meanwhile other calls fail fast.

What counts as a failure: retryable server-side errors (5xx, 529, connection failures,
per-attempt timeouts). A 429 (the service is healthy and said when to come back; the rate
limiter handles it), any other 4xx, a refusal, and a cancellation do not count, and a cancelled
probe hands its turn to the next call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from ..errors import APIError, CircuitOpenError, RateLimitError
from ..validation import check_int, check_number
from . import defaults

__all__ = ["CircuitBreaker", "counts_as_failure"]

State = Literal["closed", "open", "half_open"]


def counts_as_failure(exc: BaseException) -> bool:
    """True for errors that say the service is unhealthy (retryable API errors except 429)."""
    return isinstance(exc, APIError) and exc.retryable and not isinstance(exc, RateLimitError)


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a cool-down and a single half-open probe.

    ``clock`` is a monotonic clock in seconds (tests pass a fake one). Raises
    :class:`ConfigurationError` for ``threshold < 1`` or a negative cool-down. Thread-safe;
    bound to no event loop.
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_lock",
        "_opened_at",
        "_probing",
        "cooldown_seconds",
        "threshold",
        "times_opened",
    )

    def __init__(
        self,
        threshold: int = defaults.BREAKER_THRESHOLD,
        cooldown_seconds: float = defaults.BREAKER_COOLDOWN_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        threshold = check_int("breaker_threshold", threshold)
        cooldown_seconds = check_number("breaker_cooldown_seconds", cooldown_seconds, strict=False)
        self.threshold = threshold
        self.cooldown_seconds = float(cooldown_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.times_opened = 0

    @property
    def state(self) -> State:
        """``closed``, ``open`` (cooling down) or ``half_open`` (a probe may go or is going)."""
        with self._lock:
            return self._state_locked(self._clock())

    @property
    def consecutive_failures(self) -> int:
        """Failures counted since the last success."""
        return self._failures

    def _state_locked(self, now: float) -> State:
        if self._opened_at is None:
            return "closed"
        if now - self._opened_at < self.cooldown_seconds:
            return "open"
        return "half_open"

    def before_call(self) -> bool:
        """Admit a call or raise :class:`CircuitOpenError`.

        Returns True when this call is the half-open probe. Every admitted call must end with
        exactly one of :meth:`on_success`, :meth:`on_failure` or :meth:`on_cancel`.
        """
        with self._lock:
            now = self._clock()
            state = self._state_locked(now)
            if state == "closed":
                return False
            assert self._opened_at is not None
            if state == "half_open" and not self._probing:
                self._probing = True
                return True
            retry_in = max(0.0, self._opened_at + self.cooldown_seconds - now)
        what = "a probe call is in flight" if state == "half_open" else "cooling down"
        raise CircuitOpenError(
            f"The circuit is open after {self._failures} consecutive failures ({what}); calls "
            f"fail fast for {retry_in:.1f}s more. The service looks unhealthy; try again later.",
            retry_in=retry_in,
        )

    def on_success(self, probe: bool = False) -> None:
        """The admitted call succeeded (or failed in a way that does not count): close."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            if probe:
                self._probing = False

    def on_failure(self, probe: bool = False) -> None:
        """The admitted call failed with a counted error: maybe open, or re-open after a probe."""
        with self._lock:
            self._failures += 1
            if probe:
                self._probing = False
            if probe or (self._opened_at is None and self._failures >= self.threshold):
                self._opened_at = self._clock()
                self.times_opened += 1

    def on_cancel(self, probe: bool = False) -> None:
        """The admitted call was cancelled: not a failure; a probe frees its turn."""
        if probe:
            with self._lock:
                self._probing = False

    @contextmanager
    def guard(self) -> Iterator[None]:
        """``with breaker.guard(): ...``: admit, then record the outcome of the block.

        Raises :class:`CircuitOpenError` before running the block when the circuit is open.
        """
        probe = self.before_call()
        try:
            yield
        except BaseException as exc:
            if counts_as_failure(exc):
                self.on_failure(probe)
            elif isinstance(exc, Exception) and not isinstance(exc, APIError):
                self.on_cancel(probe)
            elif isinstance(exc, APIError):
                self.on_success(probe)  # a 4xx or 429: the service answered; it is up
            else:
                self.on_cancel(probe)  # CancelledError, KeyboardInterrupt: not a verdict
            raise
        self.on_success(probe)
