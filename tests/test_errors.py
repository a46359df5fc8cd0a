"""The error tree is what callers branch on: its shape and its promises are tested here."""

from __future__ import annotations

import inspect
import pickle
import re

import pytest

from claude_force_magic import errors
from claude_force_magic.errors import (
    APIError,
    BudgetExceededError,
    ClaudeForceError,
    ConfigurationError,
    PromptInjectionError,
    RateLimitError,
    ResponseError,
    UnknownAgentError,
)

ALL_ERRORS = [
    obj
    for _, obj in inspect.getmembers(errors, inspect.isclass)
    if issubclass(obj, BaseException) and obj.__module__ == errors.__name__
]


def test_every_error_derives_from_the_root_and_from_exception() -> None:
    assert len(ALL_ERRORS) == len(errors.__all__)
    for cls in ALL_ERRORS:
        assert issubclass(cls, ClaudeForceError)
        assert issubclass(cls, Exception), f"{cls.__name__} must not escape `except Exception`"


def test_module_docstring_draws_every_error() -> None:
    doc = errors.__doc__ or ""
    drawn = set(re.findall(r"\b([A-Z][A-Za-z]+Error)\b", doc))
    assert drawn == {cls.__name__ for cls in ALL_ERRORS}


def test_retryable_is_true_only_for_transient_failures() -> None:
    retryable = {cls.__name__ for cls in ALL_ERRORS if cls.retryable}
    assert retryable == {
        "RateLimitError",
        "OverloadedError",
        "ServerError",
        "APIConnectionError",
        "APITimeoutError",
        "CircuitOpenError",
        "RedisUnavailableError",
    }


def test_configuration_errors_are_value_errors_for_existing_callers() -> None:
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(UnknownAgentError, LookupError)


def test_structured_attributes_are_kept() -> None:
    rate = RateLimitError("slow down", request_id="req_1", retry_after=2.5)
    assert (rate.status_code, rate.request_id, rate.retry_after) == (429, "req_1", 2.5)
    unknown = UnknownAgentError("no agent", name="pyhton", suggestions=("python-expert",))
    assert unknown.suggestions == ("python-expert",)
    budget = BudgetExceededError("over", spent=1.0, budget=1.5, estimate=0.75)
    assert (budget.spent, budget.budget, budget.estimate) == (1.0, 1.5, 0.75)
    found = PromptInjectionError("blocked", findings=("override-phrase",))
    assert found.findings == ("override-phrase",)
    refusal = ResponseError("refused", stop_reason="refusal")
    assert refusal.stop_reason == "refusal" and not refusal.retryable
    assert ResponseError("stream broke", retryable=True).retryable


@pytest.mark.parametrize("cls", [APIError, RateLimitError, ResponseError])
def test_api_errors_are_catchable_as_the_root(cls: type[APIError]) -> None:
    with pytest.raises(ClaudeForceError):
        raise cls("boom")


def test_plain_errors_survive_pickling_between_processes() -> None:
    err = pickle.loads(pickle.dumps(ConfigurationError("bad setting")))
    assert isinstance(err, ConfigurationError) and str(err) == "bad setting"
