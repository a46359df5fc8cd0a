"""The notebook's thread store, cell keys, saved-thread files and the thread footer (no kernel)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.error import UsageError

from claude_force_magic.engine.conversation import ConversationUsage, Turn
from claude_force_magic.engine.result import AgentResult, empty_metadata
from claude_force_magic.notebook.display import format_footer
from claude_force_magic.notebook.threads import (
    Thread,
    ThreadStore,
    cell_key,
    check_thread_name,
    loaded_texts,
    read_thread_file,
    save_threads,
    threads_from_document,
)


def test_continue_and_thread_resolve_per_agent() -> None:
    store = ThreadStore()
    first = store.resolve("python-expert", None)
    assert first.name == "python-expert"  # --continue with no thread yet: named after the agent
    named = store.resolve("python-expert", "review")
    assert store.resolve("python-expert", None) is named  # --continue: the latest thread
    other_agent = store.resolve("code-reviewer", "review")
    assert other_agent is not named and other_agent.name == "review"
    assert [t.agent for t in store.named("review")] == ["code-reviewer", "python-expert"]
    with pytest.raises(UsageError, match="the threads: python-expert, review"):
        store.named("nope")


def test_a_rerun_continue_cell_stays_in_its_thread() -> None:
    store = ThreadStore()
    thread = store.resolve("python-expert", None, "id:cell-1")
    thread.replace_from(0, [Turn("q", "q", "a")], "id:cell-1")
    store.resolve("python-expert", "elsewhere", "id:cell-2")  # the latest thread is now another
    assert store.resolve("python-expert", None, "id:cell-3").name == "elsewhere"
    assert store.resolve("python-expert", None, "id:cell-1") is thread
    # the re-run made it the latest conversation again: a new --continue cell follows it
    assert store.resolve("python-expert", None, "id:cell-4") is thread


def test_replace_from_drops_later_turns_and_reset_forgets() -> None:
    thread = Thread("t", "python-expert")
    for n in range(3):
        thread.replace_from(n, [Turn(f"q{n}", f"q{n}", f"a{n}")], f"id:{n}")
    assert thread.turn_of("id:1") == 1
    thread.replace_from(1, [Turn("q1b", "q1b", "a1b")], "id:1")
    assert [t.task for t in thread.turns] == ["q0", "q1b"]
    assert thread.cells == ["id:0", "id:1"]
    thread.add_usage(ConversationUsage(calls=2, cost_usd=0.5))
    thread.add_usage(ConversationUsage(calls=1, cost_usd=0.25))
    assert (thread.usage.calls, thread.usage.cost_usd) == (3, 0.75)  # type: ignore[union-attr]
    store = ThreadStore()
    store.add(thread)
    with pytest.raises(UsageError, match="--as"):
        store.add(Thread("t", "python-expert"))
    assert store.reset("t") == 1
    assert list(store) == []


@pytest.mark.parametrize("name", ["", "two words", "reset", "x" * 65, "tab\tname"])
def test_bad_thread_names(name: str) -> None:
    with pytest.raises(UsageError):
        check_thread_name(name)


def test_cell_key_prefers_the_front_ends_cell_id() -> None:
    parent = {"metadata": {"cellId": "abc-123"}}
    shell = SimpleNamespace(kernel=SimpleNamespace(get_parent=lambda channel: parent))
    assert cell_key(shell, "python-expert -c", "Hi") == "id:abc-123"
    terminal = SimpleNamespace()
    same = cell_key(terminal, "python-expert -c", "Hi")
    assert same.startswith("text:") and same == cell_key(terminal, "python-expert -c", "Hi")
    assert cell_key(terminal, "python-expert -c", "Hi, edited") != same


def test_save_and_read_back(tmp_path: Path) -> None:
    thread = Thread("t", "python-expert", model="claude-sonnet-5-5")
    thread.replace_from(0, [Turn("q", "q wrapped", "a")], "id:1")
    path = save_threads([thread], tmp_path / "t.json")
    document = read_thread_file(path)
    (loaded,) = threads_from_document(
        document, name=None, known_agents=["python-expert"], source="t.json"
    )
    assert (loaded.name, loaded.agent, loaded.cells) == ("t", "python-expert", ["id:1"])
    assert [(t.user, t.answer) for t in loaded.turns] == [("q wrapped", "a")]
    assert loaded_texts([loaded]) == {"t/python-expert messages[0]": "q wrapped",
                                      "t/python-expert messages[1]": "a"}  # fmt: skip
    (renamed,) = threads_from_document(
        document, name="copy", known_agents=["python-expert"], source="t.json"
    )
    assert renamed.name == "copy"
    with pytest.raises(UsageError, match="not an agent of this session"):
        threads_from_document(document, name=None, known_agents=["other"], source="t.json")


def _document(**changes: Any) -> dict[str, Any]:
    thread = {
        "agent": "python-expert",
        "cells": [None],
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    }
    thread.update(changes)
    return {"format": "claude-force-magic/thread", "version": 1, "name": "t", "threads": [thread]}


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (_document(messages=[{"role": "user", "content": "q"}]), "without an answer"),
        (_document(messages="not a list"), "must be a list"),
        (_document(cells=["a", "b"]), "one cell key"),
        ({**_document(), "threads": []}, "non-empty list"),
        ({**_document(), "name": "has space"}, "without spaces"),
    ],
)
def test_a_bad_document_is_refused_naming_the_item(document: Any, named: str) -> None:
    with pytest.raises(UsageError, match=named):
        threads_from_document(document, name=None, known_agents=["python-expert"], source="f")


def test_read_thread_file_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something"}))
    with pytest.raises(UsageError, match="not a saved thread"):
        read_thread_file(other)
    broken = tmp_path / "broken.json"
    broken.write_bytes(b"\xff\xfe not json")
    with pytest.raises(UsageError, match="UTF-8 JSON"):
        read_thread_file(broken)
    with pytest.raises(UsageError, match="Cannot read"):
        read_thread_file(tmp_path / "missing.json")


def _result(**meta: Any) -> AgentResult:
    metadata = empty_metadata("claude-sonnet-5-5")
    metadata.update(cost_usd=0.002, **meta)
    return AgentResult("python-expert", True, "answer", [], metadata)


def test_the_footer_shows_the_turn_and_the_prompt_cache() -> None:
    footer = format_footer(
        _result(
            thread="dates",
            turn=3,
            cache_read_input_tokens=3012,
            cache_creation_input_tokens=140,
            prompt_cache_saved_usd=0.0051,
        )
    )
    assert "python-expert · thread dates · turn 3 · claude-sonnet-5-5" in footer
    assert "prompt cache read 3,012 · wrote 140 tok (saved $0.0051)" in footer
    first = format_footer(_result(cache_creation_input_tokens=3000, prompt_cache_saved_usd=-0.0015))
    assert "prompt cache read 0 · wrote 3,000 tok (cost $0.0015 extra)" in first
    assert "prompt cache" not in format_footer(_result())
    hit = _result(cached=True, cache_read_input_tokens=3012, saved_usd=0.002)
    assert "prompt cache" not in format_footer(hit)  # a response-cache hit sent nothing
