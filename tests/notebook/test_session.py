"""The session: lazily built orchestrators, rebuilt when the configuration changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from claude_force_magic import errors
from claude_force_magic.notebook.session import AgentSession, SessionConfig


@pytest.fixture
def settings() -> dict[str, object]:
    return {"simulator_latency": 0.0, "budget_usd": 0.01}


@pytest.fixture
def session(settings: dict[str, object]) -> Iterator[AgentSession]:
    s = AgentSession(lambda: dataclasses.replace(SessionConfig(), **settings))  # type: ignore[arg-type]
    s.simulate = True
    yield s
    s.close()


def _ask(session: AgentSession, task: str) -> None:
    orch = session.orchestrator()
    result = session.run(orch.execute_agent("python-expert", task, use_cache=False, max_tokens=800))
    assert result.success, result.errors


def test_budget_spend_survives_a_rebuild_after_a_config_change(
    session: AgentSession, settings: dict[str, object]
) -> None:
    _ask(session, "First paid question.")
    spent = session.orchestrator().spent_usd
    assert spent > 0
    with pytest.raises(errors.BudgetExceededError):
        _ask(session, "A question the budget no longer allows.")
    settings["timeout"] = 31.0  # %config AgentMagics.timeout = 31 closes the orchestrators
    session.invalidate()
    assert session.orchestrator().spent_usd == pytest.approx(spent)
    with pytest.raises(errors.BudgetExceededError):
        _ask(session, "Still refused: changing a setting does not reset the spending.")


FABLE_5_2 = {
    "input": 10,
    "output": 50,
    "cache_write_5m": 12.5,
    "cache_write_1h": 20,
    "cache_read": 0.25,
}


def test_price_overrides_let_a_budget_cover_a_model_the_table_does_not_know(
    session: AgentSession, settings: dict[str, object]
) -> None:
    settings.update(model="claude-fable-5-2", budget_usd=1.0)
    with pytest.warns(UserWarning, match="claude-fable-5-2"), pytest.raises(errors.PricingError):
        _ask(session, "A question for a model without a price.")
    settings["prices"] = {"claude-fable-5-2": FABLE_5_2}
    session.invalidate()
    _ask(session, "The same question once the price is known.")
    assert session.orchestrator().spent_usd > 0
