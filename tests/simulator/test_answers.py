"""Scripted answers: a test makes the simulator answer a given text, verbatim, streamed or not."""

from __future__ import annotations

import anthropic
import pytest

from claude_force_magic.simulator import Fault, Simulator

from .helpers import ask, text_of

PAYLOAD = '<img src=x onerror="window.__x=1">\n\n```\n</div>$x$\n```'


def test_scripted_answers_are_given_verbatim_in_order_then_composed(
    sim: Simulator, client: anthropic.Anthropic
) -> None:
    sim.set_answers([PAYLOAD, "second"])
    assert sim.answers == [PAYLOAD, "second"]
    assert text_of(client.messages.create(**ask())) == PAYLOAD
    assert text_of(client.messages.create(**ask())) == "second"
    composed = text_of(client.messages.create(**ask()))
    assert composed not in (PAYLOAD, "second")
    assert sim.answers == []


def test_a_scripted_answer_streams_in_deltas_that_join_to_it(
    sim: Simulator, client: anthropic.Anthropic
) -> None:
    long_answer = "word " * 400 + PAYLOAD
    sim.set_answers([long_answer])
    with client.messages.stream(**ask(max_tokens=4096)) as stream:
        deltas = list(stream.text_stream)
    assert len(deltas) > 1
    assert "".join(deltas) == long_answer


def test_an_error_fault_does_not_use_up_a_scripted_answer(
    sim: Simulator, client: anthropic.Anthropic
) -> None:
    sim.set_answers(["kept"])
    sim.set_script([Fault.OVERLOADED])
    with pytest.raises(anthropic.APIStatusError):
        client.messages.create(**ask())
    assert text_of(client.messages.create(**ask())) == "kept"


def test_a_scripted_answer_is_still_cut_at_max_tokens(
    sim: Simulator, client: anthropic.Anthropic
) -> None:
    sim.set_answers(["x" * 1000])
    message = client.messages.create(**ask(max_tokens=10))
    assert message.stop_reason == "max_tokens"
    assert len(text_of(message)) < 1000


def test_a_non_string_answer_is_refused_and_changes_nothing(sim: Simulator) -> None:
    sim.set_answers(["a"])
    with pytest.raises(TypeError, match="must be a str"):
        sim.set_answers(["b", 3])  # type: ignore[list-item]
    assert sim.answers == ["a"]
