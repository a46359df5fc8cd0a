"""Named agents: their system prompts, read safely from ``.claude/claude.json``.

The configuration format is the earlier claude-force project's::

    {
      "agents": {
        "python-expert": {"file": "agents/python-expert.md", "domains": ["python"],
                          "priority": 1, "description": "...", "model": "...", "max_tokens": 4096}
      },
      "workflows": {"full-review": ["code-reviewer", "security-specialist"]}
    }

``file`` is relative to the directory holding ``claude.json``; the whole Markdown file is the
agent's system prompt. Other top-level keys are ignored.

Discovery (:func:`discover_config`): an explicit path, else ``$CLAUDE_FORCE_CONFIG``, else the
nearest ``.claude/claude.json`` from the working directory upward, else
``~/.claude/claude.json``. The bundled agents are always loaded first; the user's agents and
workflows override bundled ones of the same name. A bad entry disables only itself (one warning
names it); the other agents, bundled ones included, stay available.

Safety (review finding SEC-003): names match :data:`AGENT_NAME_PATTERN`; agent files must
resolve inside the configuration directory (a ``..`` or symlink that escapes is refused with
:class:`~claude_force_magic.errors.UnsafePathError`); sizes are checked on the opened file
before anything is read; files must be UTF-8 regular files.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import stat
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import AgentConfigError, ClaudeForceError, UnknownAgentError, UnsafePathError
from .settings import FORCE_CONFIG_ENV

__all__ = [
    "AGENT_NAME_PATTERN",
    "BUNDLED_SOURCE",
    "DEFAULT_MAX_FILE_BYTES",
    "AgentDefinition",
    "AgentRegistry",
    "discover_config",
    "validate_agent_name",
]

#: Agent and workflow names: lower-case letters, digits, ``-`` and ``_``; at most 64 long.
AGENT_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: The ``source`` of agents shipped with the package.
BUNDLED_SOURCE = "bundled"
#: Largest agent file or ``claude.json`` read by default (1 MB).
DEFAULT_MAX_FILE_BYTES = 1_000_000

_BUNDLED_CONFIG = Path(__file__).parent / "data" / "claude.json"
_CONFIG_NAME = "claude.json"
_CONFIG_DIR_NAME = ".claude"
_MAX_SUGGESTIONS = 3
_MAX_MODEL_ID = 200


def _shown(value: object, limit: int = 80) -> str:
    """A user-supplied value made safe for a message: printable, bounded, quoted."""
    text = value if isinstance(value, str) else repr(value)
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return repr(clean + ("..." if len(text) > limit else ""))


def _non_ascii_note(name: object) -> str:
    """Name the first non-ASCII character: a look-alike ('о' U+043E) prints like the real one."""
    if not isinstance(name, str) or name.isascii():
        return ""
    index, ch = next((i, c) for i, c in enumerate(name) if not c.isascii())
    return f" It contains the non-ASCII character U+{ord(ch):04X} at position {index}."


def validate_agent_name(name: object, *, kind: str = "agent") -> str:
    """Return ``name`` if it is a valid agent (or workflow) name.

    Raises :class:`AgentConfigError` otherwise, quoting the name safely and giving the rule.
    """
    if isinstance(name, str) and AGENT_NAME_PATTERN.fullmatch(name):
        return name
    raise AgentConfigError(
        f"Invalid {kind} name {_shown(name)}: names are 1-64 characters of lower-case letters, "
        "digits, '-' and '_', starting with a letter or digit (for example 'python-expert')."
        + _non_ascii_note(name)
    )


@dataclass(frozen=True)
class AgentDefinition:
    """One agent: its system prompt and settings. Immutable and safe to share.

    ``definition_hash`` is the SHA-256 (hex) of ``system_prompt``; it is part of the response
    cache key, so editing an agent's file invalidates its cached answers.
    """

    name: str
    description: str
    domains: tuple[str, ...]
    priority: int
    model: str | None
    max_tokens: int | None
    system_prompt: str
    source: str
    definition_hash: str

    def __repr__(self) -> str:
        return (
            f"AgentDefinition(name={self.name!r}, model={self.model!r}, "
            f"priority={self.priority}, domains={self.domains!r}, source={self.source!r}, "
            f"prompt={len(self.system_prompt)} chars, hash={self.definition_hash[:12]})"
        )


class AgentRegistry:
    """The agents and workflows available to a session: immutable once loaded.

    Build one with :meth:`load`. Every lookup is a read of frozen data, so one registry can
    be shared by threads and tasks without locks.
    """

    __slots__ = ("_agents", "_disabled", "_sources", "_workflows")

    def __init__(
        self,
        agents: Mapping[str, AgentDefinition],
        workflows: Mapping[str, tuple[str, ...]] | None = None,
        *,
        sources: tuple[str, ...] = (),
        disabled: Mapping[str, ClaudeForceError] | None = None,
    ) -> None:
        """Raises :class:`AgentConfigError` when a name is invalid or a workflow names an
        agent that is not in ``agents``. ``disabled`` maps ``"agent NAME"`` or ``"workflow
        NAME"`` to why that entry of a configuration file was left out."""
        for name in agents:
            validate_agent_name(name)
        checked: dict[str, tuple[str, ...]] = {}
        for wf_name, members in (workflows or {}).items():
            validate_agent_name(wf_name, kind="workflow")
            missing = [m for m in members if m not in agents]
            if missing:
                raise AgentConfigError(
                    f"Workflow {wf_name!r} names unknown agent(s) "
                    f"{', '.join(_shown(m) for m in missing[:5])}. "
                    "Define them under 'agents' or remove them from the workflow."
                )
            checked[wf_name] = tuple(members)
        self._agents: Mapping[str, AgentDefinition] = MappingProxyType(dict(agents))
        self._workflows: Mapping[str, tuple[str, ...]] = MappingProxyType(checked)
        self._sources = tuple(sources)
        self._disabled: Mapping[str, ClaudeForceError] = MappingProxyType(dict(disabled or {}))

    @classmethod
    def load(
        cls,
        config_path: str | os.PathLike[str] | None = None,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> AgentRegistry:
        """Load the bundled agents, then the user's configuration found by :func:`discover_config`.

        User agents and workflows replace bundled ones of the same name. All agent files are
        read here, so later lookups never touch the disk. ``max_file_bytes`` bounds every
        file read from the user's configuration (agent files and ``claude.json``); its size
        is checked on the opened file before any byte is read.

        Raises :class:`AgentConfigError` when the user's ``claude.json`` itself is unusable
        (malformed JSON, wrong shape, oversized, not UTF-8). A bad entry in it (wrong field
        types, an invalid name, a missing, oversized, non-UTF-8 or empty file, a file that
        escapes the configuration directory, a workflow naming an agent that is not there)
        disables only itself: one warning names it, :attr:`disabled` keeps the error, and
        :meth:`get` / :meth:`workflow` raise it for that name. Every other agent stays usable.
        """
        if isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, int):
            raise AgentConfigError(f"max_file_bytes must be an int, got {max_file_bytes!r}.")
        if max_file_bytes <= 0:
            raise AgentConfigError(f"max_file_bytes must be positive, got {max_file_bytes}.")
        # The bundled files ship with the package; the limit guards the user's files.
        agents, workflows, _ = _load_config(
            _BUNDLED_CONFIG, BUNDLED_SOURCE, DEFAULT_MAX_FILE_BYTES, strict=True
        )
        sources = [BUNDLED_SOURCE]
        disabled: dict[str, ClaudeForceError] = {}
        user_path = discover_config(config_path)
        if user_path is not None:
            user_agents, user_workflows, disabled = _load_config(
                user_path, str(user_path), max_file_bytes, strict=False
            )
            agents.update(user_agents)
            workflows.update(user_workflows)
            sources.append(str(user_path))
            for key in [k for k in disabled if k.startswith("agent ")]:
                agents.pop(key.split(" ", 1)[1], None)  # a broken override hides the bundled one
            _drop_broken_workflows(workflows, agents, disabled, user_path)
        return cls(agents, workflows, sources=tuple(sources), disabled=disabled)

    # -- lookups --------------------------------------------------------------------------

    def get(self, name: str) -> AgentDefinition:
        """The agent called ``name``.

        Raises :class:`UnknownAgentError` with up to three close names in ``suggestions``
        (the message never lists every agent).
        """
        agent = self._agents.get(name) if isinstance(name, str) else None
        if agent is None:
            self._raise_disabled("agent", name)
            raise _unknown("agent", name, list(self._agents))
        return agent

    def workflow(self, name: str) -> tuple[str, ...]:
        """The agent names of workflow ``name``, in order.

        Raises :class:`UnknownAgentError` (its message says "workflow") with close names.
        """
        members = self._workflows.get(name) if isinstance(name, str) else None
        if members is None:
            self._raise_disabled("workflow", name)
            raise _unknown("workflow", name, list(self._workflows))
        return members

    def _raise_disabled(self, kind: str, name: object) -> None:
        error = self._disabled.get(f"{kind} {name}") if isinstance(name, str) else None
        if error is not None:
            raise type(error)(f"The {kind} {name!r} is disabled: {error}")

    @property
    def disabled(self) -> Mapping[str, ClaudeForceError]:
        """Entries of the configuration file that were left out, ``"agent NAME"`` or
        ``"workflow NAME"`` -> the error (each was reported by one warning at load)."""
        return self._disabled

    def names(self) -> list[str]:
        """All agent names, sorted."""
        return sorted(self._agents)

    @property
    def workflows(self) -> Mapping[str, tuple[str, ...]]:
        """Read-only mapping of workflow name to its agent names."""
        return self._workflows

    @property
    def sources(self) -> tuple[str, ...]:
        """Where the agents came from, in load order: ``"bundled"`` then the user's config path."""
        return self._sources

    def rows(self) -> list[dict[str, Any]]:
        """One row per agent (name, description, domains, priority, model, source), sorted by
        name, ready for ``pandas.DataFrame(registry.rows())``. ``domains`` is comma-joined."""
        return [
            {
                "name": a.name,
                "description": a.description,
                "domains": ", ".join(a.domains),
                "priority": a.priority,
                "model": a.model,
                "source": a.source,
            }
            for a in sorted(self._agents.values(), key=lambda a: a.name)
        ]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._agents

    def __len__(self) -> int:
        return len(self._agents)

    def __iter__(self) -> Iterator[AgentDefinition]:
        return iter([self._agents[n] for n in self.names()])

    def __repr__(self) -> str:
        return (
            f"AgentRegistry({len(self._agents)} agents, {len(self._workflows)} workflows, "
            f"sources={self._sources!r})"
        )


# -- discovery ----------------------------------------------------------------------------


def discover_config(config_path: str | os.PathLike[str] | None = None) -> Path | None:
    """The user's ``claude.json``, or ``None`` when only the bundled agents apply.

    Order: ``config_path`` (a file, or a ``.claude`` directory holding ``claude.json``), else
    ``$CLAUDE_FORCE_CONFIG``, else the nearest ``.claude/claude.json`` from the working
    directory upward, else ``~/.claude/claude.json``. An explicit path or environment value
    that does not exist raises :class:`AgentConfigError`. A discovered (not explicit) file
    owned by another user (other than root) is skipped with a warning: someone else could
    have planted it, for example in ``/tmp``.
    """
    if config_path is not None:
        return _explicit(Path(os.fspath(config_path)).expanduser(), "config_path")
    env = os.environ.get(FORCE_CONFIG_ENV)
    if env:
        return _explicit(Path(env).expanduser(), f"${FORCE_CONFIG_ENV}")
    for directory in _search_dirs():
        candidate = directory / _CONFIG_DIR_NAME / _CONFIG_NAME
        if _is_file(candidate) and _owned_by_user(candidate):
            return candidate.absolute()
    return None


def _is_file(path: Path) -> bool:
    """``path.is_file()``, but False (not PermissionError) for a path we may not look into,
    such as another user's private ``/tmp/.claude`` (Python < 3.13 re-raises EACCES)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _explicit(path: Path, origin: str) -> Path:
    with contextlib.suppress(OSError):
        if path.is_dir():
            path = path / _CONFIG_NAME
    if not _is_file(path):
        raise AgentConfigError(
            f"Agent configuration {path} (from {origin}) does not exist, is not a file or "
            "cannot be read. Point it at a claude.json, or unset it to use the discovered or "
            "bundled agents."
        )
    return path.absolute()


def _search_dirs() -> Iterator[Path]:
    """The working directory and its parents, then the home directory."""
    try:
        cwd = Path.cwd()
    except OSError:  # the working directory was deleted under us
        cwd = None
    if cwd is not None:
        yield cwd
        yield from cwd.parents
    try:
        yield Path.home()
    except (RuntimeError, KeyError):  # no home directory can be determined
        return


def _owned_by_user(path: Path) -> bool:
    if not hasattr(os, "getuid"):
        return True
    try:
        owner = path.stat().st_uid
    except OSError:
        return False
    if owner in (os.getuid(), 0):
        return True
    warnings.warn(
        f"Ignoring agent configuration {path}: it belongs to uid {owner}, not to you. "
        f"Set ${FORCE_CONFIG_ENV} to use it deliberately.",
        stacklevel=4,
    )
    return False


# -- reading ------------------------------------------------------------------------------


def _read_limited(path: Path, limit: int, *, what: str) -> bytes:
    """Read a regular file of at most ``limit`` bytes; the size is checked before reading.

    Opens with ``O_NOFOLLOW`` (the final component must not be a symlink: callers resolve
    first) and ``O_NONBLOCK`` (a FIFO cannot hang us), then checks ``fstat`` on the open
    descriptor, so the file checked is the file read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise AgentConfigError(f"{what} {path} does not exist.") from None
    except OSError as exc:
        raise UnsafePathError(
            f"Cannot open {what} {path}: {exc.strerror}. It must be a regular file "
            "(not a symlink swapped in after checking)."
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"Refusing {what} {path}: it is not a regular file.")
        if st.st_size > limit:
            raise AgentConfigError(
                f"{what} {path} is {st.st_size:,} bytes, over the {limit:,}-byte limit; "
                "shorten it or pass a larger max_file_bytes."
            )
        chunks: list[bytes] = []
        remaining = limit + 1  # one extra byte reveals a file that grew after fstat
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise AgentConfigError(
            f"{what} {path} grew past the {limit:,}-byte limit while being read; refusing it."
        )
    return data


def _decode(data: bytes, path: Path, *, what: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AgentConfigError(
            f"{what} {path} is not valid UTF-8 (byte {exc.start}). Save it as UTF-8."
        ) from None
    return text.removeprefix("\ufeff")


def _contained(root: Path, relative: object, agent: str) -> Path:
    """Resolve ``relative`` under ``root``; refuse anything that ends up outside it."""
    if not isinstance(relative, str) or not relative.strip():
        raise AgentConfigError(
            f"Agent {agent!r}: field 'file' must be a non-empty string path relative to {root}."
        )
    if "\x00" in relative:
        raise AgentConfigError(f"Agent {agent!r}: field 'file' contains a NUL character.")
    candidate = root / relative
    try:
        resolved = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise AgentConfigError(
            f"Agent {agent!r}: file {_shown(relative)} does not exist under {root}."
        ) from None
    except (OSError, RuntimeError) as exc:  # symlink loops and the like
        raise UnsafePathError(
            f"Agent {agent!r}: file {_shown(relative)} cannot be resolved safely: {exc}."
        ) from None
    if not resolved.is_relative_to(root):
        raise UnsafePathError(
            f"Agent {agent!r}: file {_shown(relative)} resolves to {resolved}, outside the "
            f"configuration directory {root}. Agent files (and symlinks to them) must stay "
            "inside it."
        )
    return resolved


def _load_config(
    path: Path, source: str, limit: int, *, strict: bool
) -> tuple[dict[str, AgentDefinition], dict[str, tuple[str, ...]], dict[str, ClaudeForceError]]:
    """Parse one ``claude.json`` and read the agent files it names.

    A problem with the file itself (unreadable, not JSON, wrong shape) raises. A problem with
    one entry raises when ``strict``; otherwise that entry is left out with one warning naming
    it, and returned under ``"agent NAME"`` / ``"workflow NAME"`` in the third mapping.
    """
    # The real file's directory is the root that agent files are relative to and must stay
    # inside, so a claude.json symlinked from a dotfiles repository keeps working.
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise AgentConfigError(f"Agent configuration {path} does not exist.") from None
    except (OSError, RuntimeError) as exc:
        raise UnsafePathError(f"Cannot resolve agent configuration {path}: {exc}.") from None
    data = _parse_json(_read_limited(real, limit, what="Agent configuration"), path)
    root = real.parent
    agents_raw = data.get("agents", {})
    if not isinstance(agents_raw, dict):
        raise AgentConfigError(f"{path}: 'agents' must be an object of name -> settings.")
    workflows_raw = data.get("workflows", {})
    if not isinstance(workflows_raw, dict):
        raise AgentConfigError(f"{path}: 'workflows' must be an object of name -> agent list.")
    agents: dict[str, AgentDefinition] = {}
    workflows: dict[str, tuple[str, ...]] = {}
    disabled: dict[str, ClaudeForceError] = {}
    for name, spec in agents_raw.items():
        try:
            agents[validate_agent_name(name)] = _agent(name, spec, root, source, limit)
        except (AgentConfigError, UnsafePathError) as exc:
            _disable(disabled, "agent", name, exc, path, strict=strict)
    for name, members in workflows_raw.items():
        try:
            workflows[validate_agent_name(name, kind="workflow")] = _workflow(name, members, path)
        except AgentConfigError as exc:
            _disable(disabled, "workflow", name, exc, path, strict=strict)
    return agents, workflows, disabled


def _disable(
    disabled: dict[str, ClaudeForceError],
    kind: str,
    name: object,
    error: ClaudeForceError,
    path: Path,
    *,
    strict: bool,
) -> None:
    """Record a bad entry and warn once naming it (or raise, for the bundled config)."""
    if strict:
        raise error
    disabled[f"{kind} {name}"] = error
    warnings.warn(
        f"Ignoring {kind} {_shown(name)} in {path}: {error} The other agents are available.",
        stacklevel=5,
    )


def _drop_broken_workflows(
    workflows: dict[str, tuple[str, ...]],
    agents: Mapping[str, AgentDefinition],
    disabled: dict[str, ClaudeForceError],
    path: Path,
) -> None:
    """Leave out (with one warning each) the workflows that name an agent that is not there."""
    for name, members in list(workflows.items()):
        missing = [m for m in members if m not in agents]
        if not missing:
            continue
        del workflows[name]
        reason = "is disabled" if f"agent {missing[0]}" in disabled else "is not defined"
        error = AgentConfigError(
            f"Workflow {name!r} names agent {missing[0]!r}, which {reason}. Define it under "
            "'agents' (or fix its entry) or remove it from the workflow."
        )
        _disable(disabled, "workflow", name, error, path, strict=False)


def _parse_json(raw: bytes, path: Path) -> dict[str, Any]:
    text = _decode(raw, path, what="Agent configuration")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AgentConfigError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except RecursionError:
        raise AgentConfigError(f"{path} is nested too deeply to be an agent config.") from None
    if not isinstance(data, dict):
        raise AgentConfigError(
            f"{path} must hold a JSON object with 'agents' (and optionally 'workflows'), "
            f"not a {type(data).__name__}."
        )
    return data


def _workflow(name: str, members: object, path: Path) -> tuple[str, ...]:
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise AgentConfigError(
            f"{path}: workflow {name!r} must be a non-empty list of agent names."
        )
    return tuple(validate_agent_name(m) for m in members)


def _agent(name: str, spec: object, root: Path, source: str, limit: int) -> AgentDefinition:
    if not isinstance(spec, dict):
        raise AgentConfigError(f"Agent {name!r} must be an object with at least a 'file' field.")
    file_path = _contained(root, spec.get("file"), name)
    prompt = _decode(
        _read_limited(file_path, limit, what=f"Agent {name!r} file"),
        file_path,
        what=f"Agent {name!r} file",
    )
    if not prompt.strip():
        raise AgentConfigError(f"Agent {name!r} file {file_path} is empty; write its prompt.")
    return AgentDefinition(
        name=name,
        description=_optional_str(spec, "description", name) or "",
        domains=_domains(spec, name),
        priority=_priority(spec, name),
        model=_model(spec, name),
        max_tokens=_max_tokens(spec, name),
        system_prompt=prompt,
        source=source,
        definition_hash=hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
    )


def _optional_str(spec: dict[str, Any], field: str, name: str) -> str | None:
    value = spec.get(field)
    if value is not None and not isinstance(value, str):
        raise AgentConfigError(
            f"Agent {name!r}: field {field!r} must be a string, got {type(value).__name__}."
        )
    return value


def _domains(spec: dict[str, Any], name: str) -> tuple[str, ...]:
    value = spec.get("domains", [])
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise AgentConfigError(
            f"Agent {name!r}: field 'domains' must be a list of strings, got {_shown(value)}."
        )
    return tuple(value)


def _priority(spec: dict[str, Any], name: str) -> int:
    value = spec.get("priority", 2)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AgentConfigError(
            f"Agent {name!r}: field 'priority' must be an integer (1 is highest), "
            f"got {_shown(value)}."
        )
    return value


def _model(spec: dict[str, Any], name: str) -> str | None:
    value = _optional_str(spec, "model", name)
    if value is not None and (
        not value
        or len(value) > _MAX_MODEL_ID
        or any(c.isspace() or not c.isprintable() for c in value)
    ):
        raise AgentConfigError(
            f"Agent {name!r}: field 'model' must be a model id such as 'claude-sonnet-5-5', "
            f"got {_shown(value)}."
        )
    return value


def _max_tokens(spec: dict[str, Any], name: str) -> int | None:
    value = spec.get("max_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AgentConfigError(
            f"Agent {name!r}: field 'max_tokens' must be a positive integer, got {_shown(value)}."
        )
    return value


def _unknown(kind: str, name: object, known: list[str]) -> UnknownAgentError:
    """An :class:`UnknownAgentError` with at most three close names, never the full list."""
    text = name if isinstance(name, str) else ""
    suggestions = tuple(
        difflib.get_close_matches(text[:100], known, n=_MAX_SUGGESTIONS, cutoff=0.6)
    )
    hint = ""
    if len(suggestions) == 1:
        hint = f" Did you mean {suggestions[0]!r}?"
    elif suggestions:
        hint = f" Did you mean one of {', '.join(repr(s) for s in suggestions)}?"
    listing = "registry.names()" if kind == "agent" else "registry.workflows"
    return UnknownAgentError(
        f"Unknown {kind} {_shown(name)}.{_non_ascii_note(name)}{hint} There are {len(known)} "
        f"{kind}s; see {listing} or `%agent list`.",
        name=text[:100],
        suggestions=suggestions,
    )
