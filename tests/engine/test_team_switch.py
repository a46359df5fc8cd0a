"""The one switch: ``redis_url`` moves cache, budget and limits to Redis together; without it
nothing changes (not even an import); Redis going away and coming back mid-run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import pytest

from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.team import TeamBudget, TeamLimiter, TeamStore, TeamWarning
from claude_force_magic.errors import ConfigurationError
from claude_force_magic.settings import REDIS_NAMESPACE_ENV, REDIS_URL_ENV

TEST_KEY = "sk-test-engine-key"

SECRET = "team-switch-test-secret-0123456789abcdef"


def _modules_after(code: str) -> dict[str, bool]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps({{'redis': 'redis' in sys.modules}}))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_the_switch_nothing_imports_redis(monkeypatch):
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    loaded = _modules_after(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.run_line_magic('load_ext', 'claude_force_magic')\n"
        "import asyncio\n"
        "from claude_force_magic.simulator import Simulator\n"
        "from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator\n"
        "async def main():\n"
        "    async with Simulator() as sim:\n"
        "        orch = AsyncAgentOrchestrator(api_key='sk-x', base_url=sim.base_url)\n"
        "        assert orch.team is None\n"
        "        assert (await orch.execute_agent('python-expert', 'hi')).success\n"
        "        await orch.close()\n"
        "asyncio.run(main())\n"
    )
    assert loaded == {"redis": False}


def test_bad_url_or_namespace_is_refused_at_construction():
    with pytest.raises(ConfigurationError, match="redis"):
        AsyncAgentOrchestrator(api_key=TEST_KEY, redis_url="http://example.org:6379")
    with pytest.raises(ConfigurationError, match="namespace"):
        AsyncAgentOrchestrator(
            api_key=TEST_KEY, redis_url="redis://127.0.0.1:1/0", namespace="a b*"
        )


def test_an_empty_url_turns_the_environments_switch_off(monkeypatch):
    monkeypatch.setenv(REDIS_URL_ENV, "redis://127.0.0.1:1/0")
    assert AsyncAgentOrchestrator(api_key=TEST_KEY, redis_url="").team is None


@pytest.mark.redis
async def test_the_environment_moves_cache_budget_and_limits_together(
    redis_server, sim, tmp_path, monkeypatch
):
    """Two kernels (orchestrators with their own cache directories) of one team: the answer
    the first bought is a hit for the second, and the spend is the team's."""
    monkeypatch.setenv(REDIS_URL_ENV, redis_server.url)
    monkeypatch.setenv(REDIS_NAMESPACE_ENV, "team-a")
    monkeypatch.setenv("CLAUDE_CACHE_SECRET", SECRET)
    kernels = [
        AsyncAgentOrchestrator(
            api_key=TEST_KEY,
            base_url=sim.base_url,
            cache_dir=tmp_path / f"cache{i}",
            budget_usd=5.0,
            max_retries=0,
        )
        for i in range(2)
    ]
    first, second = kernels
    try:
        assert isinstance(first._budget, TeamBudget)
        assert isinstance(first.limiter, TeamLimiter)
        assert isinstance(first.store, TeamStore)
        bought = await first.execute_agent("python-expert", "Explain GCRA in one line")
        assert bought.success and not bought.metadata["cached"]
        reused = await second.execute_agent("python-expert", "Explain GCRA in one line")
        assert reused.metadata["cached"], "the team's cache did not serve the second kernel"
        cost = bought.metadata["cost_usd"]
        assert cost > 0
        await second.execute_agent("python-expert", "Another question")
        team_spent = second.spent_usd
        assert team_spent > cost
        assert first.spent_usd == pytest.approx(team_spent)  # one figure for the team
        own = [k.team.figures()["own_spent_usd"] for k in kernels]
        assert sum(own) == pytest.approx(team_spent)
        assert sim.stats["requests"] == 2  # the same question was bought once
        limits = first.team.figures()["limits"]
        assert limits["team"] is True and limits["requests"]["per_minute"] == 50.0
    finally:
        for orch in kernels:
            await orch.close()


@pytest.mark.redis
async def test_redis_down_and_back_mid_run(private_redis, sim, tmp_path, monkeypatch):
    """Redis dies: cells keep working on the local cache, budget and limits after one warning;
    what was spent meanwhile reaches the team once when Redis is back."""
    monkeypatch.setenv("CLAUDE_CACHE_SECRET", SECRET)
    orch = AsyncAgentOrchestrator(
        api_key=TEST_KEY,
        base_url=sim.base_url,
        cache_dir=tmp_path / "cache",
        budget_usd=5.0,
        max_retries=0,
        redis_url=private_redis.url,
        namespace="team-b",
    )
    team = orch.team
    assert team is not None
    team.link.probe_seconds = 0.2
    costs = []
    try:
        before = await orch.execute_agent("python-expert", "before the outage")
        costs.append(before.metadata["cost_usd"])
        private_redis.stop()  # its data is gone with it: persistence is off
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            during = await orch.execute_agent("python-expert", "during the outage")
            assert during.success and not during.metadata["cached"]
            costs.append(during.metadata["cost_usd"])
            again = await orch.execute_agent("python-expert", "during the outage")
            assert again.metadata["cached"]  # the kernel's own cache kept it
            assert team.figures()["connected"] is False
        assert [w.category for w in caught] == [TeamWarning]
        assert "own cache, budget and rate limits" in str(caught[0].message)
        assert team.team_budget is not None and team.team_budget.pending == 1
        private_redis.start()
        time.sleep(0.3)  # past the probe period
        after = await orch.execute_agent("python-expert", "after the outage")
        assert after.success
        costs.append(after.metadata["cost_usd"])
        figures = team.figures()
        assert figures["connected"] is True and figures["pending_charges"] == 0
        # Redis restarted empty: it now holds what was spent during the outage and after,
        # each once; the kernel's own record holds all three
        assert figures["team_spent_usd"] == pytest.approx(costs[1] + costs[2])
        assert figures["own_spent_usd"] == pytest.approx(sum(costs))
        assert sim.stats["requests"] == 3
    finally:
        await orch.close()
