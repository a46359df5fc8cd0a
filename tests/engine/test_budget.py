"""Tests for engine/budget.py: reserve before sending, settle after (SEC-004)."""

from __future__ import annotations

import threading

import pytest

from claude_force_magic.engine.budget import Budget
from claude_force_magic.errors import BudgetExceededError, ConfigurationError, PricingError


def test_sec_004_budget_refuses_when_estimate_would_exceed() -> None:
    budget = Budget(1.0)
    r = budget.reserve(0.6, model="m")
    with pytest.raises(BudgetExceededError) as info:
        budget.reserve(0.5, model="m")
    assert info.value.budget == 1.0
    assert info.value.estimate == 0.5
    assert info.value.spent == pytest.approx(0.6)
    assert "set_budget" in str(info.value)
    budget.settle(r, 0.1)
    assert budget.spent == pytest.approx(0.1)
    assert budget.reserved == 0
    assert budget.remaining == pytest.approx(0.9)
    budget.reserve(0.5, model="m")


def test_release_returns_the_reservation() -> None:
    budget = Budget(1.0)
    r = budget.reserve(1.0, model="m")
    budget.release(r)
    budget.release(r)  # idempotent
    assert budget.reserved == 0
    assert budget.spent == 0


def test_unknown_price_refused_only_when_a_budget_is_set() -> None:
    with pytest.raises(PricingError, match="with_overrides"):
        Budget(5.0).reserve(None, model="claude-fable-5-2")
    assert Budget(None).reserve(None, model="claude-fable-5-2").amount == 0


def test_set_budget_and_validation() -> None:
    budget = Budget(None)
    assert budget.remaining is None
    budget.set_limit(2)
    assert budget.remaining == 2
    for bad in (-1, float("nan"), float("inf"), "3", True):
        with pytest.raises(ConfigurationError):
            budget.set_limit(bad)  # type: ignore[arg-type]


def test_concurrent_reservations_never_overshoot() -> None:
    budget = Budget(10.0)
    granted: list[int] = []

    def worker() -> None:
        for _ in range(200):
            try:
                budget.reserve(0.01, model="m")
            except BudgetExceededError:
                continue
            granted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == pytest.approx(1000, abs=1)
    assert budget.reserved <= 10.0 + 1e-9


def test_the_refusal_never_rounds_a_tiny_budget_to_zero_dollars() -> None:
    """A $0.000001 budget was reported as "of the $0.0000 budget"."""
    budget = Budget(0.000001)
    with pytest.raises(BudgetExceededError) as info:
        budget.reserve(0.0426, model="claude-sonnet-5-5")
    message = str(info.value)
    assert "$0.000001 budget" in message and "$0.0426" in message, message
    assert "$0.0000 " not in message
