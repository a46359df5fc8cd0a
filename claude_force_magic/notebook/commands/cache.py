"""``%agent cache``: the inspector, and commands to list, show, search, rank, export, delete,
clear and verify the response cache (no API key needed, except to refresh an entry).

In team mode (``AgentMagics.redis_url``) every action works on the team's Redis cache; the
inspector, which works on a disk cache, opens this kernel's own with ``--local``. While the
team's Redis cannot be reached, the actions say so in one line and work on the kernel's own."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..options import argument
from .registry import command, in_kernel, subcommand_args

if TYPE_CHECKING:
    from ...cache.redis import RedisResponseCache
    from ...cache.store import ResponseCache
    from ...engine.orchestrator import AsyncAgentOrchestrator
    from ...engine.team import TeamStore
    from ..magics import AgentMagics

    #: What the actions work on: the kernel's disk cache or the team's Redis cache.
    Store = ResponseCache | RedisResponseCache

__all__ = ["cache"]

_USAGE = (
    "Usage: %agent cache [--frame | -o VAR] | %agent cache clear [AGENT] | %agent cache verify | "
    "%agent cache show KEY | %agent cache search TEXT [--agent A] [--limit N] | "
    "%agent cache delete KEY... | %agent cache top [--by saved|hits|size] [--n 20] | "
    "%agent cache export FILE.jsonl [--force]  (--local: this kernel's own cache in team mode)"
)
#: How many words each action takes after its name: (fewest, most); None: no limit.
_WORDS: dict[str | None, tuple[int, int | None]] = {
    None: (0, 0),
    "clear": (0, 1),
    "verify": (0, 0),
    "show": (1, 1),
    "search": (1, None),
    "delete": (1, None),
    "top": (0, 0),
    "export": (1, 1),
}
_TOP = {"saved": "saved_usd", "hits": "hits", "size": "size_bytes"}


@command(
    "cache",
    ("cache", "the inspector: filter, sort, preview, delete, refresh, extend, export"),
    ("cache --frame | -o VAR", "the entries as a DataFrame (task preview, no answers)"),
    ("cache show KEY", "one entry's answer, rendered safely (KEY: 8+ first hex digits)"),
    ("cache search TEXT [--agent A]", "entries whose task or answer contains TEXT"),
    ("cache top [--by saved|hits|size]", "the entries that saved most, were hit most, are largest"),
    ("cache export FILE.jsonl [--force]", "every entry with its answer, as JSON lines"),
    ("cache delete KEY...", "remove entries by key"),
    ("cache clear [AGENT]", "remove all entries, or one agent's"),
    ("cache verify", "check every signature; tampered entries are removed"),
    ("cache --local ...", "team mode: the kernel's own disk cache, not the team's Redis"),
)
@subcommand_args("agent cache")
@argument(
    "action",
    nargs="?",
    metavar="show|search|top|export|delete|clear|verify",
    help="what to do (default: list the entries)",
)
@argument("words", nargs="*", metavar="ARG", help="the action's KEY(s), TEXT, FILE or AGENT")
@argument("--agent", dest="only_agent", metavar="A", help="with search: only this agent")
@argument("--limit", type=int, default=100, metavar="N", help="with search: at most N rows")
@argument("--by", default="saved", metavar="saved|hits|size", help="with top: the ranking")
@argument("--n", type=int, default=20, metavar="N", help="with top: how many rows")
@argument("--force", action="store_true", help="with export: replace an existing file")
@argument("--frame", action="store_true", help="the entries as a DataFrame, not the inspector")
@argument(
    "--local",
    action="store_true",
    help="in team mode: this kernel's own disk cache (and its inspector), not the team's",
)
@argument("-o", "--output", metavar="VAR", help="store the DataFrame (or result) in VAR")
def cache(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Open the cache inspector (in a terminal: the entries as a DataFrame); ``--frame`` or
    ``-o VAR`` give the DataFrame instead. The actions show, search, rank, export, delete,
    clear or verify entries."""
    action, words = args.action, list(args.words)
    _check_words(action, words)
    if args.output is not None and not _is_name(args.output):
        raise UsageError(f"-o needs a Python variable name, not {args.output!r}.")
    # Inspecting or clearing the cache needs no API key.
    orch = magics.session.orchestrator(require_key=False)
    store = _target(orch, action, args)
    from ...cache.store import ResponseCache
    from ...errors import CacheError

    if isinstance(store, ResponseCache):
        _say_read_only(store, action)
    try:
        if not isinstance(store, ResponseCache):
            if action is None and not (args.frame or args.output):
                _team_health(store)
        elif action is None and not (args.frame or args.output) and in_kernel(magics.shell):
            return _inspect(magics, store, refresh=orch.team is None)
        result = _run(store, action, words, args)
    except CacheError as exc:
        raise UsageError(f"%agent cache {action or ''}: {exc}") from None
    if args.output:
        magics.ip.user_ns[args.output] = result
        return None
    return result


def _say_read_only(store: ResponseCache, action: str | None) -> None:
    if store.read_only and action in (None, "show", "search", "top", "export"):
        print(f"(read-only: {store.directory} cannot be written; answers are served, not stored)")


def _target(orch: AsyncAgentOrchestrator, action: str | None, args: Any) -> Store:
    """The cache the command acts on: the kernel's disk cache, or in team mode the team's
    Redis cache (``--local``, or while Redis cannot be reached: the kernel's own)."""
    team = orch.team
    shared = None if team is None or orch.store is None else team.team_store
    if team is None or shared is None:
        if orch.cache is None:
            raise UsageError(
                orch.cache_problem
                or "The response cache is off (AgentMagics.enable_cache = False)."
            )
        return orch.cache
    if args.local:
        return _local(shared, "")
    from ...engine.team import TeamDown
    from ...errors import ClaudeForceError

    try:
        return team.link.call(lambda: _team_cache(shared), probe_now=True)
    except TeamDown:
        local = _local(shared, f"the team's Redis at {team.link.where} cannot be reached")
        print(
            f"(The team's Redis at {team.link.where} cannot be reached: this acts on the "
            f"kernel's own cache, {local.directory}, which cells use until Redis is back.)"
        )
        return local
    except ClaudeForceError as exc:  # a secret the namespace refuses, a bad setting...
        raise UsageError(f"%agent cache {action or ''}: {exc}") from None


def _team_cache(shared: TeamStore) -> RedisResponseCache:
    """The team's Redis cache, opened and checked with one round trip (raises when Redis
    cannot be reached, so the caller can fall back)."""
    from ...cache.redis import RedisResponseCache

    remote = shared.remote
    if not isinstance(remote, RedisResponseCache):
        raise UsageError(
            f"The team's cache is a {type(remote).__name__}, which %agent cache cannot inspect."
        )
    remote.get_stats()
    return remote


def _local(shared: TeamStore, why: str) -> ResponseCache:
    """The kernel's own disk cache beside the team's, or UsageError saying why there is none."""
    from ...cache.store import ResponseCache

    local = shared.local
    if not isinstance(local, ResponseCache):
        raise UsageError(
            (f"{why[0].upper()}{why[1:]}, and " if why else "")
            + "this kernel's own cache could not be opened (see the warning in the log; "
            "check AgentMagics.cache_dir and the cache secret)."
        )
    return local


def _team_health(store: RedisResponseCache) -> None:
    """Print the team cache's health in one line, and where the inspector is."""
    from ..inspector import team_health_parts, team_health_title

    stats = store.get_stats()
    print(f"{team_health_title(stats)}: " + " · ".join(team_health_parts(stats)))
    print(
        "(The interactive inspector works on this kernel's disk cache: %agent cache --local "
        "opens it; the table below is the team's.)"
    )


def _is_name(text: str) -> bool:
    import keyword

    return text.isidentifier() and not keyword.iskeyword(text)


def _inspect(magics: AgentMagics, store: ResponseCache, *, refresh: bool = True) -> None:
    """Open the inspector on ``store``; refresh re-runs through the session's orchestrator
    (not offered on the kernel's own cache in team mode: a new answer would go to the team's)."""
    from ..inspector import CacheInspector

    CacheInspector(
        store, refresh=(lambda entry: _refresh(magics, entry)) if refresh else None
    ).show()


def _refresh(magics: AgentMagics, entry: dict[str, Any]) -> str:
    """Re-run ``entry``'s task live (``refresh``: skip the lookup, replace the answer).

    Only an entry whose whole request can be rebuilt from what it keeps is re-run: its task
    preview must be the whole task, with no notebook data, no conversation history and the
    agent's current definition (checked by recomputing the key). Else UsageError says why and
    what to do instead.
    """
    from ...engine.request import PREVIEW_CHARS

    options = entry["options"]
    orch = magics.session.orchestrator()  # a live call: needs the API key (or simulate mode)
    agent = orch.registry.get(entry["agent_name"])
    stop = options.get("stop_sequences")
    request = {
        "definition_hash": agent.definition_hash,
        "max_tokens": options.get("max_tokens"),
        "stop_sequences": stop,
    }
    if (
        orch.cache is None
        or orch.cache.key_for(entry["agent_name"], entry["preview"], entry["model"], **request)
        != entry["key"]
    ):
        raise UsageError(_why_not_replayable(entry, agent.definition_hash, PREVIEW_CHARS))
    result = magics.session.run(
        orch.execute_agent(
            entry["agent_name"],
            entry["preview"],
            model=entry["model"],
            max_tokens=options.get("max_tokens"),
            stop_sequences=tuple(stop) if stop else None,
            refresh=True,
            screen_task=not str(entry["origin"]).startswith("notebook"),
            origin=entry["origin"] or None,
        )
    )
    magics.session.notify()
    if not result.success:
        return f"Refresh failed; the old answer is kept: {'; '.join(map(str, result.errors))}"
    cost = result.metadata.get("cost_usd")
    return f"Refreshed {entry['key'][:10]}: a new answer was stored" + (
        f" (cost ${cost:.4f})." if isinstance(cost, float) else "."
    )


def _why_not_replayable(entry: dict[str, Any], definition_hash: str, limit: int) -> str:
    options = entry["options"]
    where = entry["origin"] or "the code that stored it"
    if options.get("history_turns"):
        return "It is a turn of a conversation: continue the conversation instead."
    if options.get("definition_hash") not in (None, definition_hash):
        return (
            f"The agent {entry['agent_name']!r} was edited since: this entry is no longer used "
            "by any call. Delete it."
        )
    return (
        f"The cache keeps only the first {limit} characters of a task and never the notebook "
        f"data it used, so this request cannot be rebuilt: re-run {where} with --refresh."
    )


def _check_words(action: str | None, words: list[str]) -> None:
    if action not in _WORDS:
        raise UsageError(f"Unknown cache action {action!r}.\n{_USAGE}")
    fewest, most = _WORDS[action]
    if len(words) < fewest or (most is not None and len(words) > most):
        raise UsageError(_USAGE)


def _run(store: Store, action: str | None, words: list[str], args: Any) -> Any:
    from .. import frames

    if action is None:
        return frames.cache_frame(store.entries())
    if action == "show":
        return _show(store, words[0])
    if action == "search":
        if args.limit < 1:
            raise UsageError("%agent cache search: --limit must be at least 1.")
        found = store.search(" ".join(words), agent=args.only_agent, limit=args.limit)
        return frames.cache_frame(found)
    if action == "top":
        return _top(store, args.by, args.n)
    if action == "export":
        written = store.export(words[0], force=args.force)
        print(f"Wrote {written} cache entr{'y' if written == 1 else 'ies'} to {words[0]}.")
        return None
    if action == "delete":
        return _delete(store, words)
    if action == "clear":
        removed = store.clear(words[0] if words else None)
        print(f"Removed {removed} cache entr{'y' if removed == 1 else 'ies'}.")
        return None
    return store.verify()


def _entry(store: Store, key: str) -> dict[str, Any]:
    from ...errors import IntegrityError

    try:
        found = store.entry(key)
    except IntegrityError as exc:
        raise UsageError(str(exc)) from None
    if found is None:
        raise UsageError(f"No cache entry has the key {key!r} (see %agent cache for the keys).")
    return found


def _show(store: Store, key: str) -> Any:
    """Render one entry's answer through the safe path and return it as an AgentResult."""
    from ...engine.result import AgentResult, empty_metadata
    from ..display import AgentOutput, show

    found = _entry(store, key)
    stored = found["metadata"]
    metadata = empty_metadata(found["model"])
    for name in ("stop_reason", "request_id", "truncated", "warnings"):
        if name in stored:
            metadata[name] = stored[name]
    metadata.update(
        input_tokens=found["input_tokens"],
        output_tokens=found["output_tokens"],
        cost_usd=0.0,
        saved_usd=found["estimated_cost"],
        cached=True,
        cache_age_s=found["age_seconds"],
    )
    show(AgentOutput(label=found["agent_name"], text=found["response"], footer=_footer(found)))
    return AgentResult(found["agent_name"], True, found["response"], [], metadata)


def _footer(found: dict[str, Any]) -> str:
    from ...pricing import format_usd

    parts = [
        f"cache entry {found['key'][:12]}",
        str(found["model"]),
        f"stored by {found['origin'] or 'an older version'}",
        f"{found['hits']} hit{'' if found['hits'] == 1 else 's'}",
        f"cost {format_usd(found['estimated_cost'])} when bought",
    ]
    if found["preview"]:
        parts.append(f"task: {found['preview'][:80]}")
    return " · ".join(parts)


def _top(store: Store, by: str, n: int) -> Any:
    from .. import frames

    if by not in _TOP:
        raise UsageError(f"%agent cache top: --by must be saved, hits or size, not {by!r}.")
    if n < 1:
        raise UsageError("%agent cache top: --n must be at least 1.")
    rows = [{**e, "saved_usd": e["hits"] * e["estimated_cost"]} for e in store.entries()]
    rows.sort(key=lambda e: e[_TOP[by]], reverse=True)
    return frames.cache_frame(rows[:n], extra=("saved_usd",))


def _delete(store: Store, keys: list[str]) -> None:
    # Every key is resolved before anything is removed: a typo deletes nothing.
    full = []
    for key in keys:
        resolved = store.resolve_key(key)
        if resolved is None:
            raise UsageError(f"No cache entry has the key {key!r}; nothing was deleted.")
        full.append(resolved)
    removed = sum(store.delete_key(key) for key in dict.fromkeys(full))
    print(f"Deleted {removed} cache entr{'y' if removed == 1 else 'ies'}.")
