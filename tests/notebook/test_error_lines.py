"""What a failed cell says (issue 9 §4): one line in notebook terms, hints that fit the case."""

from __future__ import annotations

import pytest

from claude_force_magic import errors
from claude_force_magic.agents import AgentRegistry
from claude_force_magic.guard.validate import validate_task
from claude_force_magic.notebook.display import explain, short_error

LIBRARY_WORDS = ("max_task_chars", "set_budget", "budget_usd", "registry.", "timeout_seconds")


def _shown(exc: BaseException, **kwargs: object) -> str:
    return "\n".join(short_error(exc, **kwargs)._render_traceback_())  # type: ignore[arg-type, attr-defined]


def test_unknown_agent_is_one_line_in_user_terms_with_the_closest_names() -> None:
    with pytest.raises(errors.UnknownAgentError) as info:
        AgentRegistry.load().get("pyhton-expert")
    lines = short_error(info.value)._render_traceback_()  # type: ignore[attr-defined]
    assert len(lines) == 1
    assert "python-expert" in lines[0] and "%agent list" in lines[0]
    assert not any(word in lines[0] for word in LIBRARY_WORDS)


def test_unknown_agent_without_close_names_still_points_to_the_list() -> None:
    with pytest.raises(errors.UnknownAgentError) as info:
        AgentRegistry.load().get("zzzzzzzz")
    cause, fix = explain(info.value)
    assert "'zzzzzzzz'" in cause and "%agent list" in cause and not fix


def test_a_task_over_the_limit_gets_no_max_task_chars_advice() -> None:
    with pytest.raises(errors.InvalidTaskError) as info:
        validate_task("x" * 50, max_chars=10)
    cause, fix = explain(info.value)
    assert "50" in cause and "10" in cause
    assert "max_task_chars" not in cause + fix
    assert "{name}" in fix


def test_a_budget_stop_speaks_notebook_not_library() -> None:
    from claude_force_magic.engine.budget import Budget

    with pytest.raises(errors.BudgetExceededError) as info:
        Budget(0.000001).reserve(1.0, model="m")
    cause, fix = explain(info.value)
    assert not any(word in cause + fix for word in LIBRARY_WORDS)
    assert "%agent budget" in fix


@pytest.mark.parametrize("attempts", [None, 0, 1])
def test_no_after_retries_when_none_were_made(attempts: int | None) -> None:
    _, fix = explain(errors.OverloadedError("529 overloaded"), attempts=attempts)
    assert "retr" not in fix and "attempts" not in fix


def test_the_number_of_attempts_when_there_were_retries() -> None:
    _, fix = explain(errors.ServerError("500"), attempts=3)
    assert "after 3 attempts" in fix


def test_malformed_json_does_not_suggest_more_tokens() -> None:
    _, fix = explain(errors.ResponseError("The API answered with malformed JSON: Expecting value"))
    assert "max-tokens" not in fix and "re-run" in fix
    truncated = errors.ResponseError("The answer's text was empty.", stop_reason="max_tokens")
    assert "--max-tokens" in explain(truncated)[1]


def test_an_open_circuit_never_says_minus_zero_seconds() -> None:
    exc = errors.CircuitOpenError(
        "The circuit is open after 5 consecutive failures (cooling down); calls fail fast "
        "for -0.0s more. The service looks unhealthy; try again later.",
        retry_in=-0.0,
    )
    text = _shown(exc)
    assert "-0" not in text
    assert "0.0s more" in text


def test_a_deadline_names_the_notebook_setting() -> None:
    exc = errors.DeadlineExceededError(
        "The call did not finish within deadline_seconds=120 (3 attempt(s)). Raise "
        "deadline_seconds or try later."
    )
    cause, fix = explain(exc)
    assert "deadline_seconds" not in cause + fix
    assert "120 s deadline" in cause and "AgentMagics.deadline" in fix
