"""``%agent cache`` in team mode, in a real kernel against a real redis-server: the health line
and the entries are the team's, every action works on the team's Redis cache (checked from
this process with a RedisResponseCache of its own), ``--local`` is the kernel's disk cache, and
while Redis is down the command says so in one line and works on the kernel's own cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernel_harness import Kernel
from redis_server import RedisServer

from claude_force_magic.cache.redis import RedisResponseCache

pytestmark = [pytest.mark.kernel, pytest.mark.redis]

SECRET = "team-cache-kernel-secret-0123456789abcdef"
TASKS = ("What does GCRA stand for?", "Name one use of a token bucket (ref qx7zebra).")


def _join(k: Kernel, server: RedisServer, namespace: str) -> None:
    k.ok(f"import os; os.environ['CLAUDE_CACHE_SECRET'] = {SECRET!r}")
    k.ok(f"%config AgentMagics.redis_url = {server.url!r}")
    k.ok(f"%config AgentMagics.redis_namespace = {namespace!r}")


def _leave(k: Kernel) -> None:
    k.ok("%config AgentMagics.redis_url = ''")  # off again for the module's later tests


def _team_view(server: RedisServer, namespace: str) -> RedisResponseCache:
    """The same team cache, opened by this process (simulated answers: ``-simulated``)."""
    return RedisResponseCache(server.url, namespace=f"{namespace}-simulated", cache_secret=SECRET)


def _keys(k: Kernel, flags: str = "") -> list[str]:
    run = k.ok(f"%agent cache {flags} -o _rows\nprint(json.dumps(list(_rows['key'])))")
    return list(json.loads(run.stdout.strip().splitlines()[-1]))


def test_every_action_works_on_the_teams_redis_cache(
    simulated_kernel: Kernel, redis_server: RedisServer, tmp_path: Path
) -> None:
    k = simulated_kernel
    k.ok("import json")
    _join(k, redis_server, "tc")
    for task in TASKS:
        assert k.ok(f"%%agent python-expert\n{task}").status == "ok"
    team = _team_view(redis_server, "tc")
    try:
        stored = {e["key"]: e for e in team.entries()}
        assert len(stored) == 2

        listing = k.ok("%agent cache")
        assert "Team cache (Redis at redis://127.0.0.1" in listing.stdout
        assert "2 entries" in listing.stdout and "integrity failures 0" in listing.stdout
        assert "%agent cache --local" in listing.stdout
        assert "GCRA" in listing.result_text
        assert sorted(_keys(k)) == sorted(stored)
        assert _keys(k, "--local") == []  # the kernel's own cache holds none of them
        inspector = k.ok("%agent cache --local")  # the widget inspector, on the disk cache
        assert "Cache inspector: 0 entries" in "".join(inspector.texts())

        gcra = next(key for key, e in stored.items() if "GCRA" in e["preview"])
        answer = team.entry(gcra)
        assert answer is not None
        shown = k.ok(f"%agent cache show {gcra[:10]} -o _shown\nprint(json.dumps(_shown.output))")
        assert json.loads(shown.stdout.strip().splitlines()[-1]) == answer["response"]
        assert f"cache entry {gcra[:12]}" in "".join(shown.texts("text/html"))

        found = k.ok("%agent cache search QX7ZEBRA -o _found\nprint(list(_found['key']))")
        assert found.stdout.strip() == str([key for key in stored if key != gcra])
        top = k.ok("%agent cache top --by size --n 1 -o _top\nprint(len(_top))")
        assert top.stdout.strip() == "1"

        out = tmp_path / "team.jsonl"
        exported = k.ok(f"%agent cache export {str(out)!r}")
        assert "Wrote 2 cache entries" in exported.stdout
        assert {json.loads(line)["key"] for line in out.read_text().splitlines()} == set(stored)

        k.ok(f"%agent cache delete {gcra[:12]}")
        assert [e["key"] for e in team.entries()] == [key for key in stored if key != gcra]
        missing = k.run(f"%agent cache delete {gcra[:12]}")
        assert missing.ename == "UsageError"
        assert "nothing was deleted" in missing.stderr + str(missing.reply)

        other = next(key for key in stored if key != gcra)
        team._live().set(team._prefix + other, b"not a signed envelope")
        verified = k.ok("%agent cache verify")
        assert (
            "checked=1, valid=0" in verified.result_text and f"{other[:12]}" in verified.result_text
        )
        assert team.get_stats()["integrity_failures"] == 1
        assert team.entries() == []

        k.ok("%%agent python-expert\nWhat does GCRA stand for?")
        cleared = k.ok("%agent cache clear python-expert")
        assert "Removed 1 cache entry" in cleared.stdout
        assert team.get_stats()["entries"] == 0
    finally:
        team.close()
        _leave(k)


def test_while_redis_is_down_the_command_says_so_and_uses_the_local_cache(
    simulated_kernel: Kernel, private_redis: RedisServer
) -> None:
    k = simulated_kernel
    k.ok("import json")
    _join(k, private_redis, "tc-down")
    try:
        k.ok(f"%%agent python-expert\n{TASKS[0]}")
        team_keys = _keys(k)
        assert len(team_keys) == 1
        up = "".join(k.ok("%agent stats").texts())
        assert "Team cache (Redis at redis://127.0.0.1" in up and "1 entry" in up
        assert "Cache health" not in up  # not the kernel's own disk cache, which cells skip
        assert "no cache entries yet" not in up  # the dashboard's cache table is the team's
        private_redis.stop()

        stats = "".join(k.ok("%agent stats").texts())
        assert "Team cache: the team's Redis at" in stats and "cannot be reached" in stats
        down = k.ok("%agent cache --frame")
        notes = [line for line in down.stdout.splitlines() if "cannot be reached" in line]
        assert len(notes) == 1 and "kernel's own cache" in notes[0]
        k.ok("%%agent python-expert\nWhat is a leaky bucket, in one line?")  # stored locally
        local = k.ok("%agent cache -o _rows\nprint(list(_rows['preview']))")
        assert "leaky bucket" in local.stdout and "cannot be reached" in local.stdout
        assert team_keys[0] not in _keys(k, "--local")

        private_redis.start()  # empty again: persistence is off
        back = k.ok("%agent cache --frame")
        assert "cannot be reached" not in back.stdout
        assert _keys(k) == []  # the team's (restarted, empty) cache, no longer the local one
    finally:
        _leave(k)
