"""Detection and false-positive rates of the injection screen on the corpora, per policy.

Run ``.venv/bin/python tests/guard/corpus_rates.py`` to print them (docs/security-guard.md
quotes the output). Attacks are screened as untrusted data (where they matter: a notebook
value, a file, an earlier agent's output); tasks are screened as a caller's task
(``screen_task=True``), and, for information, also as data.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from claude_force_magic.errors import PromptInjectionError
from claude_force_magic.guard import InjectionWarning, screen

CORPUS_PATH = Path(__file__).parents[1] / "data" / "injection_corpus.json"


def load_corpus() -> tuple[list[dict[str, str]], list[str]]:
    """The attacks (``{"trick", "text"}``) and the realistic technical tasks."""
    corpus = json.loads(CORPUS_PATH.read_text(encoding="utf-8"))
    return corpus["attacks"], corpus["benign"]


def flagged(text: str, policy: str, *, as_data: bool) -> bool:
    """True if ``screen`` under ``policy`` refuses (block) or warns about (warn) ``text``."""
    source = "doc" if as_data else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InjectionWarning)
        try:
            screen(text, policy, source=source)
        except PromptInjectionError:
            return True
    return any(issubclass(w.category, InjectionWarning) for w in caught)


@dataclass(frozen=True)
class Rates:
    """Fractions of the corpora the screen flagged under one policy."""

    policy: str
    detection: float  # attacks, screened as data
    false_positives: float  # tasks, screened as a task
    false_positives_as_data: float  # tasks, screened as data (for information)


def rates(policy: str) -> Rates:
    """Compute :class:`Rates` for ``policy`` from the corpora."""
    attacks, tasks = load_corpus()
    detected = sum(flagged(a["text"], policy, as_data=True) for a in attacks)
    false_task = sum(flagged(t, policy, as_data=False) for t in tasks)
    false_data = sum(flagged(t, policy, as_data=True) for t in tasks)
    return Rates(policy, detected / len(attacks), false_task / len(tasks), false_data / len(tasks))


def main() -> None:
    logging.getLogger("claude_force_magic").setLevel(logging.ERROR)  # one log line per hit
    attacks, tasks = load_corpus()
    print(f"corpus: {len(attacks)} attacks, {len(tasks)} tasks")
    print("policy  detection  false-positives(task)  flagged-as-data(tasks)")
    for policy in ("block", "warn", "off"):
        r = rates(policy)
        print(
            f"{policy:<7} {r.detection:>8.1%}  {r.false_positives:>20.1%}  "
            f"{r.false_positives_as_data:>22.1%}"
        )


if __name__ == "__main__":
    main()
