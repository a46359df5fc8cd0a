"""Footer, short errors, code-block extraction and the stream views (no kernel needed)."""

from __future__ import annotations

import threading

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from claude_force_magic import errors
from claude_force_magic.engine.result import AgentResult, empty_metadata
from claude_force_magic.notebook.display import (
    DONE,
    AgentOutput,
    Pump,
    StreamView,
    explain,
    first_code_block,
    format_footer,
    short_error,
)


def _result(output: str = "# Hi", **meta: object) -> AgentResult:
    metadata = empty_metadata("claude-sonnet-5-5")
    metadata.update(input_tokens=512, output_tokens=1024, latency_s=1.234, cost_usd=0.0123)
    metadata.update(meta)
    return AgentResult(agent_name="python-expert", success=True, output=output, metadata=metadata)


def test_footer_for_a_live_call_names_everything() -> None:
    footer = format_footer(_result())
    assert footer == (
        "python-expert · claude-sonnet-5-5 · 1.23 s · 512 → 1,024 tok · $0.0123 · "
        "cache miss (stored)"
    )


def test_footer_for_a_cache_hit_shows_savings_and_age() -> None:
    footer = format_footer(
        _result(cached=True, cost_usd=0.0, saved_usd=0.0123, cache_age_s=3 * 3600), simulated=True
    )
    assert "$0 · cache hit (saved $0.0123, age 3 h)" in footer
    assert footer.endswith("simulated")


def test_footer_says_cache_off_when_nothing_was_stored() -> None:
    assert format_footer(_result(), caching=False).endswith("· $0.0123 · cache off")


def test_footer_marks_unknown_cost_truncation_and_retries() -> None:
    footer = format_footer(_result(cost_usd=None, truncated=True, attempts=3))
    assert "cost unknown" in footer
    assert "truncated at max_tokens" in footer
    assert "3 attempts" in footer


@pytest.mark.parametrize(
    ("exc", "fix_words"),
    [
        (errors.BudgetExceededError("over", spent=1, budget=1, estimate=0.1), "%agent budget"),
        (errors.PromptInjectionError("found override"), "--trust"),
        (errors.UnknownAgentError("no agent pyhton"), "%agent list"),
        (errors.AuthenticationError("401"), "ANTHROPIC_API_KEY"),
        (errors.RateLimitError("429", retry_after=12), "12 s"),
        (errors.CircuitOpenError("open", retry_in=9), "9 s"),
        (errors.APITimeoutError("slow"), "--timeout"),
        (errors.DeadlineExceededError("deadline"), "--timeout"),
        (errors.OverloadedError("529"), "re-run"),
        (errors.IntegrityError("bad sig"), "cache verify"),
        (errors.ResponseError("refusal"), "Rephrase"),
        (
            errors.PricingError("No price is known for model 'claude-fable-5-2'"),
            "AgentMagics.prices",
        ),
    ],
)
def test_every_error_kind_names_a_fix(exc: Exception, fix_words: str) -> None:
    cause, fix = explain(exc)
    assert cause
    assert fix_words in fix


def test_an_interrupt_is_explained_as_a_cancelled_request() -> None:
    cause, _ = explain(KeyboardInterrupt())
    assert "cancelled" in cause
    lines = short_error(KeyboardInterrupt())._render_traceback_()  # type: ignore[attr-defined]
    assert len(lines) == 1 and "KeyboardInterrupt" in lines[0]


def test_api_keys_never_reach_the_rendered_error() -> None:
    exc = errors.AuthenticationError("invalid key sk-ant-api03-abcdefghijklmnop")
    lines = short_error(exc)._render_traceback_()  # type: ignore[attr-defined]
    text = "\n".join(lines)
    assert "abcdefghijklmnop" not in text
    assert "sk-ant-***" in text


def test_registered_secrets_never_reach_the_rendered_error() -> None:
    """Not only sk-ant- keys: a key of another shape passed to the orchestrator, or the cache
    secret, registered with the guard's redactor, is masked in the red line too."""
    from claude_force_magic.guard.logs import SecretRedactor

    secret = "corp-proxy-token-" + "Q7w" * 8
    SecretRedactor.register(secret)
    exc = errors.AuthenticationError(f"proxy refused {secret}")
    text = "\n".join(short_error(exc)._render_traceback_())  # type: ignore[attr-defined]
    assert secret not in text
    assert "proxy refused" in text


def test_short_error_fails_the_cell_without_a_traceback() -> None:
    shell = InteractiveShell.instance()
    shell.user_ns["_make"] = lambda: short_error(
        errors.BudgetExceededError("Budget $1.00 would be exceeded.", spent=1, budget=1, estimate=1)
    )
    with capture_output() as captured:
        result = shell.run_cell("raise _make()")
    assert isinstance(result.error_in_exec, errors.BudgetExceededError)
    assert "Budget $1.00 would be exceeded." in captured.stdout
    assert "%agent budget" in captured.stdout
    assert "Traceback" not in captured.stdout + captured.stderr


def test_first_code_block_takes_the_first_fence_only() -> None:
    text = "Intro\n\n```python\ndef f():\n    return 1\n```\n\nthen\n\n```bash\nls\n```\n"
    assert first_code_block(text) == "def f():\n    return 1"
    assert first_code_block("no code here") is None
    assert first_code_block("~~~\nplain\n~~~") == "plain"


def test_agent_output_renders_safe_html_and_plain_text() -> None:
    out = AgentOutput("python-expert", text="**bold** <img src=x onerror=alert(1)>", footer="f · g")
    page = out._repr_html_()
    assert page is not None
    assert "<strong>python-expert</strong>" in page
    assert "<strong>bold</strong>" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img" not in page
    assert "f · g" in page
    assert "**bold**" in repr(out)
    assert AgentOutput(None, fmt="text", text="x")._repr_html_() is None
    assert not hasattr(out, "_repr_markdown_"), "text/markdown would be re-rendered with raw HTML"


def test_terminal_view_prints_one_agent_as_it_streams(capsys: pytest.CaptureFixture[str]) -> None:
    view = StreamView(labels=[None], notebook=False)
    view.open()
    view.add_chunk(0, "Hello ")
    view.flush(force=True)
    assert capsys.readouterr().out == "Hello "
    view.add_chunk(0, "world")
    view.finish(0, _result("Hello world"), simulated=True)
    out = capsys.readouterr().out
    assert out.startswith("world")  # only the part not printed yet
    assert "simulated" in out


def test_terminal_view_prints_several_agents_whole_and_labelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    view = StreamView(labels=["a", "b"], notebook=False)
    view.open()
    view.add_chunk(0, "from a")
    view.add_chunk(1, "from b")
    view.flush(force=True)
    assert capsys.readouterr().out == ""  # interleaved chunks would be unreadable
    view.finish(1, None, simulated=False, error=errors.APITimeoutError("slow"))
    out = capsys.readouterr().out
    assert out.startswith("[b]\nfrom b")
    assert "APITimeoutError" in out


def test_quiet_view_shows_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    view = StreamView(labels=[None], notebook=False, quiet=True)
    view.open()
    view.add_chunk(0, "secret")
    view.flush(force=True)
    view.finish(0, _result(), simulated=False)
    assert capsys.readouterr().out == ""


def test_pump_moves_chunks_from_another_thread_to_the_view() -> None:
    view = StreamView(labels=[None], notebook=False, quiet=True)
    view.open()
    pump = Pump(view)

    def produce() -> None:
        for word in ("a", "b", "c"):
            pump.put((0, word))
        pump.put(DONE)

    thread = threading.Thread(target=produce)
    thread.start()
    thread.join()
    pump.drain(1.0)
    assert view.slots[0].output.text == "abc"
    pump.drain(0.01)  # nothing queued: returns after the timeout


def test_pump_shows_throttled_text_when_the_stream_pauses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import claude_force_magic.notebook.display as display

    view = StreamView(labels=[None], notebook=False)
    view.open()
    pump = Pump(view)
    clock = [100.0]
    monkeypatch.setattr(display.time, "monotonic", lambda: clock[0])
    pump.put((0, "first "))
    pump.drain(0.01)
    pump.put((0, "second"))  # within UPDATE_INTERVAL of the first: held back
    pump.drain(0.01)
    assert capsys.readouterr().out == "first "
    clock[0] += 1.0  # the model pauses; nothing more arrives
    pump.drain(0.01)
    assert capsys.readouterr().out == "second"
