"""The ``%agent`` subcommand table, the session's one orchestrator factory, and ``Mode``.

A terminal IPython (no kernel): the subcommands run for real against the in-process simulator.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from claude_force_magic.notebook.commands import COMMANDS
from claude_force_magic.notebook.commands.registry import CommandTable, command
from claude_force_magic.notebook.options import argument, magic_args
from claude_force_magic.notebook.session import AgentSession, Mode, SessionConfig


@pytest.fixture
def session() -> Iterator[AgentSession]:
    s = AgentSession(lambda: dataclasses.replace(SessionConfig(), simulator_latency=0.0))
    yield s
    s.close()


@command("echo", ("echo WORD [--twice]", "print WORD"))
@magic_args("agent echo")
@argument("word", metavar="WORD")
@argument("--twice", action="store_true")
def _echo(magics: object, args: argparse.Namespace) -> str:
    """Print a word."""
    return args.word * (2 if args.twice else 1)


def test_help_lists_every_registered_command(shell: InteractiveShell) -> None:
    with capture_output() as out:
        assert shell.run_line_magic("agent", "") is None
        shell.run_line_magic("agent", "help")
    doc = shell.find_line_magic("agent").__doc__ or ""
    lines = out.stdout.splitlines()
    for cmd in COMMANDS:
        for synopsis, summary in cmd.help:
            short = summary and len(synopsis) <= 25
            line = f"  {synopsis:<25} {summary}" if short else f"  {synopsis}"
            assert lines.count(line) == 2, line  # from `%agent` and from `%agent help`
            assert synopsis in doc
    assert "(every table is returned" in out.stdout


def test_a_new_family_is_one_command_in_the_table() -> None:
    table = CommandTable([_echo], heading="%agent SUBCOMMAND")
    assert "  echo WORD [--twice]       print WORD" in table.help()
    assert table.get("echo").handler(None, table.get("echo").parse("'hi' --twice")) == "hihi"
    with pytest.raises(UsageError, match=r"Unknown subcommand 'nope'[\s\S]*echo WORD"):
        table.get("nope")
    with pytest.raises(ValueError, match="registered twice"):
        CommandTable([_echo, _echo], heading="")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("show", "Usage: %agent show NAME"),
        ("show a b", "unrecognized arguments: b"),
        ("list extra", "%agent list takes no arguments (got 'extra')"),
        ("budget 1 --per", "Usage: %agent budget [--per day|session|total]"),
        ("budget 1 --per week", "--per week: use day"),
        ("simulate maybe", "Usage: %agent simulate on   or   %agent simulate off"),
        ("bench", "Usage: %agent bench [--n N]"),
        ("frobnicate", "Unknown subcommand 'frobnicate'"),
    ],
)
def test_bad_usage_is_a_usage_error_with_the_usage_line(
    shell: InteractiveShell, line: str, message: str
) -> None:
    with capture_output() as out:
        result = shell.run_cell(f"%agent {line}")
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    assert message in out.stderr
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize("typed", ["sk-ant-api03-typed-secret", "--sk-ant-api03-typed-secret"])
def test_key_never_echoes_what_was_typed(shell: InteractiveShell, typed: str) -> None:
    with capture_output() as out:
        result = shell.run_cell(f"%agent key {typed}")
    assert isinstance(result.error_in_exec, UsageError)
    assert "typed-secret" not in out.stdout + out.stderr
    assert "Usage: %agent key" in out.stderr


def test_quoted_arguments_lose_their_quotes(shell: InteractiveShell) -> None:
    with capture_output() as out:
        shell.run_line_magic("agent", 'show "sql-expert"')
        shell.run_line_magic("agent", "budget '2.50' --per=day")
    assert "### sql-expert" in out.stdout
    magics = shell.magics_manager.registry["AgentMagics"]
    assert magics.budget_usd == pytest.approx(2.5) and magics.budget_window == "day"


def test_mode_replaces_the_simulated_flag(session: AgentSession) -> None:
    assert [m.label for m in Mode] == ["live", "simulated"]
    assert Mode.of(True) is Mode.SIMULATED and Mode.of(False) is Mode.LIVE
    assert Mode.of(Mode.LIVE) is Mode.LIVE and Mode.SIMULATED.simulated
    assert session.metrics(True) is session.metrics(Mode.SIMULATED)
    assert session.budget(False) is session.budget(Mode.LIVE)
    assert session.cache_dir(Mode.SIMULATED).name.endswith("-simulated")
    assert session.mode is Mode.LIVE
    session.simulate = True
    assert session.mode is Mode.SIMULATED


def test_one_factory_builds_the_session_and_bench_orchestrators(session: AgentSession) -> None:
    own = session.orchestrator(Mode.SIMULATED)
    assert session.orchestrator(True) is own
    bench = session.build_orchestrator(
        Mode.SIMULATED, max_concurrent=3, calls_per_minute=None, enable_cache=False
    )
    try:
        assert bench is not own and bench.max_concurrent == 3
        assert bench.cache is None and own.cache is not None
        assert own.limiter.enabled and not bench.limiter.enabled
        # Same settings, registry and budget; the session's metrics unless overridden.
        assert (bench.model, bench.max_tokens) == (own.model, own.max_tokens)
        assert bench.registry is own.registry
        assert bench.metrics is own.metrics is session.metrics(Mode.SIMULATED)
        result = session.run(bench.execute_agent("python-expert", "Spend a little."))
        assert result.success and result.cost_usd > 0
        assert own.spent_usd == pytest.approx(result.cost_usd)  # one budget for the mode
    finally:
        session.run(bench.close())
    assert session.live_orchestrators() == {Mode.SIMULATED: own}


def test_traits_and_session_config_take_the_engine_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from claude_force_magic.engine import defaults
    from claude_force_magic.notebook.magics import AgentMagics

    for name in ("MODEL", "MAX_TOKENS"):
        monkeypatch.delenv(f"CLAUDE_FORCE_MAGIC_{name}", raising=False)
    magics = AgentMagics(shell=None)
    try:
        config = magics.session.config()
    finally:
        magics.session.close()
    expected = {
        "model": defaults.MODEL,
        "max_tokens": defaults.MAX_TOKENS,
        "timeout": defaults.TIMEOUT_SECONDS,
        "deadline": defaults.DEADLINE_SECONDS,
        "max_concurrent": defaults.MAX_CONCURRENT,
        "calls_per_minute": defaults.CALLS_PER_MINUTE,
        "ttl_hours": defaults.CACHE_TTL_HOURS,
        "injection_policy": defaults.INJECTION_POLICY,
    }
    assert {name: getattr(config, name) for name in expected} == expected
    assert {name: getattr(SessionConfig(), name) for name in expected} == expected


def test_a_cells_flags_and_values_become_one_call_options() -> None:
    from claude_force_magic.engine.request import CallOptions
    from claude_force_magic.notebook.magics import AgentMagics
    from claude_force_magic.notebook.options import build_cell_request, parse_args

    args = parse_args(AgentMagics.agent_cell, "python-expert --max-tokens 99 --no-cache --ttl 2")
    request = build_cell_request(args, "Explain {topic}.", {"topic": "slots"})
    options = request.options
    assert isinstance(options, CallOptions)
    assert (options.max_tokens, options.use_cache, options.ttl_hours) == (99, False, 2.0)
    assert options.untrusted == {"topic": "slots"}
    assert not options.screen_task and options.injection_policy == "off"  # the body is the user's
