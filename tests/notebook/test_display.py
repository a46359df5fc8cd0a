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
        (errors.AuthenticationError("401"), "%agent key"),
        (errors.RateLimitError("429", retry_after=12), "12 s"),
        (errors.CircuitOpenError("open", retry_in=9), "9 s"),
        (errors.APITimeoutError("slow"), "--timeout"),
        (errors.DeadlineExceededError("deadline"), "AgentMagics.deadline"),
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
    assert fix_words in fix or (fix_words in cause and not fix)  # or one line saying it all


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


# ------------------------------------------------------------------- streaming into a notebook


class _Screen:
    """Stands in for the front-end: records every display message and its data's bytes."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, str]] = []  # what the cell shows, in order
        self.bytes = 0
        self.messages = 0
        self.clears = 0

    def bundle(self, obj: object) -> dict[str, str]:
        if isinstance(obj, dict):
            return dict(obj)
        assert isinstance(obj, AgentOutput)
        html = obj._repr_html_()
        return {"text/plain": repr(obj), **({"text/html": html} if html else {})}

    def send(self, obj: object) -> dict[str, str]:
        data = self.bundle(obj)
        self.bytes += sum(len(v.encode()) for v in data.values())
        self.messages += 1
        return data

    def show(self, obj: object, **kwargs: object) -> _Handle:
        self.outputs.append(self.send(obj))
        return _Handle(self, len(self.outputs) - 1)

    def clear(self) -> None:
        self.outputs.clear()
        self.clears += 1


class _Handle:
    def __init__(self, screen: _Screen, index: int) -> None:
        self.screen, self.index = screen, index

    def update(self, obj: object, **kwargs: object) -> None:
        data = self.screen.send(obj)
        if self.index < len(self.screen.outputs):  # cleared outputs are gone
            self.screen.outputs[self.index] = data


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> _Screen:
    import claude_force_magic.notebook.display as display

    fake = _Screen()
    monkeypatch.setattr(display, "show", fake.show)
    monkeypatch.setattr(display, "_clear_output", fake.clear)
    return fake


def _answer(size: int, seed: int = 7) -> str:
    """A Markdown answer of about ``size`` characters, like a model's: prose (with prices and
    the odd tag), lists, tables and code fences up to a few hundred lines."""
    import random

    rng = random.Random(seed)
    prose = "the cache key holds model system prompt and task so that a hit is exact while"
    words = [*prose.split(), "streaming", "keeps", "pieces", "small", "$5", "`<b>`", "x_1"]
    code = [
        "def load(path: str) -> dict[str, int]:",
        '    with open(path, encoding="utf-8") as handle:',
        "        return json.load(handle)",
        "    if count < limit and not seen:",
        "        total += price * count  # dollars",
        "    return {key: value for key, value in pairs}",
    ]
    parts: list[str] = []
    while sum(map(len, parts)) < size:
        kind = rng.choice(["para", "para", "para", "list", "code", "table", "head"])
        if kind == "para":
            parts.append(" ".join(rng.choice(words) for _ in range(rng.randint(20, 120))))
        elif kind == "list":
            parts.append("\n".join(f"- item {i}: {rng.choice(words)}" for i in range(6)))
        elif kind == "code":
            lines = [rng.choice(code) for _ in range(rng.randint(5, 300))]
            parts.append("```python\n" + "\n".join(lines) + "\n```")
        elif kind == "table":
            rows = [f"| {i} | {rng.choice(words)} |" for i in range(8)]
            parts.append("| n | word |\n|---|---|\n" + "\n".join(rows))
        else:
            parts.append(f"## Section {len(parts)}")
    return "\n\n".join(parts)[:size]


def _stream(view: StreamView, text: str, clock: list[float], pace: float, seed: int = 3) -> float:
    """Feed ``text`` at ``pace`` chars/s in chunks of 1-6 chars, flushing as the Pump does;
    return the largest delay between a chunk arriving and all of it being on screen."""
    import random

    rng = random.Random(seed)
    pending: list[tuple[int, float]] = []
    worst, pos = 0.0, 0
    slot = view.slots[0]
    while pos < len(text):
        size = rng.randint(1, 6)
        chunk, pos = text[pos : pos + size], pos + size
        clock[0] += len(chunk) / pace
        view.add_chunk(0, chunk)
        pending.append((len(slot.output.text), clock[0]))
        view.flush()
        while pending and slot.shown >= pending[0][0]:
            worst = max(worst, clock[0] - pending.pop(0)[1])
    return worst


@pytest.mark.parametrize("size", [20_000, 100_000, 250_000])
def test_streaming_traffic_is_linear_in_the_answer_and_never_lags(
    size: int, screen: _Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8: re-sending the whole answer on each update sent 174x a 20 KB answer (384x for
    100 KB). Pieces keep all display data, the final output included, within 4x."""
    import claude_force_magic.notebook.display as display

    clock = [1000.0]
    monkeypatch.setattr(display.time, "monotonic", lambda: clock[0])
    text = _answer(size)
    view = StreamView(labels=[None])
    view.open()
    view.show_waiting()
    worst_lag = _stream(view, text, clock, pace=300.0)
    view.finish(0, _result(text), simulated=True)
    ratio = screen.bytes / len(text.encode())
    assert ratio <= 4.0, f"{screen.bytes:,} bytes of display data for {len(text):,}: {ratio:.2f}x"
    assert worst_lag <= 0.25, f"text reached the screen {worst_lag:.3f} s after it arrived"
    assert screen.messages > size / 300 * 2, "it streamed (several updates a second)"
    # one clean output, rendered exactly as the whole answer renders
    assert len(screen.outputs) == 1
    expected = AgentOutput(None, text=text, footer=format_footer(_result(text), simulated=True))
    assert screen.outputs[0]["text/html"] == expected._repr_html_()
    assert screen.outputs[0]["text/plain"] == repr(expected)


def test_a_long_code_fence_is_split_into_pieces_that_stay_code(
    screen: _Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    import claude_force_magic.notebook.display as display

    clock = [0.0]
    monkeypatch.setattr(display.time, "monotonic", lambda: clock[0])
    code = "\n".join(f"x_{i} = '<{i}>' * $5" for i in range(2000))
    text = f"Intro.\n\n```python\n{code}\n```\n\nDone."
    view = StreamView(labels=[None])
    view.open()
    view.show_waiting()
    _stream(view, text, clock, pace=300.0)
    pieces = [o["text/html"] for o in screen.outputs]
    assert len(pieces) > 10
    middle = pieces[len(pieces) // 2]
    assert middle.count("<pre><code>") == 1 and "</code></pre>" in middle, middle
    assert "&lt;" in middle and "<" + "1" not in middle
    assert all('class="mathjax_ignore"' in p or "cfm-output" in p for p in pieces)


def test_streamed_text_is_shown_even_when_the_stream_pauses(
    screen: _Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    import claude_force_magic.notebook.display as display

    clock = [0.0]
    monkeypatch.setattr(display.time, "monotonic", lambda: clock[0])
    view = StreamView(labels=[None])
    view.open()
    view.show_waiting()
    pump = Pump(view)
    pump.put((0, "Hello wor"))
    pump.drain(0.0)
    assert "Hello" not in screen.outputs[0]["text/html"]  # not due yet
    due = view.next_due()
    assert due is not None and 0 < due <= display.STREAM_LAG
    clock[0] += due
    pump.drain(0.0)  # nothing new arrives: the pause still shows the held-back text
    assert "Hello wor" in screen.outputs[0]["text/html"]
    assert view.next_due() is None


def test_a_single_agent_shows_a_placeholder_at_once_and_never_leaves_it(
    screen: _Screen,
) -> None:
    view = StreamView(labels=[None], notes=("note: value cut",))
    view.open()
    view.show_waiting()
    assert "waiting for the first tokens" in screen.outputs[0]["text/plain"]
    view.close()  # the call failed before any text: the error will stand alone
    assert screen.clears == 1 and screen.outputs == []


def test_the_placeholder_becomes_the_answer(screen: _Screen) -> None:
    view = StreamView(labels=[None])
    view.open()
    view.show_waiting()
    view.finish(0, _result("Short **answer**."), simulated=False)
    assert len(screen.outputs) == 1
    assert "<strong>answer</strong>" in screen.outputs[0]["text/html"]
    assert "waiting" not in screen.outputs[0]["text/html"]
    assert screen.clears == 0


def test_several_agents_keep_one_labelled_output_each_while_streaming(
    screen: _Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    import claude_force_magic.notebook.display as display

    clock = [0.0]
    monkeypatch.setattr(display.time, "monotonic", lambda: clock[0])
    view = StreamView(labels=["a", "b"])
    view.open()
    view.show_waiting()
    pump = Pump(view)
    for i in range(400):
        clock[0] += 0.01
        pump.put((i % 2, f"word{i} "))
        pump.drain(0.0)
    assert len(screen.outputs) == 2  # no pieces of two agents interleaving
    assert screen.outputs[0]["text/plain"].startswith("a · …")  # a live preview under the name
    assert screen.outputs[1]["text/plain"].startswith("b · …")
    clock[0] += display.STREAM_LAG
    pump.drain(0.0)
    assert "word399" in screen.outputs[1]["text/plain"]
    pump.put(display.Finished(1, _result("B's **answer**"), None))
    pump.drain(0.0)  # b finished first: shown at once, whole and rendered, in its own place
    assert "<strong>b</strong>" in screen.outputs[1]["text/html"]
    assert "<strong>answer</strong>" in screen.outputs[1]["text/html"]
    assert "cache miss" in screen.outputs[1]["text/html"]
    assert screen.outputs[0]["text/plain"].startswith("a · …")


def test_several_agents_streaming_at_once_stay_within_a_few_times_their_answers(
    screen: _Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    import claude_force_magic.notebook.display as display

    clock = [0.0]
    monkeypatch.setattr(display.time, "monotonic", lambda: clock[0])
    texts = [_answer(20_000, seed=1), _answer(20_000, seed=2)]
    view = StreamView(labels=["python-expert", "code-reviewer"])
    view.open()
    view.show_waiting()
    for start in range(0, 20_000, 4):  # each agent at 300 characters a second
        clock[0] += 4 / 300
        for index, text in enumerate(texts):
            view.add_chunk(index, text[start : start + 4])
        view.flush()
    for index, text in enumerate(texts):
        view.finish(index, _result(text), simulated=False)
    assert screen.bytes <= 4 * sum(len(t.encode()) for t in texts)
    assert len(screen.outputs) == 2


def test_math_mode_leaves_the_answer_typesettable_but_not_the_footer(screen: _Screen) -> None:
    view = StreamView(labels=[None], math=True)
    view.open()
    view.show_waiting()
    view.finish(0, _result("Euler: $e^{i\\pi}+1=0$", cached=True, saved_usd=0.01), simulated=False)
    html = screen.outputs[0]["text/html"]
    assert '<div class="cfm-body">' in html
    assert 'class="cfm-footer tex2jax_ignore mathjax_ignore"' in html


def test_terminal_prints_each_of_several_answers_as_soon_as_it_finishes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    view = StreamView(labels=["slow", "fast"], notebook=False)
    view.open()
    view.show_waiting()
    pump = Pump(view)
    pump.put((1, "fast answer"))
    pump.put(display_finished(1, "fast answer"))
    pump.drain(0.0)
    out = capsys.readouterr().out
    assert out.startswith("[fast]\nfast answer")  # before the slow one has finished
    pump.put(display_finished(0, "slow answer"))
    pump.drain(0.0)
    assert capsys.readouterr().out.startswith("[slow]\nslow answer")


def display_finished(index: int, text: str) -> object:
    from claude_force_magic.notebook.display import Finished

    return Finished(index, _result(text), None)


def test_stopping_before_the_first_tokens_leaves_no_placeholder(
    screen: _Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = StreamView(labels=[None], notes=("note",))
    view.open()
    view.show_waiting()
    pump = Pump(view)

    def stopped(timeout: float) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(pump, "_queue", type("Q", (), {"get": staticmethod(stopped)})())
    with pytest.raises(KeyboardInterrupt):
        pump.drain(0.1)
    assert screen.clears == 1 and screen.outputs == []


def test_stopping_several_agents_says_cancelled_where_nothing_arrived(
    screen: _Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = StreamView(labels=["a", "b"])
    view.open()
    view.show_waiting()
    view.add_chunk(0, "partial")
    view.interrupted()
    assert "waiting" in screen.outputs[0]["text/plain"]  # a has text: finish() marks it cut
    assert "cancelled" in screen.outputs[1]["text/plain"]
    assert "waiting" not in screen.outputs[1]["text/html"]


def test_a_workflow_step_streams_in_place_and_never_clears_the_other_steps(
    screen: _Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workflow steps share one cell: consolidating one step's pieces with clear_output would
    erase the steps shown before it. A shared-cell view keeps one display updated in place."""
    import claude_force_magic.notebook.display as display

    clock = [0.0]
    monkeypatch.setattr(display.time, "monotonic", lambda: clock[0])
    screen.show({"text/plain": "step 1's finished answer"})
    text = _answer(20_000)
    view = StreamView(labels=["flow · step 2/2: code-reviewer"], shared_cell=True)
    view.open()
    view.show_waiting()
    _stream(view, text, clock, pace=300.0)
    view.finish(0, _result(text), simulated=True)
    assert screen.clears == 0
    assert (
        len(screen.outputs) == 2 and screen.outputs[0]["text/plain"] == "step 1's finished answer"
    )
    assert "code-reviewer" in screen.outputs[1]["text/html"]
    assert screen.bytes / len(text.encode()) <= 4.0


def test_a_stop_landing_inside_the_placeholders_display_still_removes_it(
    screen: _Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop button can interrupt show() after the placeholder went out but before its
    handle was kept; the placeholder must still be taken away (seen once in a kernel test)."""
    import claude_force_magic.notebook.display as display

    def show_then_stop(obj: object, **kwargs: object) -> _Handle:
        screen.show(obj, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(display, "show", show_then_stop)
    view = StreamView(labels=[None])
    view.open()
    with pytest.raises(KeyboardInterrupt):
        view.show_waiting()
    view.interrupted()
    assert screen.clears == 1 and not screen.outputs
    monkeypatch.setattr(display, "show", screen.show)
    view.finish(0, _result("cut"), simulated=True)  # the settled partial result comes later
    assert not screen.outputs, "nothing is shown again after the placeholder was removed"
