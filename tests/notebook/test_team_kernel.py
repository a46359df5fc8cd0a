"""The team switch in a real kernel: ``%config AgentMagics.redis_url`` shares the cache, budget
and limits through a real redis-server, ``%agent stats`` / ``%agent cost`` show the team's
figures beside the kernel's own, and ``%agent config`` never shows the Redis password."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_harness import Kernel
from redis_server import RedisServer

pytestmark = [pytest.mark.kernel, pytest.mark.redis]

PASSWORD = "team-kernel-redis-pass-7c1"


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-team"), password=PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_switch_shows_team_figures_and_hides_the_password(
    simulated_kernel: Kernel, redis_with_password: RedisServer, tmp_path: Path
) -> None:
    k = simulated_kernel
    k.ok("import os; os.environ['CLAUDE_CACHE_SECRET'] = 'team-kernel-secret-0123456789abcdef'")
    k.ok(f"%config AgentMagics.redis_url = {redis_with_password.url!r}")
    k.ok("%config AgentMagics.redis_namespace = 'nb-team'")
    first = k.ok("%%agent python-expert\nWhat does GCRA stand for?")
    assert first.status == "ok"
    k.ok("%config AgentMagics.budget_usd = 5.0")
    stats = k.ok("%agent stats").stdout + "".join(k.ok("%agent stats").texts("text/html"))
    assert "Team (shared through Redis)" in stats
    cost = k.ok("%agent cost")
    assert "(whole team)" in cost.result_text
    config = k.ok("%agent config")
    shown = config.result_text + "".join(config.texts("text/html"))
    assert "redis://:****@127.0.0.1" in shown
    assert PASSWORD not in shown
    team = k.ok(
        "o = get_ipython().magics_manager.registry['AgentMagics'].session.orchestrator()\n"
        "f = o.team.figures()\n"
        "print(f['connected'], f['team_cache_entries'], o.team.link.namespace)"
    )
    assert team.stdout.split() == ["True", "1", "nb-team-simulated"]
    k.ok("%config AgentMagics.redis_url = ''")  # off again for the module's later tests
