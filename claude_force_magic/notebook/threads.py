"""Threads: the conversations of ``%%agent --continue`` / ``--thread NAME`` cells in a session.

A thread is identified by its name and its agent (``%%agent a b --thread review`` keeps one
thread per agent, both called ``review``). It holds the turns (:class:`~..engine.conversation.Turn`)
and, per turn, the key of the cell that asked it, plus what its calls cost. A cell's turn is
sent through a :class:`~..engine.conversation.Conversation` rebuilt on the session's current
orchestrator from these turns, so changing a setting between turns keeps the thread.

Re-running a cell: the cell is recognised by the front end's cell id (JupyterLab, Notebook 7
and VS Code send one with every execution); where there is none (terminal IPython, front ends
that send no id) by the text of the cell, so re-running the same text replaces its turn and an
edited cell is a new turn. When the cell already asked turn *n* of the thread, its answer
replaces turn *n* and the later turns are dropped (the cell says so in one line), as editing an
earlier cell and running the notebook on from there would expect. The execution count is not
used: it changes on every run.

Saved threads (``%agent thread save NAME FILE.json``) are JSON (:data:`FORMAT`); a loaded
file is untrusted data: its size, shape, agent names and every turn are checked, and each
turn's text is screened for prompt injection under the session's policy as a cell's
``{name}`` values are.

Nothing heavy is imported here: this module is used by ``%%agent`` on every cell.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

if TYPE_CHECKING:
    from ..engine.conversation import ConversationUsage, Turn

__all__ = [
    "FORMAT",
    "MAX_FILE_BYTES",
    "RESERVED_NAMES",
    "Thread",
    "ThreadStore",
    "cell_key",
    "check_thread_name",
    "loaded_texts",
    "read_thread_file",
    "save_threads",
    "threads_from_document",
]

#: The ``format`` field of a saved thread file.
FORMAT = "claude-force-magic/thread"
#: The version of the saved format this code writes and reads.
VERSION = 1
#: The largest thread file ``%agent thread load`` reads.
MAX_FILE_BYTES = 20 * 1024 * 1024
#: Words ``%agent thread`` takes as subcommands, so no thread may be called that.
RESERVED_NAMES = frozenset({"reset", "save", "load"})
_MAX_NAME = 64
_MAX_KEY = 200


def check_thread_name(name: str) -> str:
    """``name`` if it can name a thread; ``UsageError`` saying why not otherwise."""
    if (
        not name
        or len(name) > _MAX_NAME
        or not name.isprintable()
        or any(c.isspace() for c in name)
    ):
        raise UsageError(
            f"A thread name is 1 to {_MAX_NAME} printable characters without spaces, not "
            f"{name[:80]!r}."
        )
    if name in RESERVED_NAMES:
        raise UsageError(
            f"{name!r} is a word of `%agent thread` ({', '.join(sorted(RESERVED_NAMES))}); "
            "choose another thread name."
        )
    return name


def _current_cell_id(shell: Any) -> str | None:
    """The front end's id of the cell being run (``cellId`` of the execute request), if any."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except Exception:  # an older or unusual kernel: fall back to the cell's text
        parent = None
    metadata = (parent or {}).get("metadata") or {}
    cell_id = metadata.get("cellId") if isinstance(metadata, Mapping) else None
    return cell_id if isinstance(cell_id, str) and 0 < len(cell_id) <= _MAX_KEY else None


def cell_key(shell: Any, line: str, body: str) -> str:
    """What identifies the running cell across re-runs: ``id:<cell id>`` when the front end
    sends one, else ``text:<sha256 of the %%agent line and body>``."""
    cell_id = _current_cell_id(shell)
    if cell_id is not None:
        return f"id:{cell_id}"
    digest = hashlib.sha256(f"{line}\n{body}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"text:{digest[:32]}"


@dataclass
class Thread:
    """One named conversation with one agent, as the notebook keeps it."""

    name: str
    agent: str
    turns: list[Turn] = field(default_factory=list)
    #: The key of the cell that asked each turn (None for loaded turns without one).
    cells: list[str | None] = field(default_factory=list)
    usage: ConversationUsage | None = None
    model: str | None = None
    updated: float = field(default_factory=time.time)

    def turn_of(self, key: str) -> int | None:
        """The index of the turn cell ``key`` asked, or None."""
        try:
            return self.cells.index(key)
        except ValueError:
            return None

    def replace_from(self, index: int, turns: Sequence[Turn], key: str) -> None:
        """The turns from ``index`` on are now ``turns`` (the last asked by cell ``key``)."""
        del self.turns[index:]
        del self.cells[index:]
        self.turns.extend(turns)
        self.cells.extend([None] * (len(turns) - 1) + [key])
        self.updated = time.time()

    def add_usage(self, usage: ConversationUsage) -> None:
        """Add what one cell's turn cost (failed attempts included)."""
        from ..engine.conversation import ConversationUsage

        total = self.usage or ConversationUsage()
        for name, value in vars(usage).items():
            setattr(total, name, getattr(total, name) + value)
        self.usage = total


class ThreadStore:
    """Every thread of a session, by (name, agent); the latest thread per agent for
    ``--continue``. Thread-safe (agents of one cell finish on the loop thread)."""

    def __init__(self) -> None:
        self._threads: dict[tuple[str, str], Thread] = {}
        self._latest: dict[str, str] = {}
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[Thread]:
        with self._lock:
            return iter(sorted(self._threads.values(), key=lambda t: (t.name, t.agent)))

    def named(self, name: str) -> list[Thread]:
        """The threads called ``name`` (one per agent), or ``UsageError`` listing the names."""
        with self._lock:
            found = [t for (n, _), t in sorted(self._threads.items()) if n == name]
            names = sorted({n for n, _ in self._threads})
        if not found:
            known = ", ".join(names) or "none yet (start one with %%agent AGENT --thread NAME)"
            raise UsageError(f"There is no thread named {name!r}; the threads: {known}.")
        return found

    def resolve(self, agent: str, name: str | None, key: str | None = None) -> Thread:
        """The thread a cell continues: ``name`` (created if new); without a name, the thread
        with ``agent`` whose turn cell ``key`` already asked (a re-run ``--continue`` cell
        stays in its thread after another thread was started), else the latest thread with
        ``agent`` (created, named after the agent, if there is none)."""
        with self._lock:
            asked = None
            if name is None and key is not None:
                asked = next(
                    (n for (n, a), t in self._threads.items() if a == agent and key in t.cells),
                    None,
                )
            chosen = name or asked or self._latest.get(agent) or agent
            thread = self._threads.get((chosen, agent))
            if thread is None:
                thread = self._threads[(chosen, agent)] = Thread(chosen, agent)
            self._latest[agent] = chosen
            return thread

    def add(self, thread: Thread) -> None:
        """Add a loaded thread; ``UsageError`` if one of that name and agent exists."""
        with self._lock:
            if (thread.name, thread.agent) in self._threads:
                raise UsageError(
                    f"This session already has a thread {thread.name!r} with {thread.agent}; "
                    f"`%agent thread reset {thread.name}` first, or load it with --as NEWNAME."
                )
            self._threads[(thread.name, thread.agent)] = thread
            self._latest[thread.agent] = thread.name

    def reset(self, name: str | None = None) -> int:
        """Forget the threads called ``name`` (every thread when None); how many went."""
        with self._lock:
            doomed = [k for k in self._threads if name is None or k[0] == name]
            for key in doomed:
                del self._threads[key]
            self._latest = {a: n for a, n in self._latest.items() if (n, a) in self._threads}
        return len(doomed)


# -- save and load ----------------------------------------------------------------------------


def save_threads(threads: Sequence[Thread], path: str | os.PathLike[str]) -> Path:
    """Write ``threads`` (one name, one per agent) to ``path`` as JSON; returns the path.

    Written to a temporary file beside it and renamed, so a failure never leaves half a file.
    Raises ``UsageError`` when the file cannot be written.
    """
    target = Path(path).expanduser()
    document = {
        "format": FORMAT,
        "version": VERSION,
        "name": threads[0].name,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": [
            {
                "agent": t.agent,
                "model": t.model,
                "cells": list(t.cells),
                "messages": [
                    message
                    for turn in t.turns
                    for message in (
                        {"role": "user", "content": turn.user},
                        {"role": "assistant", "content": turn.answer},
                    )
                ],
            }
            for t in threads
        ],
    }
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
        temporary.replace(target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"Cannot write {target}: {exc.strerror}.") from None
    return target


def read_thread_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed JSON of a saved thread file, checked for size, encoding and format.

    Raises ``UsageError`` naming the problem (the contents are validated further by
    :func:`threads_from_document`).
    """
    source = Path(path).expanduser()
    try:
        with source.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"Cannot read {source}: {exc.strerror}.") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"{source} is larger than {MAX_FILE_BYTES // 2**20} MB; not loaded.")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UsageError(f"{source} is not a UTF-8 JSON thread file ({exc}).") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UsageError(
            f"{source} is not a saved thread (its 'format' is not {FORMAT!r}); save one with "
            "`%agent thread save NAME FILE.json`."
        )
    if document.get("version") != VERSION:
        raise UsageError(
            f"{source} is a thread file of version {document.get('version')!r}; this version "
            f"reads version {VERSION}."
        )
    return document


def threads_from_document(
    document: Mapping[str, Any], *, name: str | None, known_agents: Sequence[str], source: str
) -> list[Thread]:
    """The threads of a parsed file (named ``name`` or the file's own name), after checking
    every field; ``UsageError`` naming the bad item otherwise.

    The messages are checked by :func:`~..engine.conversation.check_messages` (roles,
    alternation, text content); screening them is the caller's (:func:`loaded_texts`).
    """
    from ..engine.conversation import Turn, check_messages
    from ..errors import InvalidTaskError

    chosen = check_thread_name(name or str(document.get("name") or ""))
    entries = document.get("threads")
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{source}: 'threads' must be a non-empty list.")
    loaded: list[Thread] = []
    for i, entry in enumerate(entries):
        where = f"{source}: threads[{i}]"
        if not isinstance(entry, dict):
            raise UsageError(f"{where} must be an object.")
        agent = entry.get("agent")
        if not isinstance(agent, str) or agent not in known_agents:
            raise UsageError(
                f"{where}: agent {str(agent)[:60]!r} is not an agent of this session "
                "(`%agent list` shows them)."
            )
        try:
            pairs = check_messages(entry.get("messages"))
        except InvalidTaskError as exc:
            raise UsageError(f"{where}: {exc}") from None
        cells = _check_cells(entry.get("cells"), len(pairs), where)
        model = entry.get("model")
        thread = Thread(
            chosen,
            agent,
            turns=[Turn(task=u, user=u, answer=a) for u, a in pairs],
            cells=cells,
            model=model if isinstance(model, str) and len(model) <= 200 else None,
        )
        loaded.append(thread)
    return loaded


def loaded_texts(threads: Sequence[Thread]) -> dict[str, str]:
    """Every turn's text of loaded ``threads``, named for the screen's messages
    (``"review/python-expert messages[3]"``)."""
    texts: dict[str, str] = {}
    for thread in threads:
        for i, turn in enumerate(thread.turns):
            texts[f"{thread.name}/{thread.agent} messages[{2 * i}]"] = turn.user
            texts[f"{thread.name}/{thread.agent} messages[{2 * i + 1}]"] = turn.answer
    return texts


def _check_cells(cells: Any, turns: int, where: str) -> list[str | None]:
    if cells is None:
        return [None] * turns
    if (
        not isinstance(cells, list)
        or len(cells) != turns
        or not all(c is None or (isinstance(c, str) and len(c) <= _MAX_KEY) for c in cells)
    ):
        raise UsageError(f"{where}: 'cells' must list one cell key (or null) per turn.")
    return list(cells)
