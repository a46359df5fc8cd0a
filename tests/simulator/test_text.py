"""Answer text, token estimates and stream chunking, without a server."""

from __future__ import annotations

import pytest

from claude_force_magic.simulator.text import (
    answer_digest,
    chunk_text,
    compose_answer,
    count_input_tokens,
    estimate_tokens,
    shape_answer,
    task_text,
)

from .helpers import MODEL, TASK


def answer_for(task: str, seed: int = 0) -> str:
    messages = [{"role": "user", "content": task}]
    return compose_answer(answer_digest(seed, MODEL, None, messages), task)


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2)])
def test_estimate_is_ceil_of_chars_over_four(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_input_tokens_count_system_and_every_message() -> None:
    messages = [
        {"role": "user", "content": "x" * 40},
        {"role": "assistant", "content": [{"type": "text", "text": "y" * 8}]},
        {"role": "user", "content": [{"type": "text", "text": "z" * 5}]},
    ]
    assert count_input_tokens(None, messages) == 10 + 2 + 2
    assert count_input_tokens("s" * 12, messages) == 3 + 14
    assert count_input_tokens([{"type": "text", "text": "s" * 12}], messages) == 3 + 14


def test_task_is_the_last_user_message() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    assert task_text(messages) == "a\nb"


def test_answer_is_markdown_about_the_task_with_code_when_asked() -> None:
    text = answer_for(TASK)
    assert text.startswith("## ")
    assert "```python\n" in text
    assert text.count("```") == 2
    assert any(word in text for word in ("merges", "overlapping", "intervals"))


def test_answer_has_no_code_when_none_is_asked_for() -> None:
    text = answer_for("Explain the history of the Roman aqueducts")
    assert text.startswith("## ")
    assert "```" not in text
    assert "aqueducts" in text or "roman" in text or "history" in text


def test_a_class_request_gets_a_class() -> None:
    assert "\nclass " in answer_for("Implement a class for a bounded queue")


def test_answer_is_deterministic_per_request_and_seed() -> None:
    assert answer_for(TASK, seed=1) == answer_for(TASK, seed=1)
    assert answer_for(TASK, seed=1) != answer_for(TASK, seed=2)
    assert answer_for(TASK) != answer_for(TASK + " quickly")


def test_digest_depends_on_model_system_and_messages() -> None:
    messages = [{"role": "user", "content": "hi"}]
    base = answer_digest(0, MODEL, None, messages)
    assert base == answer_digest(0, MODEL, None, [{"content": "hi", "role": "user"}])
    assert base != answer_digest(0, "other-model", None, messages)
    assert base != answer_digest(0, MODEL, "be brief", messages)


def test_max_tokens_cuts_the_answer_to_exactly_that_many_tokens() -> None:
    full = answer_for(TASK)
    cut = shape_answer(full, 10)
    assert cut.stop_reason == "max_tokens"
    assert cut.text == full[:40]
    assert cut.output_tokens == 10 == estimate_tokens(cut.text)
    whole = shape_answer(full, 10_000)
    assert whole.stop_reason == "end_turn"
    assert whole.text == full
    assert whole.output_tokens == estimate_tokens(full)


def test_the_first_stop_sequence_within_the_limit_wins() -> None:
    full = "alpha beta gamma delta"
    stopped = shape_answer(full, 100, ["delta", "beta"])
    assert (stopped.text, stopped.stop_reason, stopped.stop_sequence) == (
        "alpha ",
        "stop_sequence",
        "beta",
    )
    # A stop sequence beyond max_tokens is never generated.
    late = shape_answer(full, 2, ["delta"])
    assert (late.text, late.stop_reason, late.stop_sequence) == ("alpha be", "max_tokens", None)


@pytest.mark.parametrize(
    "text",
    ["", "one", "  leading spaces", "a b c d e f g h i j k l m n o p q r s t u v w x y z", TASK],
)
def test_chunks_concatenate_to_the_text(text: str) -> None:
    chunks = chunk_text(text)
    assert "".join(chunks) == text
    assert all(chunks)


def test_long_texts_are_split_into_several_small_chunks() -> None:
    full = answer_for(TASK)
    chunks = chunk_text(full)
    assert len(chunks) > 10
    assert max(len(c) for c in chunks[:-1]) < 80
