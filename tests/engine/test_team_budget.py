"""The team's budget in a real redis-server: atomic reservations, expiry, 8 processes, outages.

Run as a script (``python test_team_budget.py worker URL ...``) it is one hammering process of
:func:`test_eight_processes_end_within_one_call_of_the_limit`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from claude_force_magic.engine.budget import Budget
from claude_force_magic.engine.team import Team, TeamReservation, TeamWarning
from claude_force_magic.engine.team_budget import RedisBudget
from claude_force_magic.errors import BudgetExceededError, PricingError, TeamUnavailableError

pytestmark = pytest.mark.redis

WORKERS = 8
ESTIMATE = 0.01
LIMIT = 1.0


class Clock:
    """A monotonic clock the test moves (for the link's probe period)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def redis_budget(url: str, **kwargs: object) -> RedisBudget:
    import redis

    return RedisBudget(redis.Redis.from_url(url), "t:budget:", **kwargs)  # type: ignore[arg-type]


def test_reserve_refuses_past_the_limit_and_settle_replaces_the_reservation(redis_server):
    budget = redis_budget(redis_server.url)
    assert budget.reserve("a", 0.4, 1.0, window="total").granted
    assert budget.reserve("b", 0.4, 1.0, window="total").granted
    refused = budget.reserve("c", 0.4, 1.0, window="total")
    assert not refused.granted
    assert refused.reserved == pytest.approx(0.8)
    assert budget.settle("a", 0.1, window="total") == pytest.approx(0.1)
    assert budget.figures(window="total") == (pytest.approx(0.1), pytest.approx(0.4), 1)
    assert budget.reserve("c", 0.4, 1.0, window="total").granted  # 0.1 + 0.4 + 0.4 <= 1
    # a settle replayed (lost reply, outage) is not charged twice
    assert budget.settle("a", 0.1, window="total") == pytest.approx(0.1)
    assert budget.reserve("d", 5.0, None, window="total").granted  # no limit: never refused


def test_windows_are_counted_together_and_read_apart(redis_server):
    budget = redis_budget(redis_server.url)
    budget.settle("x", 0.25, window="total")
    assert budget.figures(window="day")[0] == pytest.approx(0.25)
    assert budget.figures(window="session")[0] == pytest.approx(0.25)
    budget.reset(window="total")
    assert budget.figures(window="total")[0] == 0.0
    assert budget.figures(window="day")[0] == 0.0


def test_an_unsettled_reservation_expires(redis_server):
    budget = redis_budget(redis_server.url, reservation_ttl_seconds=0.3)
    assert budget.reserve("crashed", 0.9, 1.0, window="total").granted
    assert not budget.reserve("next", 0.2, 1.0, window="total").granted
    deadline = time.monotonic() + 10  # generous: the expiry is 0.3 s of the server's clock
    while not budget.reserve("next", 0.2, 1.0, window="total").granted:
        assert time.monotonic() < deadline, "the crashed reservation never expired"
        time.sleep(0.05)
    assert budget.figures(window="total")[2] == 1  # only "next" is held


def test_a_killed_process_holds_its_reservation_until_it_expires(redis_server):
    script = (
        "import os, signal, redis, sys\n"
        "from claude_force_magic.engine.team_budget import RedisBudget\n"
        "c = redis.Redis.from_url(sys.argv[1])\n"
        "b = RedisBudget(c, 't:budget:', reservation_ttl_seconds=1)\n"
        "assert b.reserve('dead', 0.9, 1.0, window='total').granted\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, redis_server.url], check=False)
    assert done.returncode == -signal.SIGKILL
    budget = redis_budget(redis_server.url)
    assert budget.figures(window="total")[1] == pytest.approx(0.9)
    deadline = time.monotonic() + 15
    while budget.figures(window="total")[1] > 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert budget.reserve("alive", 0.9, 1.0, window="total").granted


def test_team_budget_is_a_budget_that_keeps_the_kernels_own_record(redis_server, tmp_path):
    team = Team(redis_server.url, "t")
    local = Budget.persistent(
        tmp_path / "spend.jsonl", limit_usd=1.0, secret="team-budget-test-secret-0123456789"
    )
    budget = team.budget(local)
    held = budget.reserve(0.5, model="m")
    assert isinstance(held, TeamReservation) and held.remote
    assert budget.reserved == pytest.approx(0.5)
    budget.settle(held, 0.2)
    # another kernel of the team spends too
    other = Team(redis_server.url, "t").budget(Budget(1.0))
    other.settle(other.reserve(0.5, model="m"), 0.3)
    assert budget.spent == pytest.approx(0.5)  # the team's
    assert budget.own_spent == pytest.approx(0.2)  # this kernel's signed ledger
    assert local.account is not None and local.account.spent() == pytest.approx(0.2)
    with pytest.raises(BudgetExceededError, match="team"):
        budget.reserve(0.6, model="m")
    budget.set_limit(None)
    assert budget.reserve(None, model="unknown").amount == 0.0  # no limit: not counted
    budget.set_limit(2.0)
    with pytest.raises(PricingError):
        budget.reserve(None, model="unknown")
    assert budget.remaining == pytest.approx(1.5)
    budget.reset()
    assert budget.spent == 0.0 and budget.own_spent == 0.0
    team.close()


def _worker(url: str, out: Path) -> None:
    team = Team(url, "hammer")
    budget = team.budget(Budget(LIMIT))
    # Start together: a loaded machine can take longer to start a Python than one worker
    # takes to spend the whole budget.
    out.with_suffix(".ready").touch()
    go = out.parent / "go"
    while not go.exists():
        time.sleep(0.005)
    calls = 0
    while True:
        try:
            held = budget.reserve(ESTIMATE, model="m")
        except BudgetExceededError:
            break
        time.sleep(0.001)  # the call is "in flight"
        budget.settle(held, ESTIMATE)
        calls += 1
    out.write_text(json.dumps({"calls": calls, "own": budget.own_spent}))
    team.close()


def test_eight_processes_end_within_one_call_of_the_limit(redis_server, tmp_path):
    """Each worker reserves the worst case and settles at it, until it is refused. Every
    refusal sees spent + reserved + estimate > limit, and what was reserved is spent in the
    end, so the team ends within one call of the limit and never above it."""
    here = Path(__file__)
    outs = [tmp_path / f"w{i}.json" for i in range(WORKERS)]
    procs = [
        subprocess.Popen([sys.executable, str(here), "worker", redis_server.url, str(out)])
        for out in outs
    ]
    deadline = time.monotonic() + 120
    while not all(out.with_suffix(".ready").exists() for out in outs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    (tmp_path / "go").touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    results = [json.loads(out.read_text()) for out in outs]
    import redis

    spent = redis_budget(redis_server.url).figures(window="total")

    final = RedisBudget(redis.Redis.from_url(redis_server.url), "hammer:budget:").figures(
        window="total"
    )
    assert spent[0] == 0.0  # other namespaces are untouched
    assert final[1] == 0.0 and final[2] == 0  # nothing left reserved
    assert LIMIT - ESTIMATE < final[0] <= LIMIT + 1e-9
    assert sum(r["calls"] for r in results) == round(final[0] / ESTIMATE)
    assert sum(r["own"] for r in results) == pytest.approx(final[0])
    assert sum(1 for r in results if r["calls"] > 0) >= 2  # they really ran together


def test_outage_settles_locally_once_and_replays_into_redis_once(private_redis, tmp_path):
    """A reservation made in Redis before it died is settled in the kernel's record at once
    and in Redis when it returns, never twice; one warning for the whole outage."""
    import redis

    clock = Clock()
    team = Team(private_redis.url, "t", probe_seconds=5, clock=clock)
    budget = team.budget(Budget(1.0))
    first = budget.reserve(0.5, model="m")
    assert isinstance(first, TeamReservation) and first.remote
    redis.Redis.from_url(private_redis.url).shutdown(save=True)  # the data survives on disk
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        budget.settle(first, 0.3)
        second = budget.reserve(0.4, model="m")
        assert isinstance(second, TeamReservation) and not second.remote
        with pytest.raises(BudgetExceededError):
            budget.reserve(0.4, model="m")  # 0.3 + 0.4 held + 0.4 > 1.0, known locally
        budget.settle(second, 0.2)
        assert budget.spent == pytest.approx(0.5)
        with pytest.raises(TeamUnavailableError):
            budget.reset()
    assert [w.category for w in caught] == [TeamWarning]
    assert budget.own_spent == pytest.approx(0.5)
    assert budget.pending == 2
    private_redis.start()
    assert budget.pending == 2  # not probed before its time: no network wait meanwhile
    clock.now += 5
    assert budget.spent == pytest.approx(0.5)  # the probe replays first
    assert budget.pending == 0
    remote = RedisBudget(redis.Redis.from_url(private_redis.url), "t:budget:")
    assert remote.figures(window="total") == (pytest.approx(0.5), 0.0, 0)
    remote.settle(first.id, 0.3, window="total")  # a second replay changes nothing
    assert remote.figures(window="total")[0] == pytest.approx(0.5)
    assert budget.own_spent == pytest.approx(0.5)
    team.close()


def test_closing_writes_the_charges_still_waiting_for_redis(private_redis):
    """Redis came back but no call has probed it yet: closing the kernel's team still writes
    what was charged during the outage."""
    import redis

    clock = Clock()
    team = Team(private_redis.url, "t", probe_seconds=5, clock=clock)
    budget = team.budget(Budget(1.0))
    private_redis.stop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        budget.settle(budget.reserve(0.25, model="m"), 0.25)
    assert budget.pending == 1
    private_redis.start()
    team.close()  # before the next probe time
    remote = RedisBudget(redis.Redis.from_url(private_redis.url), "t:budget:")
    assert remote.figures(window="total")[0] == pytest.approx(0.25)


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    _worker(sys.argv[2], Path(sys.argv[3]))
