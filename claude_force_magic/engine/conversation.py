"""``Conversation``: several turns with one agent, each a call through the orchestrator's pipeline.

A conversation keeps the history (the user turns as they were sent and the agent's answers)
and sends it before every new task. It is built on the orchestrator's pieces, not beside
them: each turn is prepared by the same :class:`~.request.RequestBuilder` (with ``history``)
and run by the same :class:`~.pipeline.CallPipeline`, so budget, rate limits, retries, the
deadline, the injection screen, metrics and the response cache apply to every turn exactly as
to :meth:`~.orchestrator.AsyncAgentOrchestrator.execute_agent`. The response cache serves a
turn only for the exact same history, agent, model and options (the history is part of the
key). Prompt caching (:mod:`.prompt_cache`) marks the agent definition and the last history
turn, so each turn pays the input price only for what is new.

A turn joins the history only when it succeeded. A failed, refused or cancelled turn leaves
the history exactly as it was before (what it cost is still in :attr:`Conversation.usage`,
the budget and the metrics). One turn runs at a time: a second :meth:`Conversation.send`
while one is in flight raises :class:`~..errors.ConfigurationError` (:meth:`~Conversation.fork`
to ask two things at once).

>>> # async with AsyncAgentOrchestrator() as orch:
>>> #     conv = orch.conversation("python-expert")
>>> #     first = await conv.send("Write a function that parses ISO dates.")
>>> #     second = await conv.send("Now add tests for the edge cases.")
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, InvalidTaskError
from .request import CallOptions

if TYPE_CHECKING:
    from .orchestrator import AsyncAgentOrchestrator
    from .pipeline import OnCancelled
    from .result import AgentResult

__all__ = ["Conversation", "ConversationUsage", "Turn", "check_messages"]

_STOP = object()
#: The most turns :meth:`Conversation.from_messages` accepts (user + assistant pairs).
MAX_LOADED_TURNS = 1000


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation.

    ``task`` is what was asked (the caller's text; for a loaded conversation, the user turn),
    ``user`` the user turn as it was sent (untrusted values wrapped as data), ``answer`` the
    agent's text and ``metadata`` that call's :attr:`AgentResult.metadata` (empty for loaded
    turns).
    """

    task: str
    user: str
    answer: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ConversationUsage:
    """What the calls of one conversation used and cost, failed and cancelled turns included.

    ``cost_usd`` sums the known costs (``unknown_cost_turns`` counts calls of an unpriced
    model); ``prompt_cache_saved_usd`` is what prompt caching saved (cache tokens priced as
    plain input minus what they cost), ``saved_usd`` what response-cache hits saved: two
    different savings, kept apart.
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    cost_usd: float = 0.0
    unknown_cost_turns: int = 0
    prompt_cache_saved_usd: float = 0.0
    saved_usd: float = 0.0

    def add(self, metadata: Mapping[str, Any]) -> None:
        """Add one call's metadata."""
        self.calls += 1
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_5m_input_tokens",
            "cache_creation_1h_input_tokens",
        ):
            setattr(self, name, getattr(self, name) + int(metadata.get(name) or 0))
        cost = metadata.get("cost_usd")
        if cost is None:
            self.unknown_cost_turns += 1
        else:
            self.cost_usd += float(cost)
        self.prompt_cache_saved_usd += float(metadata.get("prompt_cache_saved_usd") or 0.0)
        self.saved_usd += float(metadata.get("saved_usd") or 0.0)


class Conversation:
    """A conversation with one agent (see the module docstring). Build one with
    :meth:`AsyncAgentOrchestrator.conversation` or :meth:`from_messages`.

    ``options`` are the default call options of every turn (``send(..., **options)``
    overrides them for one turn). Not thread-safe: use it from the orchestrator's event loop.
    """

    def __init__(
        self,
        orchestrator: AsyncAgentOrchestrator,
        agent_name: str,
        options: CallOptions | None = None,
        *,
        turns: Iterable[Turn] = (),
    ) -> None:
        orchestrator.registry.get(agent_name)  # UnknownAgentError now, not at the first turn
        self._orch = orchestrator
        self._agent = agent_name
        self._options = options or CallOptions()
        self._turns: list[Turn] = list(turns)
        self._usage = ConversationUsage()
        self._busy = False
        self.last_result: AgentResult | None = None

    def __repr__(self) -> str:
        return (
            f"Conversation(agent={self._agent!r}, turns={len(self._turns)}, "
            f"cost_usd={self._usage.cost_usd:.4f})"
        )

    # -- what it holds ------------------------------------------------------------------------

    @property
    def agent_name(self) -> str:
        """The agent every turn asks."""
        return self._agent

    @property
    def options(self) -> CallOptions:
        """The default options of every turn."""
        return self._options

    @property
    def model(self) -> str:
        """The model the next turn uses unless it passes ``model=``."""
        agent = self._orch.registry.get(self._agent)
        return self._options.model or agent.model or self._orch.model

    @property
    def messages(self) -> list[dict[str, str]]:
        """A copy of the history as Messages API dicts (``{"role", "content"}``, oldest
        first, user and assistant alternating). Changing it changes nothing here."""
        history: list[dict[str, str]] = []
        for turn in self._turns:
            history.append({"role": "user", "content": turn.user})
            history.append({"role": "assistant", "content": turn.answer})
        return history

    @property
    def turns(self) -> tuple[Turn, ...]:
        """The turns of the history, oldest first (``len(conv.turns)`` counts them)."""
        return tuple(self._turns)

    @property
    def usage(self) -> ConversationUsage:
        """Tokens, cost and savings of every call this conversation made since it was built
        or :meth:`reset` (a copy)."""
        return ConversationUsage(**vars(self._usage))

    # -- changing the history -----------------------------------------------------------------

    def fork(self) -> Conversation:
        """A new conversation with the same agent, options and history; the two go on
        separately. Its :attr:`usage` starts at zero (it has made no call yet)."""
        return Conversation(self._orch, self._agent, self._options, turns=self._turns)

    def reset(self) -> None:
        """Forget the history and the usage (the money spent stays spent: budget, metrics)."""
        self._check_idle("reset")
        self._turns.clear()
        self._usage = ConversationUsage()
        self.last_result = None

    def truncate(self, turns: int) -> None:
        """Keep the first ``turns`` turns and drop the later ones (re-asking turn ``turns +
        1`` differently). Raises :class:`ConfigurationError` for a negative count."""
        self._check_idle("truncate")
        if isinstance(turns, bool) or not isinstance(turns, int) or turns < 0:
            raise ConfigurationError(f"truncate() needs a turn count >= 0, got {turns!r}.")
        del self._turns[turns:]

    # -- turns ----------------------------------------------------------------------------------

    async def send(
        self,
        task: str,
        *,
        on_text: Callable[[str], None] | None = None,
        on_cancelled: OnCancelled | None = None,
        **options: Any,
    ) -> AgentResult:
        """Ask the next turn and return its :class:`AgentResult`; on success the turn joins
        the history. ``options`` override the conversation's for this turn (see
        :meth:`AsyncAgentOrchestrator.execute_agent`); ``on_text`` receives the answer as it
        streams. Raises what ``execute_agent`` raises, before anything is sent (the history
        is untouched), and :class:`ConfigurationError` while another turn is in flight.
        Failures of the call come back as ``success=False``; cancelling the awaiting task
        propagates after ``on_cancelled`` got the settled partial result. Either way the
        history stays as it was.
        """
        self._check_idle("send")
        turn_options = self._options.replace(**options) if options else self._options
        self._busy = True
        try:
            call = self._orch._prepare(self._agent, task, turn_options, self.messages)
            user = call.params["messages"][-1]["content"]
            result = await self._orch._execute(
                call, on_text=on_text, on_cancelled=self._counting(on_cancelled)
            )
        finally:
            self._busy = False
        self._usage.add(result.metadata)
        self.last_result = result
        if result.success:
            self._turns.append(Turn(task, user, result.output, dict(result.metadata)))
        return result

    async def stream(self, task: str, **options: Any) -> AsyncIterator[str | AgentResult]:
        """Yield the answer's text pieces as they arrive, then exactly one
        :class:`AgentResult`, as :meth:`AsyncAgentOrchestrator.stream_agent` does; the turn
        joins the history as with :meth:`send`. Closing the generator early cancels the
        turn (the history stays as it was)."""
        queue: asyncio.Queue[object] = asyncio.Queue()
        sending = asyncio.ensure_future(self.send(task, on_text=queue.put_nowait, **options))
        sending.add_done_callback(lambda _t: queue.put_nowait(_STOP))
        try:
            while True:
                item = await queue.get()
                if item is _STOP:
                    break
                yield str(item)
            yield sending.result()
        finally:
            if not sending.done():
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)

    def _counting(self, on_cancelled: OnCancelled | None) -> OnCancelled:
        """``on_cancelled`` that first adds the cancelled call's spend to :attr:`usage`."""

        def settled(result: AgentResult) -> None:
            self._usage.add(result.metadata)
            if on_cancelled is not None:
                on_cancelled(result)

        return settled

    def _check_idle(self, what: str) -> None:
        if self._busy:
            raise ConfigurationError(
                f"Conversation.{what}() while a turn is in flight: await that turn first, or "
                "fork() the conversation to ask something else at the same time."
            )

    # -- from saved messages --------------------------------------------------------------------

    @classmethod
    def from_messages(
        cls,
        orchestrator: AsyncAgentOrchestrator,
        agent_name: str,
        messages: Iterable[Mapping[str, Any]],
        *,
        injection_policy: str | None = None,
        **options: Any,
    ) -> Conversation:
        """A conversation that continues ``messages`` (Messages API dicts, oldest first:
        user and assistant alternating, starting with a user turn and ending with an
        assistant turn; ``content`` a non-empty string or a list of text blocks).

        Raises :class:`InvalidTaskError` naming the first bad item (``messages[3]``) and what
        is wrong with it. ``injection_policy`` (``block``/``warn``/``off``; None: no screen)
        screens every turn as untrusted data first, as a saved file should be: ``block``
        raises :class:`PromptInjectionError` naming the flagged turns. ``options`` are the
        conversation's call options.
        """
        pairs = check_messages(list(messages) if not isinstance(messages, list) else messages)
        if injection_policy is not None:
            from ..guard import screen_untrusted

            screen_untrusted(
                {f"messages[{i}]": text for i, text in enumerate(_flatten(pairs))},
                injection_policy,
            )
        turns = [Turn(task=user, user=user, answer=answer) for user, answer in pairs]
        return cls(orchestrator, agent_name, CallOptions.from_kwargs(**options), turns=turns)


def _flatten(pairs: list[tuple[str, str]]) -> list[str]:
    return [text for pair in pairs for text in pair]


def _content_text(content: Any, where: str) -> str:
    """The text of one message's content (a string or a list of text blocks)."""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list) and content:
        parts = []
        for j, block in enumerate(content):
            if (
                not isinstance(block, Mapping)
                or block.get("type") != "text"
                or not isinstance(block.get("text"), str)
            ):
                raise InvalidTaskError(
                    f"{where}.content[{j}] must be a text block {{'type': 'text', 'text': ...}}"
                    f"; got {_shown(block)}. Only text conversations can be continued."
                )
            parts.append(block["text"])
        text = "".join(parts)
    else:
        raise InvalidTaskError(
            f"{where}.content must be a string or a list of text blocks, got {_shown(content)}."
        )
    if not text.strip():
        raise InvalidTaskError(f"{where}.content is empty; every turn needs text.")
    return text


def check_messages(messages: Any) -> list[tuple[str, str]]:
    """``messages`` (a list of Messages API dicts, see :meth:`Conversation.from_messages`) as
    (user, assistant) text pairs; :class:`InvalidTaskError` naming the bad item otherwise."""
    if not isinstance(messages, list):
        raise InvalidTaskError(f"messages must be a list of dicts, got {_shown(messages)}.")
    if len(messages) > 2 * MAX_LOADED_TURNS:
        raise InvalidTaskError(
            f"messages holds {len(messages)} items; at most {2 * MAX_LOADED_TURNS} "
            f"({MAX_LOADED_TURNS} turns) can be continued."
        )
    texts: list[str] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(message, Mapping):
            raise InvalidTaskError(f"{where} must be a dict with 'role' and 'content'.")
        extra = sorted(set(message) - {"role", "content"})
        if extra or "role" not in message or "content" not in message:
            raise InvalidTaskError(
                f"{where} must have exactly 'role' and 'content' (got keys "
                f"{sorted(map(str, message))})."
            )
        if message["role"] != expected:
            raise InvalidTaskError(
                f"{where} must be a {expected!r} turn (turns alternate user/assistant, "
                f"starting with user), got role {_shown(message['role'])}."
            )
        texts.append(_content_text(message["content"], where))
    if len(texts) % 2:
        raise InvalidTaskError(
            f"messages[{len(texts) - 1}] is a user turn without an answer: a conversation to "
            "continue ends with an assistant turn (send that task with send() instead)."
        )
    return list(zip(texts[::2], texts[1::2], strict=True))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
