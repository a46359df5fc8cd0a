"""Benchmark: how big should the response cache be? Hit rate and saved dollars against size.

Run::

    .venv/bin/python benchmarks/bench_cache_efficiency.py                 # table, plot, check
    .venv/bin/python benchmarks/bench_cache_efficiency.py --quick         # a smaller smoke run
    .venv/bin/python benchmarks/bench_cache_efficiency.py --plot out.png  # where the plot goes

The workload is a notebook team's repeated tasks: ``--tasks`` distinct tasks asked
``--requests`` times in a Zipf-distributed order (a few tasks are asked again and again, most
rarely), each answer's length drawn once per task from a log-normal distribution of output
tokens (median 600 tokens, about 4 characters each, clipped to 20..8,192 tokens; prompts a
log-normal around 1,500 input tokens), priced at the bundled rates of ``claude-sonnet-4-5``.
A miss buys the answer and stores it; a hit saves what it cost.

The workload is replayed against ``max_size_mb`` from 1 to 1,000 for two eviction policies:

* ``LRU`` (ours): least recently used first, one entry at a time, never the one just written;
* ``old``: the old project's (``claude-force==1.3.2``): when over the limit, drop a tenth of
  the entries at a time, fewest hits first, then oldest stored.

Both are replayed by a model of the policy (a replay of a million requests through the real
caches would take hours); ``--check`` (on by default) replays a prefix through the real
:class:`ResponseCache` at two sizes and prints its hit rate beside the model's, so the model's
size accounting (answer bytes plus a measured per-entry overhead) is seen to hold.
"""

from __future__ import annotations

import argparse
import heapq
import os
import statistics
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from claude_force_magic import pricing
from claude_force_magic.cache import ResponseCache

SECRET = "benchmark-secret-0123456789abcdef"
MODEL = "claude-sonnet-4-5"
SIZES_MB = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
#: Our stored bytes per entry beyond the answer: envelope header, JSON fields, the SQLite row
#: and its share of partly filled pages (measured: diskcache's volume() over 1,773 entries of
#: this workload is the answers plus 1,187 bytes each).
OUR_OVERHEAD = 1190
#: The old cache's JSON file beyond the answer (indent=2, every field, the task text).
OLD_OVERHEAD = 520


@dataclass
class Workload:
    """``requests`` are task indices; per task: answer characters, prompt and answer tokens."""

    requests: np.ndarray
    chars: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    def dollars(self) -> np.ndarray:
        """What buying each task's answer costs, in USD (bundled price table)."""
        table = pricing.default_table()
        return np.array(
            [
                float(table.cost(MODEL, {"input_tokens": int(i), "output_tokens": int(o)}) or 0.0)
                for i, o in zip(self.input_tokens, self.output_tokens, strict=True)
            ]
        )


def make_workload(
    tasks: int, requests: int, zipf_s: float, seed: int, drift_every: int = 0
) -> Workload:
    """A reproducible repeated-task workload (see the module docstring).

    ``drift_every`` > 0: every that many requests the popularity ranking moves on by a tenth of
    the tasks (the work of the week changes: yesterday's favourites fade, new ones appear).
    """
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, tasks + 1) ** zipf_s
    ranks = rng.choice(tasks, size=requests, p=weights / weights.sum())
    order = ranks
    if drift_every > 0:
        phase = np.arange(requests) // drift_every
        order = (ranks + phase * max(1, tasks // 10)) % tasks
    output = np.clip(rng.lognormal(np.log(600), 0.9, tasks), 20, 8192).astype(int)
    prompt = np.clip(rng.lognormal(np.log(1500), 0.6, tasks), 100, 50_000).astype(int)
    return Workload(order, output * 4, prompt, output)


@dataclass
class Outcome:
    """One replay: hits among ``requests``, and the dollars those hits saved."""

    hits: int
    requests: int
    saved: float
    spend_without_cache: float

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests


def replay_lru(w: Workload, cost: np.ndarray, limit: int) -> Outcome:
    """Least recently used first, one entry at a time, never the entry just written."""
    held: OrderedDict[int, int] = OrderedDict()
    total, hits, saved = 0, 0, 0.0
    for task in w.requests.tolist():
        if task in held:
            held.move_to_end(task)
            hits += 1
            saved += cost[task]
            continue
        size = int(w.chars[task]) + OUR_OVERHEAD
        held[task] = size
        total += size
        while total > limit and len(held) > 1:
            _, freed = held.popitem(last=False)
            total -= freed
    return Outcome(hits, len(w.requests), saved, float(cost[w.requests].sum()))


def replay_old(w: Workload, cost: np.ndarray, limit: int) -> Outcome:
    """claude-force 1.3.2: over the limit, drop a tenth of the entries (fewest hits, oldest)."""
    held: dict[int, list[int]] = {}  # task -> [hits, stored at (request number), size]
    total, hits, saved = 0, 0, 0.0
    for now, task in enumerate(w.requests.tolist()):
        entry = held.get(task)
        if entry is not None:
            entry[0] += 1
            hits += 1
            saved += cost[task]
            continue
        size = int(w.chars[task]) + OLD_OVERHEAD
        held[task] = [0, now, size]
        total += size
        while total > limit and held:
            count = max(1, len(held) // 10)
            for victim, _ in heapq.nsmallest(count, held.items(), key=lambda kv: kv[1][:2]):
                total -= held.pop(victim)[2]
    return Outcome(hits, len(w.requests), saved, float(cost[w.requests].sum()))


POLICIES: dict[str, Callable[[Workload, np.ndarray, int], Outcome]] = {
    "LRU": replay_lru,
    "old": replay_old,
}


def sweep(w: Workload, sizes: Sequence[float]) -> dict[str, list[Outcome]]:
    """Each policy's outcome at each ``max_size_mb``."""
    cost = w.dollars()
    return {
        name: [replay(w, cost, int(mb * 2**20)) for mb in sizes]
        for name, replay in POLICIES.items()
    }


def check_against_real_cache(w: Workload, requests: int, sizes: Sequence[int]) -> None:
    """Replay the first ``requests`` through the real ResponseCache; print both hit rates."""
    prefix = Workload(w.requests[:requests], w.chars, w.input_tokens, w.output_tokens)
    cost = w.dollars()
    with tempfile.TemporaryDirectory(prefix="bench-efficiency-") as tmp:
        os.chmod(tmp, 0o700)
        for mb in sizes:
            real = _replay_real(prefix, Path(tmp) / f"c{mb}", mb)
            model = replay_lru(prefix, cost, mb * 2**20).hit_rate
            print(f"check @ {mb:>4} MB, first {requests:,} requests: real ResponseCache "
                  f"{real:6.1%}, model {model:6.1%}")  # fmt: skip


def _replay_real(w: Workload, directory: Path, mb: int) -> float:
    hits = 0
    with ResponseCache(directory, cache_secret=SECRET, max_size_mb=mb, max_entry_kb=64) as c:
        for task in w.requests.tolist():
            prompt = f"task {task}"
            if c.get("bench", prompt, MODEL) is not None:
                hits += 1
                continue
            text = ("All work and no play. " * (int(w.chars[task]) // 22 + 1))[: w.chars[task]]
            c.set("bench", prompt, MODEL, text, int(w.input_tokens[task]), 1, 0.0)
    return hits / len(w.requests)


def print_table(
    sizes: Sequence[float], results: dict[str, list[Outcome]], w: Workload, title: str
) -> None:
    spend = results["LRU"][0].spend_without_cache
    footprint = (w.chars[np.unique(w.requests)] + OUR_OVERHEAD).sum() / 2**20
    print(f"\n{title}: {len(w.requests):,} requests over {len(w.chars):,} tasks; without")
    print(f"a cache they cost ${spend:,.2f}; every answer asked for fits in {footprint:,.0f} MB")
    print(f"{'max_size_mb':>12}" + "".join(f"{name + ' hits':>12}{name + ' saved':>14}"
                                          for name in results))  # fmt: skip
    for i, mb in enumerate(sizes):
        row = "".join(f"{rs[i].hit_rate:>12.1%}{'$' + format(rs[i].saved, ',.2f'):>14}"
                      for rs in results.values())  # fmt: skip
        print(f"{mb:>12g}{row}")
    best = results["LRU"][-1].hit_rate
    enough = next(mb for i, mb in enumerate(sizes) if results["LRU"][i].hit_rate >= 0.95 * best)
    print(f"LRU reaches 95% of its best hit rate ({best:.1%}) at max_size_mb={enough:g}")


def plot(
    sizes: Sequence[float], scenarios: dict[str, dict[str, list[Outcome]]], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (scenario, results), style in zip(scenarios.items(), ("-", "--"), strict=False):
        for name, outcomes in results.items():
            policy = "LRU (ours)" if name == "LRU" else "fewest hits (old)"
            label = f"{policy}, {scenario}"
            color = "tab:blue" if name == "LRU" else "tab:orange"
            kw = {"marker": "o", "linestyle": style, "color": color, "label": label}
            left.plot(sizes, [o.hit_rate * 100 for o in outcomes], **kw)
            right.plot(sizes, [o.saved for o in outcomes], **kw)
    for axis, title in ((left, "hit rate (%)"), (right, "saved (USD)")):
        axis.set_xscale("log")
        axis.set_xlabel("max_size_mb")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    left.legend(loc="lower right", fontsize=8)
    fig.suptitle("Response cache size against hit rate and savings (Zipf repeated tasks)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"plot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="distinct tasks")
    parser.add_argument("--requests", type=int, default=200_000, help="requests replayed")
    parser.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of task choice")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--drift-every", type=int, default=20_000, help="requests per popularity shift (drifting)"
    )
    parser.add_argument("--plot", type=Path, default=Path("cache_efficiency.png"))
    parser.add_argument("--no-check", action="store_true", help="skip the real-cache check")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.requests, args.drift_every = 2000, 20_000, 2000
    scenarios: dict[str, dict[str, list[Outcome]]] = {}
    for scenario, drift in (("stationary", 0), ("drifting", args.drift_every)):
        w = make_workload(args.tasks, args.requests, args.zipf, args.seed, drift)
        scenarios[scenario] = results = sweep(w, SIZES_MB)
        title = scenario if not drift else f"drifting (popularity moves every {drift:,} requests)"
        print_table(SIZES_MB, results, w, title)
        if not args.no_check:
            check_against_real_cache(w, min(args.requests, 20_000), (2, 10))
        rates = [o.hit_rate for o in results["LRU"]]
        assert rates == sorted(rates) or statistics.pstdev(rates) < 1e-9, "hit rate fell"
    plot(SIZES_MB, scenarios, args.plot)


if __name__ == "__main__":
    main()
