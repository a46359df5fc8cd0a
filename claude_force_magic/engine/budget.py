"""A spending cap that refuses a call *before* it is sent (SEC-004: no "denial of wallet").

Before sending, a call reserves its worst-case cost (the price of its input estimate plus
``max_tokens`` of output). It is refused with :class:`BudgetExceededError` when
``spent + reserved + estimate > budget_usd``. After the answer the reservation is replaced by
the real cost; a failed call releases it. Concurrent calls therefore can never overshoot
together.

Unknown price: with a budget set, a model without a known price is refused with
:class:`PricingError` telling the user to add a price override, because the cap could not be
kept otherwise. Without a budget, unknown costs are simply not counted.

By default the spend lives in memory (per :class:`Budget` object). :meth:`Budget.persistent`
keeps it in a signed :class:`~.account.SpendAccount` file instead, so it survives restarts and
is shared by processes; a damaged account refuses every call under a limit until
:meth:`Budget.reset`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BudgetExceededError, PricingError
from ..pricing import format_usd
from ..validation import check_number

if TYPE_CHECKING:
    from ..settings import Secret
    from .account import SpendAccount

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

    Thread-safe (one lock, never held across an ``await``); bound to no event loop. With an
    ``account`` (see :meth:`persistent`) the spend is read from and written to it.
    """

    __slots__ = ("_account", "_limit", "_lock", "_reserved", "_spent")

    def __init__(
        self, limit_usd: float | None = None, *, account: SpendAccount | None = None
    ) -> None:
        self._limit = _check_limit(limit_usd)
        self._lock = threading.Lock()
        self._spent = 0.0
        self._reserved = 0.0
        self._account = account

    @classmethod
    def persistent(
        cls,
        path: str | os.PathLike[str],
        *,
        limit_usd: float | None = None,
        window: str = "total",
        secret: str | bytes | Secret | None = None,
    ) -> Budget:
        """A budget whose spend is kept in the signed ledger file ``path``.

        ``window`` is ``total`` (since the last :meth:`reset`), ``day`` (since local midnight)
        or ``session`` (this process); ``secret`` signs the ledger (default: the cache
        secret). Raises :class:`ConfigurationError` for a bad limit or window and
        :class:`~..errors.SecretError` for a bad secret. See :mod:`.account`.
        """
        from .account import SpendAccount

        limit = _check_limit(limit_usd)
        return cls(limit, account=SpendAccount(path, secret=secret, window=window))

    @property
    def account(self) -> SpendAccount | None:
        """The persistent account, or None when the spend is kept in memory."""
        return self._account

    @property
    def window(self) -> str:
        """Which spending counts: ``total``, ``day`` or ``session`` (in memory: ``session``)."""
        return self._account.window if self._account is not None else "session"

    def reset(self) -> None:
        """Start the spend over from 0 (a persistent account records the reset)."""
        with self._lock:
            if self._account is not None:
                self._account.reset()
            self._spent = 0.0

    @property
    def limit(self) -> float | None:
        """The cap in USD, or None for no cap."""
        return self._limit

    @property
    def spent(self) -> float:
        """USD actually spent on settled calls (known prices only), in the window."""
        if self._account is not None:
            return self._account.spent()
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
        return max(0.0, self._limit - self.spent - self._reserved)

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
            self._refuse_if_damaged(limit, estimate)
            if self.spent + self._reserved + estimate > limit:
                spent = self.spent + self._reserved
                raise BudgetExceededError(
                    f"This call could cost up to {format_usd(estimate)}; with "
                    f"{format_usd(spent)} spent or reserved of the {format_usd(limit)} budget "
                    "it was not sent. Raise the budget "
                    "(set_budget / budget_usd), lower max_tokens, or use the cache.",
                    spent=spent,
                    budget=limit,
                    estimate=estimate,
                )
            self._reserved += estimate
            return Reservation(estimate)

    def _refuse_if_damaged(self, limit: float, estimate: float) -> None:
        account = self._account
        damage = None if account is None else account.damaged
        if account is not None and damage is not None:
            raise BudgetExceededError(
                f"The spend account {account.path} cannot be trusted ({damage}), so spending "
                "is treated as over the budget. Reset it to start over (`%agent budget reset`, "
                "or Budget.reset()).",
                spent=limit,
                budget=limit,
                estimate=estimate,
            )

    def settle(self, reservation: Reservation, actual: float | None) -> None:
        """Replace the reservation by the real cost (None: unknown price, counted as 0)."""
        with self._lock:
            if not reservation.done:
                reservation.done = True
                self._reserved = max(0.0, self._reserved - reservation.amount)
            if actual is not None and actual > 0:
                self._spent += actual
                if self._account is not None:
                    self._account.charge(actual)

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation for a call that was not sent or failed without a charge."""
        self.settle(reservation, None)
