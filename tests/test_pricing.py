"""Tests for claude_force_magic/pricing.py: pinned list prices, lookup rules, overrides."""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from claude_force_magic.errors import PricingError
from claude_force_magic.pricing import (
    ModelPrice,
    PriceTable,
    UnknownModelPriceWarning,
    cost,
    default_table,
)

# The DESIGN.md "List prices" table: input / output / 5m write / 1h write / cache read.
DESIGN_PRICES = {
    ("claude-fable-5-1", "claude-mythos-5-1"): ("10", "50", "12.50", "20", "0.25"),
    ("claude-fable-5", "claude-mythos-5"): ("10", "50", "12.50", "20", "1.00"),
    ("claude-opus-5-5",): ("4", "20", "5", "8", "0.20"),
    (
        "claude-opus-5",
        "claude-opus-4-8",
        "claude-opus-4-7",
        "claude-opus-4-6",
        "claude-opus-4-5",
    ): ("5", "25", "6.25", "10", "0.50"),
    ("claude-sonnet-5-5", "claude-sonnet-5"): ("2", "10", "2.50", "4", "0.20"),
    ("claude-sonnet-4-6", "claude-sonnet-4-5", "claude-sonnet-4", "claude-3-7-sonnet"): (
        "3",
        "15",
        "3.75",
        "6",
        "0.30",
    ),
    ("claude-haiku-5-5",): ("0.10", "0.50", "0.125", "0.20", "0.01"),
    ("claude-haiku-4-5",): ("1", "5", "1.25", "2", "0.10"),
    ("claude-3-5-haiku",): ("0.80", "4", "1", "1.6", "0.08"),
    ("claude-opus-4-1", "claude-opus-4"): ("15", "75", "18.75", "30", "1.50"),
    ("claude-3-haiku",): ("0.25", "1.25", "0.30", "0.50", "0.03"),
}
FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


@pytest.fixture
def table() -> PriceTable:
    return PriceTable.bundled()


@pytest.mark.parametrize(
    ("model", "rates"),
    [(m, rates) for models, rates in DESIGN_PRICES.items() for m in models],
)
def test_bundled_table_matches_design_prices(
    table: PriceTable, model: str, rates: tuple[str, ...]
) -> None:
    price = table.lookup(model)
    assert price is not None
    assert tuple(getattr(price, f) for f in FIELDS) == tuple(Decimal(r) for r in rates)


def test_bundled_table_has_effective_date_and_source(table: PriceTable) -> None:
    assert table.effective_date == "2026-11-01"
    raw = json.loads(
        (Path(__file__).parents[1] / "claude_force_magic/data/prices.json").read_text()
    )
    assert "pricing" in raw["source"] and "2026" in raw["source"]
    assert len(table) == sum(len(models) for models in DESIGN_PRICES)


def test_thousand_in_thousand_out_at_3_15_is_exactly_0_018(table: PriceTable) -> None:
    assert table.cost("claude-sonnet-4-5", {"input_tokens": 1_000, "output_tokens": 1_000}) == 0.018


def test_module_level_cost_uses_bundled_table() -> None:
    assert cost("claude-sonnet-4-5", {"input_tokens": 1_000, "output_tokens": 1_000}) == 0.018
    assert default_table() is default_table()


def test_cache_read_and_5m_1h_writes_priced_separately(table: PriceTable) -> None:
    usage = {
        "input_tokens": 1_000,
        "output_tokens": 2_000,
        "cache_creation_input_tokens": 30_000,
        "cache_read_input_tokens": 100_000,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 10_000,
            "ephemeral_1h_input_tokens": 20_000,
        },
    }
    # 1k*3 + 2k*15 + 10k*3.75 + 20k*6 + 100k*0.30, per million
    expected = (3_000 + 30_000 + 37_500 + 120_000 + 30_000) / 1_000_000
    assert table.cost("claude-sonnet-4-5", usage) == expected == 0.2205


def test_cache_writes_without_breakdown_use_5m_rate(table: PriceTable) -> None:
    usage = {"cache_creation_input_tokens": 1_000_000}
    assert table.cost("claude-sonnet-4-5", usage) == 3.75


def test_breakdown_remainder_is_priced_at_5m_rate(table: PriceTable) -> None:
    usage = {
        "cache_creation_input_tokens": 3_000_000,
        "cache_creation": {"ephemeral_1h_input_tokens": 1_000_000},
    }
    assert table.cost("claude-sonnet-4-5", usage) == 6 + 2 * 3.75


@dataclass
class _Breakdown:
    ephemeral_5m_input_tokens: int | None
    ephemeral_1h_input_tokens: int | None


@dataclass
class _SdkLikeUsage:
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: _Breakdown | None = None


def test_usage_object_with_attributes_and_none_fields(table: PriceTable) -> None:
    usage = _SdkLikeUsage(input_tokens=1_000, output_tokens=1_000)
    assert table.cost("claude-sonnet-4-5", usage) == 0.018
    with_cache = _SdkLikeUsage(1_000, 1_000, 1_000_000, 1_000_000, _Breakdown(None, 1_000_000))
    assert table.cost("claude-sonnet-4-5", with_cache) == pytest.approx(0.018 + 6 + 0.30)


def test_real_sdk_usage_object_is_accepted(table: PriceTable) -> None:
    from anthropic.types import Usage

    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    assert table.cost("claude-sonnet-4-5", usage) == 0.018


def test_missing_fields_count_as_zero(table: PriceTable) -> None:
    assert table.cost("claude-sonnet-4-5", {}) == 0.0
    assert table.cost("claude-sonnet-4-5", {"output_tokens": None}) == 0.0


def test_haiku_5_5_below_and_above_100k_prompt_tokens(table: PriceTable) -> None:
    below = {"input_tokens": 100_000, "output_tokens": 10_000}
    assert table.cost("claude-haiku-5-5", below) == pytest.approx(0.01 + 0.005)
    assert table.cost("claude-haiku-5-5", below) == 0.015
    above = {"input_tokens": 100_001, "output_tokens": 10_000}
    # every token of the request at the long-context rates, output included
    assert table.cost("claude-haiku-5-5", above) == float(
        (Decimal(100_001) * Decimal("0.50") + Decimal(10_000) * Decimal("2.50")) / 1_000_000
    )


def test_haiku_5_5_long_context_counts_cached_prompt_tokens(table: PriceTable) -> None:
    usage = {"input_tokens": 10, "cache_read_input_tokens": 100_000}
    assert table.cost("claude-haiku-5-5", usage) == float(
        (Decimal(10) * Decimal("0.50") + Decimal(100_000) * Decimal("0.05")) / 1_000_000
    )


def test_batch_halves_every_rate(table: PriceTable) -> None:
    usage = {
        "input_tokens": 1_000,
        "output_tokens": 1_000,
        "cache_read_input_tokens": 1_000,
        "cache_creation_input_tokens": 1_000,
    }
    full = table.cost("claude-sonnet-4-5", usage)
    half = table.cost("claude-sonnet-4-5", usage, batch=True)
    assert full is not None and half is not None
    assert half == full / 2
    assert (
        table.cost("claude-sonnet-4-5", {"input_tokens": 1_000, "output_tokens": 1_000}, batch=True)
        == 0.009
    )


@pytest.mark.parametrize(
    ("model", "canonical"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("claude-opus-4-0", "claude-opus-4"),
        ("claude-opus-4-1", "claude-opus-4-1"),
    ],
)
def test_dated_snapshots_and_aliases_resolve(table: PriceTable, model: str, canonical: str) -> None:
    assert table.resolve(model) == canonical
    assert table.lookup(model) == table.lookup(canonical)
    assert model in table


def test_opus_4_1_is_not_priced_as_opus_4(table: PriceTable) -> None:
    # both happen to cost the same today; prove the resolution, not the coincidence
    assert table.resolve("claude-opus-4-1") == "claude-opus-4-1"
    assert table.resolve("claude-opus-4-1-20250805") == "claude-opus-4-1"


@pytest.mark.parametrize(
    "model",
    [
        "claude-fable-5-2",
        "claude-fable-5-2-20261201",
        "claude-opus-4-9",
        "claude-sonnet-4-5-x",
        "gpt-5",
        "",
    ],
)
def test_unknown_models_are_not_priced_as_neighbours(table: PriceTable, model: str) -> None:
    assert table.lookup(model) is None
    assert model not in table


def test_fable_5_2_unknown_returns_none_with_one_warning(table: PriceTable) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert table.cost("claude-fable-5-2", {"input_tokens": 1_000}) is None
        assert table.cost("claude-fable-5-2", {"input_tokens": 1_000}) is None
        assert table.estimate("claude-fable-5-2", 10, 10) is None
    relevant = [w for w in caught if issubclass(w.category, UnknownModelPriceWarning)]
    assert len(relevant) == 1
    message = str(relevant[0].message)
    assert "claude-fable-5-2" in message and "with_overrides" in message


def test_unknown_model_warning_once_per_model_across_threads(table: PriceTable) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [
            threading.Thread(target=table.cost, args=("claude-new-9", {"input_tokens": 1}))
            for _ in range(16)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(issubclass(w.category, UnknownModelPriceWarning) for w in caught) == 1


def test_unknown_model_warning_does_not_echo_control_characters(table: PriceTable) -> None:
    with pytest.warns(UnknownModelPriceWarning) as record:
        table.cost("evil\nINFO forged log line\x1b[2J", {})
    text = str(record[0].message)
    assert "\n" not in text and "\x1b" not in text


def test_override_adds_a_model() -> None:
    base = PriceTable.bundled()
    table = base.with_overrides(
        {
            "claude-fable-5-2": {
                "input": 12,
                "output": 60,
                "cache_write_5m": 15,
                "cache_write_1h": 24,
                "cache_read": 0.3,
            }
        }
    )
    assert table.cost("claude-fable-5-2", {"input_tokens": 1_000, "output_tokens": 1_000}) == 0.072
    assert table.lookup("claude-fable-5-2-20261201") == table.lookup("claude-fable-5-2")
    assert base.lookup("claude-fable-5-2") is None  # the original is unchanged


def test_override_changes_some_rates_of_a_known_model(table: PriceTable) -> None:
    cheaper = table.with_overrides({"claude-sonnet-4-5": {"input": "2.5"}})
    price = cheaper.lookup("claude-sonnet-4-5-20250929")
    assert price is not None
    assert price.input == Decimal("2.5") and price.output == Decimal(15)
    assert cheaper.cost("claude-sonnet-4-5", {"input_tokens": 1_000_000}) == 2.5


def test_override_accepts_model_price_and_float_rates_exactly(table: PriceTable) -> None:
    mp = ModelPrice(Decimal("0.1"), Decimal("0.2"), Decimal("0.1"), Decimal("0.2"), Decimal("0.01"))
    t = table.with_overrides(
        {
            "mine": mp,
            "yours": {
                "input": 0.1,
                "output": 0.2,
                "cache_write_5m": 0.1,
                "cache_write_1h": 0.2,
                "cache_read": 0.01,
            },
        }
    )
    assert t.lookup("mine") == t.lookup("yours") == mp
    assert t.cost("yours", {"input_tokens": 3_000_000}) == 0.3  # not 0.30000000000000004


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (
            {"input": -1, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1},
            ">= 0",
        ),
        ({"input": 1, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1}, "missing cache_read"),
        (
            {
                "input": "three",
                "output": 1,
                "cache_write_5m": 1,
                "cache_write_1h": 1,
                "cache_read": 1,
            },
            "number",
        ),
        (
            {"input": None, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1},
            "number",
        ),
        (
            {"input": True, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1},
            "number",
        ),
        (
            {
                "input": float("nan"),
                "output": 1,
                "cache_write_5m": 1,
                "cache_write_1h": 1,
                "cache_read": 1,
            },
            "finite",
        ),
        (
            {
                "input": 1,
                "ouput": 1,
                "output": 1,
                "cache_write_5m": 1,
                "cache_write_1h": 1,
                "cache_read": 1,
            },
            "'ouput'",
        ),
        ("3/15", "object"),
    ],
)
def test_invalid_override_raises_pricing_error(table: PriceTable, spec: Any, fragment: str) -> None:
    with pytest.raises(PricingError, match=fragment.replace("(", r"\(")) as info:
        table.with_overrides({"new-model": spec})
    assert "new-model" in str(info.value)


def test_invalid_override_on_known_model_is_still_refused(table: PriceTable) -> None:
    with pytest.raises(PricingError, match=">= 0"):
        table.with_overrides({"claude-sonnet-4-5": {"output": -15}})


def test_invalid_model_id_in_override_refused(table: PriceTable) -> None:
    with pytest.raises(PricingError, match="whitespace"):
        table.with_overrides({"bad model": {"input": 1}})


def test_override_with_long_context(table: PriceTable) -> None:
    t = table.with_overrides(
        {
            "lc-model": {
                "input": 1,
                "output": 1,
                "cache_write_5m": 1,
                "cache_write_1h": 1,
                "cache_read": 1,
                "long_context": {
                    "threshold": 10,
                    "input": 2,
                    "output": 2,
                    "cache_write_5m": 2,
                    "cache_write_1h": 2,
                    "cache_read": 2,
                },
            }
        }
    )
    assert t.cost("lc-model", {"input_tokens": 10, "output_tokens": 1_000_000}) == pytest.approx(
        1.00001
    )
    assert t.cost("lc-model", {"input_tokens": 11, "output_tokens": 1_000_000}) == pytest.approx(
        2.000022
    )


def test_estimate_is_worst_case_input_plus_full_output(table: PriceTable) -> None:
    assert table.estimate("claude-sonnet-4-5", 1_000, 1_000) == 0.018
    assert table.estimate("claude-sonnet-4-5", 1_000, 1_000, batch=True) == 0.009
    # haiku-5-5: a prompt over the threshold makes the whole estimate long-context priced
    assert table.estimate("claude-haiku-5-5", 200_000, 1_000) == float(
        (Decimal(200_000) * Decimal("0.50") + Decimal(1_000) * Decimal("2.50")) / 1_000_000
    )


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_bad_token_counts_raise_pricing_error(table: PriceTable, bad: Any) -> None:
    with pytest.raises(PricingError, match="input_tokens"):
        table.cost("claude-sonnet-4-5", {"input_tokens": bad})
    with pytest.raises(PricingError):
        table.estimate("claude-sonnet-4-5", bad, 10)


def test_from_file_and_invalid_tables(tmp_path: Path) -> None:
    good = tmp_path / "prices.json"
    good.write_text(
        json.dumps(
            {
                "effective_date": "2030-01-01",
                "models": {
                    "m-1": {
                        "input": 1,
                        "output": 2,
                        "cache_write_5m": 1,
                        "cache_write_1h": 2,
                        "cache_read": 0.1,
                    }
                },
                "aliases": {"m-1-latest": "m-1"},
            }
        )
    )
    t = PriceTable.from_file(good)
    assert t.effective_date == "2030-01-01" and t.resolve("m-1-latest") == "m-1"
    bad_alias = tmp_path / "bad.json"
    bad_alias.write_text(json.dumps({"models": {}, "aliases": {"x": "nowhere"}}))
    with pytest.raises(PricingError, match="nowhere"):
        PriceTable.from_file(bad_alias)
    not_json = tmp_path / "nope.json"
    not_json.write_text("{")
    with pytest.raises(PricingError, match="not valid"):
        PriceTable.from_file(not_json)
    with pytest.raises(PricingError, match="Cannot read"):
        PriceTable.from_file(tmp_path / "missing.json")
    with pytest.raises(PricingError, match="models"):
        PriceTable.from_mapping({"effective_date": "2030-01-01"})


def test_rows_for_a_dataframe(table: PriceTable) -> None:
    rows = table.rows()
    assert len(rows) == len(table)
    haiku = next(r for r in rows if r["model"] == "claude-haiku-5-5")
    assert haiku["long_context_threshold"] == 100_000
    assert haiku["input"] == 0.10 and haiku["effective_date"] == "2026-11-01"
    sonnet4 = next(r for r in rows if r["model"] == "claude-sonnet-4")
    assert "claude-sonnet-4-0" in sonnet4["aliases"]


def test_model_price_is_immutable_and_validated() -> None:
    mp = ModelPrice(Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal(1))
    with pytest.raises(AttributeError):
        mp.input = Decimal(0)  # type: ignore[misc]
    with pytest.raises(PricingError):
        ModelPrice(Decimal(-1), Decimal(1), Decimal(1), Decimal(1), Decimal(1))


def test_import_pricing_does_not_import_heavy_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys, claude_force_magic.pricing as p; p.default_table();"
        "print([m for m in ('anthropic','pandas','ipywidgets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_module_docstring_examples_run() -> None:
    import doctest

    import claude_force_magic.pricing as pricing

    result = doctest.testmod(pricing)
    assert result.attempted >= 2 and result.failed == 0


def test_docs_override_example_runs() -> None:
    prices = PriceTable.bundled().with_overrides(
        {
            "claude-fable-5-2": {
                "input": 12,
                "output": 60,
                "cache_write_5m": 15,
                "cache_write_1h": 24,
                "cache_read": 0.30,
            },
            "claude-sonnet-5-5": {"input": 1.6, "output": 8},
        }
    )
    sonnet = prices.lookup("claude-sonnet-5-5")
    assert sonnet is not None and sonnet.cache_read == Decimal("0.20")
    assert (
        prices.cost("claude-sonnet-5-5", {"input_tokens": 1_000, "output_tokens": 1_000}) == 0.0096
    )
