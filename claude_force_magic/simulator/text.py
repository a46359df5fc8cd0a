"""Deterministic answer text and the token estimator.

The simulated model writes a short Markdown answer about the words of the task: a heading, a
paragraph or two, and a fenced ``python`` block when the task asks for code. The text depends
only on a digest of the request (model, system, messages) and the seed, so the same request
always gets the same answer, streamed or not, and a smaller ``max_tokens`` gets a prefix of it.

Tokens are estimated as ``ceil(len(text) / 4)`` everywhere, for input and output alike.
"""

from __future__ import annotations

import functools
import hashlib
import json
import keyword
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Answer",
    "answer_digest",
    "block_tokens",
    "chunk_text",
    "compose_answer",
    "count_input_tokens",
    "estimate_tokens",
    "shape_answer",
    "task_text",
]

REFUSAL_TEXT = "I can't help with that request."
CHARS_PER_TOKEN = 4
# Streamed deltas carry about this many characters (a few tokens, like the real service).
CHUNK_CHARS = 16

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,}")
_PIECE = re.compile(r"\s+|\S+\s*")
_CODE_WORDS = frozenset(
    {"code", "function", "write", "implement", "script", "class", "method", "program", "python"}
)
_STOPWORD_TEXT = """
the and for with that this from into onto over under about your you our are was were will would
could should can cannot please make give show tell explain using use how what why when which who
whom whose where there here then than them they their its not but also just very some any all
each more most such only own same other one two three
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split()) | _CODE_WORDS

_HEADINGS = (
    "## {Topic}",
    "## About {topic}",
    "## Working through {topic}",
    "## Notes on {topic}",
    "## A plan for {topic}",
)
_SENTENCES = (
    "The core of this task is {w1}, and everything else follows from how {w2} is handled.",
    "Start by pinning down what {w1} means here; {w2} depends on that choice.",
    "A small, explicit treatment of {w1} keeps {w2} easy to test.",
    "When {w1} grows, keep {w2} separate so that each can change on its own.",
    "It helps to write down the invariants of {w1} before touching {w2}.",
    "The usual pitfall with {w1} is an unstated assumption about {w2}.",
    "Measure {w1} first; intuition about {w2} is often wrong.",
    "Treat {w1} as data and {w2} as the policy applied to it.",
    "Edge cases of {w1} (empty input, duplicates, very large values) deserve a test each.",
    "Prefer the simplest version of {w2} that handles {w1} correctly.",
)
_CLOSINGS = (
    "In short: keep {w1} simple, test {w2}, and measure before optimising.",
    "That covers {w1}; the same reasoning applies to {w2}.",
    "With {w1} settled, {w2} becomes a matter of careful bookkeeping.",
)
_FUNCTION_CODE = '''```python
def {name}(items: list[str]) -> dict[str, int]:
    """Count how often each item occurs ({topic})."""
    counts: dict[str, int] = {{}}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


print({name}(["{w1}", "{w2}", "{w1}"]))
```'''
_CLASS_CODE = '''```python
class {cls}:
    """Keep a running record of {topic}."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, item: str) -> None:
        self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)


record = {cls}()
record.add("{w1}")
print(len(record))
```'''


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text``: ``ceil(len(text) / 4)`` (0 for the empty string)."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _is_text_block(block: dict[str, Any]) -> bool:
    return block.get("type") == "text" and isinstance(block.get("text"), str)


def block_tokens(block: Any) -> int:
    """Input tokens of one content block: its text if a text block, else its compact JSON."""
    if isinstance(block, dict):
        if _is_text_block(block):
            return estimate_tokens(block["text"])
        return estimate_tokens(json.dumps(block, separators=(",", ":"), sort_keys=True))
    return 0


def count_input_tokens(system: str | Sequence[Any] | None, messages: Sequence[Any]) -> int:
    """Input tokens of a validated request: the estimate of each system and message text piece.

    A string counts as one piece, a text block as its ``text``; any other block counts as its
    compact JSON. The total is at least 1.
    """
    total = 0
    if isinstance(system, str):
        total += estimate_tokens(system)
    elif system:
        total += sum(block_tokens(b) for b in system)
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += estimate_tokens(content)
        elif isinstance(content, list):
            total += sum(block_tokens(b) for b in content)
    return max(total, 1)


def task_text(messages: Sequence[Any]) -> str:
    """The text of the last user message (its text blocks joined by newlines)."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(
                b["text"] for b in content if isinstance(b, dict) and _is_text_block(b)
            )
    return ""


def answer_digest(seed: int, model: str, system: Any, messages: Any) -> bytes:
    """SHA-256 of the seed and what determines the answer (model, system, messages)."""
    canonical = json.dumps(
        [seed, model, system, messages], separators=(",", ":"), sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).digest()


def _words(task: str) -> list[str]:
    return [m.group().lower() for m in _WORD.finditer(task)]


def _keywords(all_words: Sequence[str]) -> list[str]:
    seen = dict.fromkeys(w for w in all_words if w not in _STOPWORDS)
    return list(seen) or ["the task"]


def _identifier(words: Sequence[str]) -> str:
    name = "_".join(w for w in words if w.isidentifier())[:40] or "solve"
    return name + "_" if keyword.iskeyword(name) else name


@functools.lru_cache(maxsize=4096)
def compose_answer(digest: bytes, task: str) -> str:
    """The full Markdown answer for a request digest and its task text (cached, bounded LRU)."""
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    all_words = _words(task)
    words = _keywords(all_words)
    wants_code = not _CODE_WORDS.isdisjoint(all_words)

    def pick() -> str:
        return rng.choice(words)

    topic = " ".join(words[:3])
    parts = [rng.choice(_HEADINGS).format(topic=topic, Topic=topic[:1].upper() + topic[1:])]
    for _ in range(rng.randint(1, 2)):
        sentences = rng.sample(_SENTENCES, rng.randint(2, 4))
        parts.append(" ".join(s.format(w1=pick(), w2=pick()) for s in sentences))
    if wants_code:
        names = [w for w in words[:2] if w.isidentifier()]
        if "class" in all_words:
            cls = "".join(w.capitalize() for w in names) or "Record"
            parts.append(_CLASS_CODE.format(cls=cls, topic=topic, w1=pick()))
        else:
            name = _identifier(names)
            parts.append(_FUNCTION_CODE.format(name=name, topic=topic, w1=pick(), w2=pick()))
    parts.append(rng.choice(_CLOSINGS).format(w1=pick(), w2=pick()))
    return "\n\n".join(parts)


@dataclass(frozen=True)
class Answer:
    """The answer as sent: text, why it stopped, and its output token count."""

    text: str
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int


def shape_answer(full: str, max_tokens: int, stop_sequences: Sequence[str] = ()) -> Answer:
    """Cut ``full`` at the first stop sequence or after ``max_tokens`` tokens (whichever first)."""
    limit = max_tokens * CHARS_PER_TOKEN
    best: tuple[int, str] | None = None
    for seq in stop_sequences:
        at = full.find(seq)
        if at >= 0 and at + len(seq) <= limit and (best is None or at < best[0]):
            best = (at, seq)
    if best is not None:
        text = full[: best[0]]
        return Answer(text, "stop_sequence", best[1], max(1, estimate_tokens(text)))
    if len(full) > limit:
        return Answer(full[:limit], "max_tokens", None, max_tokens)
    return Answer(full, "end_turn", None, max(1, estimate_tokens(full)))


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Split ``text`` into stream deltas of about ``size`` characters, at word boundaries.

    ``"".join(chunk_text(t)) == t`` always holds; an empty text gives no chunks.
    """
    chunks: list[str] = []
    current = ""
    for piece in _PIECE.findall(text):
        current += piece
        if len(current) >= size:
            chunks.append(current)
            current = ""
    if current:
        chunks.append(current)
    return chunks
