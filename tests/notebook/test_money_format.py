"""Money as the notebook prints it: a non-zero amount never shows as $0.00 (issue 8)."""

from __future__ import annotations

import pytest

from claude_force_magic.engine.result import AgentResult, empty_metadata
from claude_force_magic.notebook.display import _money, format_footer


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        (0.001, "$0.001"),
        (0.0123, "$0.0123"),
        (0.5, "$0.50"),
        (0.000042, "$0.000042"),
        (0.99999, "$1.00"),
        (1234.5, "$1,234.50"),
        (0, "$0"),
        (None, "cost unknown"),
    ],
)
def test_money_keeps_the_digits_a_small_amount_needs(usd: float | None, shown: str) -> None:
    assert _money(usd) == shown


def test_no_positive_amount_prints_as_zero() -> None:
    for exponent in range(1, 10):
        text = _money(3 * 10.0**-exponent)
        assert text.strip("$0.") != "", text


def test_footer_of_an_interrupted_call_says_so_and_shows_its_cost() -> None:
    meta = empty_metadata("claude-sonnet-5-5")
    meta.update(input_tokens=833, output_tokens=40, cost_usd=0.002066, status="cancelled")
    footer = format_footer(AgentResult("python-expert", False, "partial", [], meta))
    assert footer.endswith("$0.00207 · interrupted, answer cut off")
    meta["status"] = "timeout"
    assert "timed out" in format_footer(AgentResult("python-expert", False, "", [], meta))
