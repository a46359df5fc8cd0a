"""Benchmark: goodput of 4 kernels sharing one rate limit through Redis, against 4 local limiters.

Run::

    .venv/bin/python benchmarks/bench_redis_team.py            # 600 requests/min, 90 s each
    .venv/bin/python benchmarks/bench_redis_team.py --quick    # 30 s each
    .venv/bin/python benchmarks/bench_redis.py --limits        # after the cache section

Four worker processes (one ``AsyncAgentOrchestrator`` each, 16 requests at a time, no retries)
call the offline simulator, which enforces ``--rpm`` requests per minute as the API does (a
bucket that starts full and refills continuously; a 429 otherwise). First the four share one
limit through a private ``redis-server`` (``redis_url=``); then, against the bucket the team
left drained, four kernels each with its own local limiter of the same ``--rpm``, as kernels
without the team switch are. Reported per side: answers, 429s, and the goodput (answers per
second) in the second half of the run, after the initial full bucket, as a share of the limit;
and the smallest kernel's share of the answers. Goals: the team meets no 429 and keeps at
least 95 % of the limit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "engine"))
from redis_server import RedisServer  # noqa: E402  (the test suite's harness)
from test_team_limits import Kernels, _steady_rates  # noqa: E402  (the same workers)

#: The least goodput the team must keep, as a share of the limit.
GOODPUT_GOAL = 0.95


def _side(
    name: str, rows: list[list], burst: int, rpm: int, stop: float, seconds: float
) -> dict[str, float]:
    answered = [sum(1 for t, ok, _ in r if ok and t <= stop) for r in rows]
    refused = sum(1 for r in rows for _, _, status in r if status == 429)
    try:
        rate, _ = _steady_rates(rows, burst, stop, window=seconds / 2)
    except AssertionError:  # too few answers to measure
        rate = float("nan")
    return {
        "side": name,  # type: ignore[dict-item]
        "answers": sum(answered),
        "429s": refused,
        "goodput_per_s": rate,
        "of_limit": rate / (rpm / 60),
        "smallest_share": min(answered) / (sum(answered) / 4) if sum(answered) else 0.0,
    }


def run_limits_section(url: str, rpm: int, seconds: float) -> bool:
    """The shared-limit goodput against the local baseline; True when the goals are met."""
    from claude_force_magic.simulator import Latency, Simulator

    with (
        tempfile.TemporaryDirectory(prefix="bench-team-") as tmp,
        Simulator(latency=Latency.fixed(0.02), rpm=rpm) as sim,
    ):
        team = Kernels(sim.base_url, url, rpm, Path(tmp))
        local = Kernels(sim.base_url, "", rpm, Path(tmp))
        stop = team.go(seconds)
        time.sleep(max(0.0, stop - time.time()))
        local_stop = local.go(seconds)
        sides = [
            # the team starts on a full bucket (its first rpm answers are the burst); the
            # baseline on the bucket the team left drained
            _side("team (Redis)", team.results(seconds), rpm, rpm, stop, seconds),
            _side("4 local limiters", local.results(seconds), 1, rpm, local_stop, seconds),
        ]
    print(f"\nShared rate limit: 4 kernels x 16 in flight, simulator enforcing {rpm}/min")
    print(
        f"{'side':<18}{'answers':>9}{'429s':>7}{'goodput/s':>11}{'of limit':>10}{'min share':>11}"
    )
    for s in sides:
        print(
            f"{s['side']:<18}{s['answers']:>9.0f}{s['429s']:>7.0f}{s['goodput_per_s']:>11.2f}"
            f"{s['of_limit']:>10.1%}{s['smallest_share']:>11.1%}"
        )
    team_side = sides[0]
    ok = team_side["429s"] == 0 and team_side["of_limit"] >= GOODPUT_GOAL
    print(f"goal: team 0 429s and >= {GOODPUT_GOAL:.0%} of the limit: {'met' if ok else 'NOT met'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s per side instead of 90")
    parser.add_argument("--rpm", type=int, default=600, help="requests per minute (600)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            ok = run_limits_section(server.url, args.rpm, 30.0 if args.quick else 90.0)
        finally:
            server.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
