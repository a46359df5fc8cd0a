"""Tests for claude_force_magic/agents.py: bundled agents, discovery, and SEC-003 path safety."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from claude_force_magic.agents import (
    AGENT_NAME_PATTERN,
    AgentDefinition,
    AgentRegistry,
    discover_config,
    validate_agent_name,
)
from claude_force_magic.errors import AgentConfigError, UnknownAgentError, UnsafePathError
from claude_force_magic.settings import FORCE_CONFIG_ENV

REQUIRED_BUNDLED = {
    "python-expert",
    "code-reviewer",
    "security-specialist",
    "bug-investigator",
    "data-engineer",
    "document-writer-expert",
    "api-documenter",
    "ai-engineer",
    "prompt-engineer",
    "frontend-developer",
    "backend-architect",
    "database-architect",
    "devops-architect",
    "qc-automation-expert",
}
BUNDLED_DIR = Path(__file__).parents[1] / "claude_force_magic" / "data"


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home and working directory, so only what a test creates is discovered."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home


def write_config(
    base: Path,
    agents: dict[str, str],
    *,
    workflows: dict[str, list[str]] | None = None,
    entries: dict[str, dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Create ``base/.claude/claude.json`` with one Markdown file per agent; return its path."""
    claude = base / ".claude"
    (claude / "agents").mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"agents": {}, **(extra or {})}
    for name, text in agents.items():
        (claude / "agents" / f"{name}.md").write_text(text, encoding="utf-8")
        config["agents"][name] = {
            "file": f"agents/{name}.md",
            "domains": ["testing"],
            "priority": 2,
            "description": f"{name} for tests",
        }
    for name, fields in (entries or {}).items():
        config["agents"].setdefault(name, {}).update(fields)
    if workflows is not None:
        config["workflows"] = workflows
    path = claude / "claude.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def load_entry(cfg: Path, **kwargs: Any) -> AgentRegistry:
    """Load a config with one bad entry: it is left out with ONE warning naming it, the bundled
    agents stay available, and its error (what the tests below check) is raised here."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = AgentRegistry.load(cfg, **kwargs)
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert "python-expert" in registry
    (error,) = registry.disabled.values()
    assert str(error) in str(caught[0].message)
    raise error


# -- the bundled set ----------------------------------------------------------------------


def test_bundled_set_loads_with_required_agents() -> None:
    registry = AgentRegistry.load()
    assert registry.sources == ("bundled",)
    assert len(registry) >= 14
    assert set(registry.names()) >= REQUIRED_BUNDLED
    assert all(a.source == "bundled" for a in registry)


@pytest.mark.parametrize("name", sorted(REQUIRED_BUNDLED))
def test_bundled_agent_prompt_is_real_and_specific(name: str) -> None:
    agent = AgentRegistry.load().get(name)
    lines = agent.system_prompt.splitlines()
    assert 40 <= len(lines) <= 90, f"{name}: {len(lines)} lines"
    text = agent.system_prompt
    assert "## Method" in text or "Method" in text
    assert "## Output format" in text
    assert "## Guardrails" in text
    assert "<untrusted-data>" in text  # treats notebook data as data
    assert "```" in text  # tells the model to fence code with language tags
    assert any(f"{n}." in text for n in ("1", "2", "3"))  # numbered steps
    assert agent.description and "\n" not in agent.description
    assert 1 <= agent.priority <= 3
    assert agent.domains and all(isinstance(d, str) for d in agent.domains)


def test_bundled_prompts_are_distinct() -> None:
    hashes = [a.definition_hash for a in AgentRegistry.load()]
    assert len(set(hashes)) == len(hashes)


def test_bundled_workflows_name_existing_agents() -> None:
    registry = AgentRegistry.load()
    assert len(registry.workflows) >= 3
    assert registry.workflow("full-review") == (
        "code-reviewer",
        "security-specialist",
        "qc-automation-expert",
    )
    for members in registry.workflows.values():
        assert members and all(m in registry for m in members)


def test_bundled_config_points_only_at_shipped_files() -> None:
    data = json.loads((BUNDLED_DIR / "claude.json").read_text())
    files = {spec["file"] for spec in data["agents"].values()}
    shipped = {f"agents/{p.name}" for p in (BUNDLED_DIR / "agents").glob("*.md")}
    assert files == shipped


# -- discovery order ----------------------------------------------------------------------


def _probe_text(registry: AgentRegistry) -> str:
    return registry.get("probe").system_prompt


def test_discovery_order_explicit_env_nearest_home_bundled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_user_config: Path
) -> None:
    home_cfg = write_config(no_user_config, {"probe": "from home"})
    project = tmp_path / "work" / "project"
    nested = project / "src" / "pkg"
    nested.mkdir(parents=True)
    upward_cfg = write_config(project, {"probe": "from nearest upward"})
    env_cfg = write_config(tmp_path / "envdir", {"probe": "from env"})
    explicit_cfg = write_config(tmp_path / "explicit", {"probe": "from explicit"})

    monkeypatch.chdir(nested)
    monkeypatch.setenv(FORCE_CONFIG_ENV, str(env_cfg))
    assert _probe_text(AgentRegistry.load(explicit_cfg)) == "from explicit"
    assert _probe_text(AgentRegistry.load()) == "from env"

    monkeypatch.delenv(FORCE_CONFIG_ENV)
    registry = AgentRegistry.load()
    assert _probe_text(registry) == "from nearest upward"
    assert registry.sources == ("bundled", str(upward_cfg))
    assert registry.get("probe").source == str(upward_cfg)

    monkeypatch.chdir(tmp_path / "work")
    assert _probe_text(AgentRegistry.load()) == "from home"
    assert discover_config() == home_cfg

    home_cfg.unlink()
    registry = AgentRegistry.load()
    assert "probe" not in registry and registry.sources == ("bundled",)
    assert discover_config() is None


def test_nearest_config_wins_over_a_farther_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outer = tmp_path / "work" / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    write_config(outer, {"probe": "outer"})
    write_config(inner, {"probe": "inner"})
    monkeypatch.chdir(inner)
    assert _probe_text(AgentRegistry.load()) == "inner"


def test_explicit_directory_is_accepted(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "proj", {"probe": "dir form"})
    assert _probe_text(AgentRegistry.load(cfg.parent)) == "dir form"


def test_explicit_missing_config_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AgentConfigError, match="does not exist"):
        AgentRegistry.load(tmp_path / "nope" / "claude.json")
    monkeypatch.setenv(FORCE_CONFIG_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(AgentConfigError, match=FORCE_CONFIG_ENV):
        AgentRegistry.load()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_sec_003_foreign_owned_discovered_config_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = write_config(tmp_path / "work", {"probe": "planted by someone else"})
    os.chown(planted, 54321, 54321)
    with pytest.warns(UserWarning, match="uid 54321"):
        registry = AgentRegistry.load()
    assert "probe" not in registry


# -- overrides and format -----------------------------------------------------------------


def test_user_agent_overrides_bundled_agent_and_workflow(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "proj",
        {"python-expert": "You are our house Python style guide."},
        workflows={"full-review": ["python-expert", "code-reviewer"]},
        entries={"python-expert": {"model": "claude-haiku-5-5", "max_tokens": 2048}},
    )
    registry = AgentRegistry.load(cfg)
    agent = registry.get("python-expert")
    assert agent.system_prompt == "You are our house Python style guide."
    assert agent.source == str(cfg)
    assert agent.model == "claude-haiku-5-5" and agent.max_tokens == 2048
    assert registry.get("code-reviewer").source == "bundled"
    assert registry.workflow("full-review") == ("python-expert", "code-reviewer")
    assert registry.workflow("ship-api")  # bundled workflows remain


def test_other_top_level_keys_are_ignored(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "proj",
        {"probe": "x"},
        extra={"version": "2.1", "governance": {"x": 1}, "skills": [1, 2], "rules": None},
    )
    assert _probe_text(AgentRegistry.load(cfg)) == "x"


def test_extra_keys_inside_an_agent_are_ignored(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "p", {"probe": "x"}, entries={"probe": {"skills": ["a"]}})
    assert AgentRegistry.load(cfg).get("probe").priority == 2


def test_config_with_only_workflows_over_bundled_agents(tmp_path: Path) -> None:
    claude = tmp_path / "p" / ".claude"
    claude.mkdir(parents=True)
    (claude / "claude.json").write_text(
        json.dumps({"workflows": {"duo": ["python-expert", "sql-expert"]}})
    )
    assert AgentRegistry.load(claude / "claude.json").workflow("duo") == (
        "python-expert",
        "sql-expert",
    )


def test_workflow_naming_unknown_agent_fails_at_load(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "p", {"probe": "x"}, workflows={"w": ["probe", "ghost-agent"]})
    with pytest.raises(AgentConfigError, match="ghost-agent"):
        load_entry(cfg)


@pytest.mark.parametrize("members", [[], "probe", [1], None])
def test_malformed_workflow_refused(tmp_path: Path, members: Any) -> None:
    cfg = write_config(tmp_path / "p", {"probe": "x"}, workflows={"w": members})
    with pytest.raises(AgentConfigError, match="workflow 'w'"):
        load_entry(cfg)


# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Bad-Name",
        "has space",
        "../escape",
        "-leading",
        "_leading",
        "a" * 65,
        "tab\there",
        "x\n",
        "",
        "ünï",
    ],
)
def test_sec_003_invalid_agent_name_refused(tmp_path: Path, name: str) -> None:
    claude = tmp_path / "p" / ".claude"
    (claude / "agents").mkdir(parents=True)
    (claude / "agents" / "a.md").write_text("prompt")
    (claude / "claude.json").write_text(json.dumps({"agents": {name: {"file": "agents/a.md"}}}))
    with pytest.raises(AgentConfigError, match="Invalid agent name") as info:
        load_entry(claude / "claude.json")
    assert "\n" not in str(info.value).split("Invalid agent name", 1)[1].split(":")[0]


@pytest.mark.parametrize("name", ["a", "python-expert", "x_1", "9lives", "a" * 64])
def test_valid_agent_names(name: str) -> None:
    assert validate_agent_name(name) == name
    assert AGENT_NAME_PATTERN.fullmatch(name)


def test_invalid_workflow_name_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "p", {"probe": "x"}, workflows={"Bad WF": ["probe"]})
    with pytest.raises(AgentConfigError, match="Invalid workflow name"):
        load_entry(cfg)


# -- SEC-003: paths -----------------------------------------------------------------------


def _config_with_file(base: Path, file_value: str) -> Path:
    claude = base / ".claude"
    (claude / "agents").mkdir(parents=True, exist_ok=True)
    path = claude / "claude.json"
    path.write_text(json.dumps({"agents": {"probe": {"file": file_value}}}))
    return path


def test_sec_003_dotdot_escape_refused(tmp_path: Path) -> None:
    (tmp_path / "p" / "secret.md").parent.mkdir(parents=True)
    (tmp_path / "p" / "secret.md").write_text("TOP SECRET")
    cfg = _config_with_file(tmp_path / "p", "../secret.md")
    with pytest.raises(UnsafePathError, match="outside the configuration directory"):
        load_entry(cfg)


def test_sec_003_absolute_path_escape_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.md"
    secret.write_text("TOP SECRET")
    cfg = _config_with_file(tmp_path / "p", str(secret))
    with pytest.raises(UnsafePathError):
        load_entry(cfg)


def test_sec_003_agent_symlink_escape_refused(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("-----BEGIN PRIVATE KEY-----")
    cfg = _config_with_file(tmp_path / "p", "agents/evil.md")
    (cfg.parent / "agents" / "evil.md").symlink_to(secret)
    with pytest.raises(UnsafePathError, match="outside") as info:
        load_entry(cfg)
    assert "BEGIN PRIVATE KEY" not in str(info.value)


def test_sec_003_agent_directory_symlink_escape_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.md").write_text("outside prompt")
    claude = tmp_path / "p" / ".claude"
    claude.mkdir(parents=True)
    (claude / "linked").symlink_to(outside, target_is_directory=True)
    (claude / "claude.json").write_text(json.dumps({"agents": {"probe": {"file": "linked/x.md"}}}))
    with pytest.raises(UnsafePathError):
        load_entry(claude / "claude.json")


def test_symlink_that_stays_inside_is_allowed(tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path / "p", "agents/alias.md")
    (cfg.parent / "agents" / "real.md").write_text("the real prompt")
    (cfg.parent / "agents" / "alias.md").symlink_to("real.md")
    assert _probe_text(AgentRegistry.load(cfg)) == "the real prompt"


def test_symlinked_claude_json_resolves_files_next_to_its_target(tmp_path: Path) -> None:
    dotfiles = write_config(tmp_path / "dotfiles", {"probe": "from dotfiles"})
    link_dir = tmp_path / "p" / ".claude"
    link_dir.mkdir(parents=True)
    (link_dir / "claude.json").symlink_to(dotfiles)
    assert _probe_text(AgentRegistry.load(link_dir / "claude.json")) == "from dotfiles"


def test_symlink_loop_refused(tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path / "p", "agents/loop.md")
    (cfg.parent / "agents" / "loop.md").symlink_to("loop.md")
    with pytest.raises(UnsafePathError):
        load_entry(cfg)


def test_missing_agent_file_is_a_clear_error(tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path / "p", "agents/nope.md")
    with pytest.raises(AgentConfigError, match=r"'probe'.*does not exist"):
        load_entry(cfg)


def test_fifo_agent_file_refused_without_blocking(tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path / "p", "agents/pipe.md")
    os.mkfifo(cfg.parent / "agents" / "pipe.md")
    result: list[BaseException] = []

    def load() -> None:
        try:
            load_entry(cfg)
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "opening a FIFO blocked the loader"
    assert isinstance(result[0], UnsafePathError) and "not a regular file" in str(result[0])


# -- size, encoding, content --------------------------------------------------------------


def test_oversized_agent_file_refused_with_its_size(tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path / "p", "agents/big.md")
    (cfg.parent / "agents" / "big.md").write_bytes(b"x" * 2_000_000)
    with pytest.raises(AgentConfigError, match=r"2,000,000 bytes.*1,000,000-byte limit"):
        load_entry(cfg, max_file_bytes=1_000_000)


def test_size_limit_checked_before_reading_a_sparse_10gb_file(tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path / "p", "agents/huge.md")
    with open(cfg.parent / "agents" / "huge.md", "wb") as fh:
        fh.truncate(10_000_000_000)  # sparse: takes no disk space, reading it would take minutes
    start = time.perf_counter()
    with pytest.raises(AgentConfigError, match="10,000,000,000 bytes"):
        load_entry(cfg)
    assert time.perf_counter() - start < 5  # generous: reading 10 GB is far slower


def test_file_exactly_at_the_limit_is_accepted(tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path / "p", "agents/edge.md")
    (cfg.parent / "agents" / "edge.md").write_bytes(b"y" * 1_000)
    assert len(_probe_text(AgentRegistry.load(cfg, max_file_bytes=1_000))) == 1_000
    with pytest.raises(AgentConfigError, match="limit"):
        load_entry(cfg, max_file_bytes=999)


def test_oversized_claude_json_refused(tmp_path: Path) -> None:
    claude = tmp_path / "p" / ".claude"
    claude.mkdir(parents=True)
    (claude / "claude.json").write_text(json.dumps({"agents": {}, "pad": "z" * 5_000}))
    with pytest.raises(AgentConfigError, match="limit"):
        AgentRegistry.load(claude / "claude.json", max_file_bytes=4_000)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_max_file_bytes_refused(bad: Any) -> None:
    with pytest.raises(AgentConfigError, match="max_file_bytes"):
        AgentRegistry.load(max_file_bytes=bad)


def test_non_utf8_agent_file_refused_naming_the_file(tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path / "p", "agents/latin1.md")
    (cfg.parent / "agents" / "latin1.md").write_bytes("Café résumé".encode("latin-1"))
    with pytest.raises(AgentConfigError, match=r"latin1\.md is not valid UTF-8"):
        load_entry(cfg)


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path / "p", "agents/bom.md")
    (cfg.parent / "agents" / "bom.md").write_bytes("\ufeffHéllo".encode())
    assert _probe_text(AgentRegistry.load(cfg)) == "Héllo"


def test_empty_agent_file_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "p", {"probe": "  \n\n"})
    with pytest.raises(AgentConfigError, match="empty"):
        load_entry(cfg)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "JSON object"),
        ('{"agents": ', "not valid JSON"),
        ('{"agents": []}', "'agents' must be an object"),
        ('{"agents": {}, "workflows": []}', "'workflows' must be an object"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply|not valid JSON"),
    ],
)
def test_malformed_claude_json_refused(tmp_path: Path, content: str, fragment: str) -> None:
    claude = tmp_path / "p" / ".claude"
    claude.mkdir(parents=True)
    (claude / "claude.json").write_text(content)
    with pytest.raises(AgentConfigError, match=fragment):
        AgentRegistry.load(claude / "claude.json")


def test_non_utf8_claude_json_refused(tmp_path: Path) -> None:
    claude = tmp_path / "p" / ".claude"
    claude.mkdir(parents=True)
    (claude / "claude.json").write_bytes(b'{"x": "\xff"}')
    with pytest.raises(AgentConfigError, match="UTF-8"):
        AgentRegistry.load(claude / "claude.json")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"priority": "1"}, "priority"),
        ({"priority": True}, "priority"),
        ({"domains": "python"}, "domains"),
        ({"domains": ["ok", 3]}, "domains"),
        ({"description": 5}, "description"),
        ({"model": 3}, "model"),
        ({"model": "has space"}, "model"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": "4096"}, "max_tokens"),
        ({"file": 7}, "file"),
        ({"file": ""}, "file"),
    ],
)
def test_wrong_field_types_name_agent_and_field(
    tmp_path: Path, fields: dict[str, Any], field: str
) -> None:
    cfg = write_config(tmp_path / "p", {"probe": "x"}, entries={"probe": fields})
    with pytest.raises(AgentConfigError, match=f"'probe'.*'{field}'"):
        load_entry(cfg)


def test_agent_entry_that_is_not_an_object_refused(tmp_path: Path) -> None:
    claude = tmp_path / "p" / ".claude"
    claude.mkdir(parents=True)
    (claude / "claude.json").write_text(json.dumps({"agents": {"probe": "agents/x.md"}}))
    with pytest.raises(AgentConfigError, match="'probe' must be an object"):
        load_entry(claude / "claude.json")


def test_definition_hash_is_sha256_of_prompt_and_changes_with_the_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "p", {"probe": "version one"})
    first = AgentRegistry.load(cfg).get("probe")
    assert first.definition_hash == hashlib.sha256(b"version one").hexdigest()
    (cfg.parent / "agents" / "probe.md").write_text("version two")
    second = AgentRegistry.load(cfg).get("probe")
    assert second.definition_hash != first.definition_hash
    assert first.system_prompt == "version one"  # loaded definitions never change


# -- lookups ------------------------------------------------------------------------------


def test_unknown_agent_suggests_close_names_without_listing_all() -> None:
    registry = AgentRegistry.load()
    with pytest.raises(UnknownAgentError) as info:
        registry.get("pyhton-expert")
    err = info.value
    assert err.suggestions[0] == "python-expert"
    assert 1 <= len(err.suggestions) <= 3
    assert err.name == "pyhton-expert"
    message = str(err)
    assert "python-expert" in message
    assert sum(name in message for name in registry.names()) <= 3


def test_unknown_agent_without_close_names() -> None:
    with pytest.raises(UnknownAgentError) as info:
        AgentRegistry.load().get("zzzzzzzz")
    assert info.value.suggestions == () and "Did you mean" not in str(info.value)


def test_unknown_agent_message_is_sanitized() -> None:
    with pytest.raises(UnknownAgentError) as info:
        AgentRegistry.load().get("x\nWARNING: forged\x1b[31m" + "y" * 500)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message and len(message) < 400


def test_unknown_workflow_says_workflow() -> None:
    with pytest.raises(UnknownAgentError, match="Unknown workflow") as info:
        AgentRegistry.load().workflow("ful-review")
    assert info.value.suggestions == ("full-review",)


def test_registry_is_immutable_and_iterable() -> None:
    registry = AgentRegistry.load()
    with pytest.raises(TypeError):
        registry.workflows["new"] = ("python-expert",)  # type: ignore[index]
    agent = registry.get("python-expert")
    with pytest.raises(AttributeError):
        agent.system_prompt = "changed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        registry.extra = 1  # type: ignore[attr-defined]
    assert [a.name for a in registry] == registry.names() == sorted(registry.names())
    assert "python-expert" in registry and 3 not in registry


def test_definition_repr_is_short_and_omits_the_prompt() -> None:
    agent = AgentRegistry.load().get("python-expert")
    text = repr(agent)
    assert "python-expert" in text and agent.definition_hash[:12] in text
    assert agent.system_prompt[:60] not in text and len(text) < 300


def test_rows_for_a_dataframe() -> None:
    rows = AgentRegistry.load().rows()
    assert set(rows[0]) == {"name", "description", "domains", "priority", "model", "source"}
    python = next(r for r in rows if r["name"] == "python-expert")
    assert "python" in python["domains"] and python["source"] == "bundled"


def test_registry_constructor_validates_workflows() -> None:
    agent = AgentDefinition("a", "", (), 1, None, None, "p", "test", "h")
    with pytest.raises(AgentConfigError, match="unknown agent"):
        AgentRegistry({"a": agent}, {"w": ("a", "b")})


def test_loading_is_safe_from_many_threads() -> None:
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(len(AgentRegistry.load()))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1


def test_import_agents_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from claude_force_magic.agents import AgentRegistry; AgentRegistry.load();"
        "print([m for m in ('anthropic','pandas','ipywidgets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_discovered_config_warning_free_for_own_files(tmp_path: Path) -> None:
    write_config(tmp_path / "work", {"probe": "mine"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _probe_text(AgentRegistry.load()) == "mine"


@pytest.mark.parametrize("lookalike", ["pyth\u043en-expert", "python\u2011expert"])
def test_lookalike_names_are_explained_not_just_suggested(lookalike: str) -> None:
    # A Cyrillic 'о' or a non-breaking hyphen prints exactly like the real name: the message
    # must say what differs, or "Unknown agent 'python-expert'. Did you mean 'python-expert'?"
    registry = AgentRegistry.load()
    with pytest.raises(UnknownAgentError) as info:
        registry.get(lookalike)
    bad = next(ch for ch in lookalike if not ch.isascii())
    assert f"U+{ord(bad):04X}" in str(info.value)
    with pytest.raises(AgentConfigError, match=f"U\\+{ord(bad):04X}"):
        validate_agent_name(lookalike)


def test_unreadable_claude_dir_in_a_parent_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_user_config: Path
) -> None:
    # Another user's private /tmp/.claude (mode 0700) makes stat() of its claude.json fail
    # with EACCES, which Path.is_file() re-raises on Python < 3.13: discovery must skip it,
    # not crash every %%agent cell below that directory. (Simulated: tests may run as root.)
    home_cfg = write_config(no_user_config, {"probe": "from home"})
    blocked = tmp_path / "work" / ".claude"
    blocked.mkdir()
    real_stat = Path.stat

    def stat(self: Path, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(self).startswith(str(blocked)):
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    assert discover_config() == home_cfg


# -- issue 8: one bad entry disables only itself ---------------------------------------------


def test_one_bad_entry_in_a_parent_directory_disables_only_itself(tmp_path: Path) -> None:
    parent = tmp_path / "work"  # the working directory of the autouse fixture
    write_config(
        parent,
        {"good-agent": "a good prompt", "broken-agent": "x"},
        entries={"broken-agent": {"priority": "high"}},
        workflows={"good-flow": ["good-agent"], "broken-flow": ["good-agent", "broken-agent"]},
    )
    child = parent / "notebooks" / "deep"
    child.mkdir(parents=True)
    os.chdir(child)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = AgentRegistry.load()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert "'broken-agent'" in messages[0] and "priority" in messages[0]
    assert "'broken-flow'" in messages[1] and "disabled" in messages[1]
    assert all("\n" not in m for m in messages)
    assert set(registry.names()) >= REQUIRED_BUNDLED
    assert registry.get("good-agent").system_prompt == "a good prompt"
    assert registry.workflow("good-flow") == ("good-agent",)
    assert "broken-agent" not in registry
    with pytest.raises(AgentConfigError, match=r"'broken-agent' is disabled.*priority"):
        registry.get("broken-agent")
    with pytest.raises(AgentConfigError, match="'broken-flow' is disabled"):
        registry.workflow("broken-flow")


def test_a_broken_override_of_a_bundled_agent_hides_it_and_says_why(tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path / "p", "agents/missing.md")
    cfg.write_text(json.dumps({"agents": {"python-expert": {"file": "agents/missing.md"}}}))
    with pytest.warns(UserWarning, match="'python-expert'"):
        registry = AgentRegistry.load(cfg)
    assert "python-expert" not in registry and "code-reviewer" in registry
    with pytest.raises(AgentConfigError, match=r"disabled.*does not exist"):
        registry.get("python-expert")
