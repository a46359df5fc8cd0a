"""Cache keys: canonical, complete, and strict about what they accept."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_force_magic.cache.keys import canonical_json, key_for


def test_key_is_hex_sha256_and_stable() -> None:
    key = key_for("python-expert", "task", "claude-sonnet-5", max_tokens=10)
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == key_for("python-expert", "task", "claude-sonnet-5", max_tokens=10)


def test_every_part_changes_the_key() -> None:
    base = key_for("a", "t", "m", system="s", max_tokens=10)
    variants = [
        key_for("b", "t", "m", system="s", max_tokens=10),
        key_for("a", "t2", "m", system="s", max_tokens=10),
        key_for("a", "t", "m2", system="s", max_tokens=10),
        key_for("a", "t", "m", system="s2", max_tokens=10),
        key_for("a", "t", "m", system="s", max_tokens=11),
        key_for("a", "t", "m", system="s"),
        key_for("a", "t", "m", system="s", max_tokens=10, stop_sequences=["x"]),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_keyword_order_and_nested_dict_order_do_not_matter() -> None:
    one = key_for("a", "t", "m", x=1, y={"b": 1, "a": 2})
    two = key_for("a", "t", "m", y={"a": 2, "b": 1}, x=1)
    assert one == two


def test_fields_cannot_be_shifted_into_each_other() -> None:
    assert key_for("ab", "c", "m") != key_for("a", "bc", "m")


def test_unicode_is_kept_not_escaped() -> None:
    assert canonical_json({"t": "é ✓"}) == '{"t":"é ✓"}'
    assert key_for("a", "é", "m") != key_for("a", "\\u00e9", "m")


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ({1, 2}, "set"),
        (b"bytes", "bytes"),
        (object(), "object"),
        (math.nan, "non-finite"),
        ({1: "int key"}, "dict key"),
        ([1, {"deep": {2}}], "set"),
    ],
)
def test_non_json_request_values_raise_type_error_naming_the_option(
    value: object, hint: str
) -> None:
    with pytest.raises(TypeError) as info:
        key_for("a", "t", "m", temperature_like=value)
    assert "temperature_like" in str(info.value) and hint in str(info.value)


@pytest.mark.parametrize("field", ["agent_name", "task", "model"])
def test_main_fields_must_be_text(field: str) -> None:
    args = {"agent_name": "a", "task": "t", "model": "m", field: 3}
    with pytest.raises(TypeError, match=field):
        key_for(args["agent_name"], args["task"], args["model"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("agent", "task", "model", "options"),
    [
        ("python-expert", "Explain asyncio", "claude-sonnet-5", {}),
        ('a"b\\c', "line1\nline2\t\x01 é ✓ \u2028", "m", {"max_tokens": 5, "stop": ["\n"]}),
        ("", "", "", {"system": {"hash": "abc", "n": [1, 2.5, None, True]}}),
    ],
)
def test_key_is_sha256_of_the_canonical_document(
    agent: str, task: str, model: str, options: dict[str, object]
) -> None:
    import hashlib

    doc = {"v": 1, "agent": agent, "task": task, "model": model, "request": options}
    expected = hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()
    assert key_for(agent, task, model, **options) == expected


def test_circular_or_absurdly_deep_values_are_a_type_error() -> None:
    # Documented: a value JSON cannot represent raises TypeError, not RecursionError.
    cyclic: list[object] = []
    cyclic.append(cyclic)
    deep: list[object] = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    for value in (cyclic, deep):
        with pytest.raises(TypeError, match="nested too deeply or circular"):
            key_for("a", "t", "m", opt=value)


class _Level(int):
    """An int subclass (like an IntEnum): the general path must serialize it as its base."""


class _Name(str):
    """A str subclass: the general path must serialize it as its base."""


_option_values = st.one_of(
    st.integers(),
    st.text(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers().map(_Level),
    st.text().map(_Name),
    st.lists(st.integers(), max_size=3),
)


@given(
    st.text(),
    st.dictionaries(st.text(min_size=1).filter(str.isidentifier), _option_values, max_size=5),
)
def test_key_is_the_canonical_sha256_for_any_options(task: str, options: dict[str, object]) -> None:
    """The hand-built fast path for int/str options and the general path agree with the
    canonical document byte for byte (bool is not int, 1.0 is not 1, -0.0 is not 0)."""
    import hashlib

    doc = {"v": 1, "agent": "a", "task": task, "model": "m", "request": options}
    text = canonical_json(doc).encode("utf-8", "surrogatepass")
    assert key_for("a", task, "m", **options) == hashlib.sha256(text).hexdigest()


def test_lookalike_option_values_give_different_keys() -> None:
    keys = {key_for("a", "t", "m", n=value) for value in (1, True, 1.0, "1", _Level(1))}
    assert len(keys) == 4  # 1 and _Level(1) are the same JSON; the others differ


def test_the_engines_usual_options_take_the_hand_built_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the engine passes for a call without history: a hash, an int, and
    # stop_sequences=None (plus flags): none of it needs the general encoder.
    from claude_force_magic.cache import keys

    options = {"definition_hash": "ab" * 32, "max_tokens": 1024, "stop_sequences": None}
    expected = key_for("a", "t", "m", **options, flag=True, other=False)

    def general(*_args: object) -> None:
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(keys, "require_json", general)
    assert key_for("a", "t", "m", **options, flag=True, other=False) == expected
    assert key_for("a", "t", "m", **options, flag=1) != expected  # 1 is not true
