"""A spending cap that refuses a call *before* it is sent (SEC-004: no "denial of wallet").

Before sending, a call reserves its worst-case cost (the price of its input estimate plus
``max_tokens`` of output). It is refused with :class:`BudgetExceededError` when
``spent + reserved + estimate > budget_usd``. After the answer the reservation is replaced by
the real cost; a failed call releases it. Concurrent calls therefore can never overshoot
together.

Unknown price: with a budget set, a model without a known price is refused with
:class:`PricingError` telling the user to add a price override, because the cap could not be
kept otherwise. Without a budget, unknown costs are simply not counted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..errors import BudgetExceededError, PricingError
from ..validation import check_number

__all__ = ["Budget", "Reservation"]


@dataclass
class Reservation:
    """The worst-case amount held for one call until it settles."""

    amount: float
    done: bool = False


def _check_limit(limit_usd: object) -> float | None:
    return check_number("budget_usd", limit_usd, strict=False, allow_none=True)


class Budget:
    """Spent, reserved and remaining USD against an optional limit.

    Thread-safe (one lock, never held across an ``await``); bound to no event loop.
    """

    __slots__ = ("_limit", "_lock", "_reserved", "_spent")

    def __init__(self, limit_usd: float | None = None) -> None:
        self._limit = _check_limit(limit_usd)
        self._lock = threading.Lock()
        self._spent = 0.0
        self._reserved = 0.0

    @property
    def limit(self) -> float | None:
        """The cap in USD, or None for no cap."""
        return self._limit

    @property
    def spent(self) -> float:
        """USD actually spent on settled calls (known prices only)."""
        return self._spent

    @property
    def reserved(self) -> float:
        """USD held for calls in flight."""
        return self._reserved

    @property
    def remaining(self) -> float | None:
        """``limit - spent - reserved`` (never below 0), or None without a cap."""
        if self._limit is None:
            return None
        return max(0.0, self._limit - self._spent - self._reserved)

    def set_limit(self, limit_usd: float | None) -> None:
        """Change the cap (None removes it); money already spent stays spent.

        Raises :class:`ConfigurationError` for a negative or non-finite value.
        """
        value = _check_limit(limit_usd)
        with self._lock:
            self._limit = value

    def reserve(self, estimate: float | None, *, model: str) -> Reservation:
        """Hold ``estimate`` USD for a call about to be sent.

        Raises :class:`BudgetExceededError` when the call could take spending past the cap,
        and :class:`PricingError` when a cap is set but ``estimate`` is None (unknown price).
        """
        with self._lock:
            limit = self._limit
            if limit is None:
                return Reservation(0.0)
            if estimate is None:
                raise PricingError(
                    f"No price is known for model {model!r}, so budget_usd cannot be enforced. "
                    "Add one with prices=PriceTable.bundled().with_overrides("
                    f"{{{model!r}: {{'input': ..., 'output': ..., 'cache_write_5m': ..., "
                    "'cache_write_1h': ..., 'cache_read': ...}}), or set budget_usd=None."
                )
            if self._spent + self._reserved + estimate > limit:
                spent = self._spent + self._reserved
                raise BudgetExceededError(
                    f"This call could cost up to ${estimate:.4f}; with ${spent:.4f} spent or "
                    f"reserved of the ${limit:.4f} budget it was not sent. Raise the budget "
                    "(set_budget / budget_usd), lower max_tokens, or use the cache.",
                    spent=spent,
                    budget=limit,
                    estimate=estimate,
                )
            self._reserved += estimate
            return Reservation(estimate)

    def settle(self, reservation: Reservation, actual: float | None) -> None:
        """Replace the reservation by the real cost (None: unknown price, counted as 0)."""
        with self._lock:
            if not reservation.done:
                reservation.done = True
                self._reserved = max(0.0, self._reserved - reservation.amount)
            if actual is not None and actual > 0:
                self._spent += actual

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation for a call that was not sent or failed without a charge."""
        self.settle(reservation, None)
