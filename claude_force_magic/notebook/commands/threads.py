"""``%agent threads`` and ``%agent thread ...``: the conversation threads of this session.

Threads come from ``%%agent AGENT --continue`` and ``--thread NAME`` cells (see
:mod:`..threads`). ``%agent threads`` lists them; ``%agent thread NAME`` shows one as a
transcript (a DataFrame, or Markdown with ``--format markdown``), ``reset`` forgets threads,
``save`` and ``load`` keep one across kernel restarts (a loaded file is untrusted data:
checked and screened like a cell's ``{name}`` values).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..options import argument
from .registry import command, subcommand_args

if TYPE_CHECKING:
    import pandas as pd

    from ..magics import AgentMagics
    from ..threads import Thread

__all__ = ["Transcript", "list_threads", "thread"]

_THREAD_COLUMNS = (
    "thread",
    "agent",
    "model",
    "turns",
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "prompt_cache_saved_usd",
    "saved_usd",
)
_TURN_COLUMNS = (
    "thread",
    "agent",
    "turn",
    "task",
    "answer",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "prompt_cache_saved_usd",
    "cached",
)


@command(
    "threads",
    ("threads", "conversation threads: agent, model, turns, tokens, cost, prompt-cache savings"),
)
@subcommand_args("agent threads")
def list_threads(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Every thread of this session, one row per thread and agent, as a DataFrame."""
    from ..frames import rows_frame

    return rows_frame((_thread_row(t) for t in magics.session.threads), _THREAD_COLUMNS)


def _thread_row(thread: Thread) -> dict[str, Any]:
    usage = thread.usage
    return {
        "thread": thread.name,
        "agent": thread.agent,
        "model": thread.model,
        "turns": len(thread.turns),
        "calls": usage.calls if usage else 0,
        "input_tokens": usage.input_tokens if usage else 0,
        "output_tokens": usage.output_tokens if usage else 0,
        "cache_read_tokens": usage.cache_read_input_tokens if usage else 0,
        "cache_write_tokens": (
            usage.cache_creation_5m_input_tokens + usage.cache_creation_1h_input_tokens
            if usage
            else 0
        ),
        "cost_usd": usage.cost_usd if usage else 0.0,
        "prompt_cache_saved_usd": usage.prompt_cache_saved_usd if usage else 0.0,
        "saved_usd": usage.saved_usd if usage else 0.0,
    }


@command(
    "thread",
    ("thread NAME [--format markdown]", "a thread's transcript: a DataFrame, or Markdown"),
    ("thread reset [NAME]", "forget thread NAME (every thread without NAME)"),
    ("thread save NAME FILE.json", "save a thread, to load after a kernel restart"),
    ("thread load FILE.json [--as NAME]", "load a saved thread (screened as untrusted data)"),
    manual=True,
)
@subcommand_args("agent thread")
@argument("words", nargs="+", metavar="NAME | reset [NAME] | save NAME FILE | load FILE")
@argument("--format", default="frame", choices=["frame", "markdown"], help="transcript form")
@argument("--as", dest="as_name", metavar="NAME", help="load: the name the loaded thread gets")
def thread(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Show, reset, save or load conversation threads."""
    words: list[str] = args.words
    verb, rest = words[0], words[1:]
    if verb == "reset":
        return _reset(magics, rest)
    if verb == "save":
        return _save(magics, rest)
    if verb == "load":
        return _load(magics, rest, args.as_name)
    if rest:
        raise UsageError(f"%agent thread {verb}: unexpected {' '.join(rest)!r}.")
    threads = magics.session.threads.named(verb)
    if args.format == "markdown":
        return Transcript(threads)
    return _transcript_frame(threads)


def _transcript_frame(threads: list[Thread]) -> pd.DataFrame:
    from ..frames import rows_frame

    rows = []
    for t in threads:
        for number, turn in enumerate(t.turns, 1):
            meta = turn.metadata
            rows.append(
                {
                    "thread": t.name,
                    "agent": t.agent,
                    "turn": number,
                    "task": turn.task,
                    "answer": turn.answer,
                    "model": meta.get("model"),
                    "input_tokens": meta.get("input_tokens"),
                    "output_tokens": meta.get("output_tokens"),
                    "cache_read_tokens": meta.get("cache_read_input_tokens"),
                    "cache_write_tokens": meta.get("cache_creation_input_tokens"),
                    "cost_usd": meta.get("cost_usd"),
                    "prompt_cache_saved_usd": meta.get("prompt_cache_saved_usd"),
                    "cached": meta.get("cached"),
                }
            )
    return rows_frame(rows, _TURN_COLUMNS)


class Transcript:
    """A thread's transcript as Markdown (``str(t)`` / :attr:`markdown`), shown in a notebook
    as safe HTML: the answers are model output, rendered like any answer (no live HTML)."""

    def __init__(self, threads: list[Thread]) -> None:
        self._threads = threads

    @property
    def markdown(self) -> str:
        """The transcript as Markdown text (what was asked, then each answer)."""
        parts = []
        for t in self._threads:
            parts.append(f"# Thread {t.name} · {t.agent}")
            for number, turn in enumerate(t.turns, 1):
                parts.append(f"## Turn {number}\n\n**You:**\n\n{turn.task}")
                parts.append(f"**{t.agent}:**\n\n{turn.answer}")
        return "\n\n".join(parts) + "\n"

    def __str__(self) -> str:
        return self.markdown

    def __repr__(self) -> str:
        return self.markdown

    def _repr_html_(self) -> str:
        from ..render import output_html

        blocks = []
        for t in self._threads:
            for number, turn in enumerate(t.turns, 1):
                blocks.append(
                    output_html(turn.task, label=f"{t.name} · turn {number} · you", markdown=False)
                )
                blocks.append(
                    output_html(turn.answer, label=f"{t.name} · turn {number} · {t.agent}")
                )
        return "".join(blocks)


def _reset(magics: AgentMagics, rest: list[str]) -> None:
    if len(rest) > 1:
        raise UsageError("Usage: %agent thread reset [NAME]")
    name = rest[0] if rest else None
    store = magics.session.threads
    if name is not None:
        store.named(name)  # UsageError listing the threads for an unknown name
    count = store.reset(name)
    which = f"thread {name!r}" if name else "every thread"
    print(f"Forgot {which} ({count} thread{'s' if count != 1 else ''} with their agents).")


def _save(magics: AgentMagics, rest: list[str]) -> None:
    from ..threads import save_threads

    if len(rest) != 2:
        raise UsageError("Usage: %agent thread save NAME FILE.json")
    name, path = rest
    threads = magics.session.threads.named(name)
    target = save_threads(threads, path)
    turns = sum(len(t.turns) for t in threads)
    print(f"Saved thread {name!r} ({turns} turns) to {target}.")


def _load(magics: AgentMagics, rest: list[str], as_name: str | None) -> None:
    from ..options import screen_cell_data
    from ..threads import loaded_texts, read_thread_file, threads_from_document

    if len(rest) != 1:
        raise UsageError("Usage: %agent thread load FILE.json [--as NAME]")
    (path,) = rest
    document = read_thread_file(path)
    session = magics.session
    threads = threads_from_document(
        document, name=as_name, known_agents=session.registry.names(), source=path
    )
    for note in screen_cell_data(loaded_texts(threads), magics.injection_policy, cell=False):
        print(note)
    for t in threads:
        session.threads.add(t)
    name = threads[0].name
    turns = sum(len(t.turns) for t in threads)
    agents = ", ".join(t.agent for t in threads)
    print(
        f"Loaded thread {name!r} ({turns} turns with {agents}); continue it with "
        f"%%agent {threads[0].agent} --thread {name}"
    )
