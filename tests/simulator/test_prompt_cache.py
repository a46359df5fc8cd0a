"""Prompt caching in the simulator, driven by the real anthropic SDK over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from claude_force_magic.simulator import Fault, Simulator, estimate_tokens

from .helpers import MODEL, FakeClock

BIG = "The quick brown fox jumps over the lazy dog near the riverbank. " * 80  # 1280 tokens
OTHER = "Pack my box with five dozen liquor jugs, said the sphinx of black quartz. " * 70
QUESTION = "Summarise the text above in one line"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def csim(clock: FakeClock) -> Iterator[Simulator]:
    with Simulator(clock=clock) as running:
        yield running


@pytest.fixture
def cclient(csim: Simulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="sk-one", base_url=csim.base_url, max_retries=0) as c:
        yield c


def block(text: str, ttl: str | None = None) -> dict[str, Any]:
    """A text block, with a cache breakpoint if ``ttl`` is given."""
    out: dict[str, Any] = {"type": "text", "text": text}
    if ttl is not None:
        out["cache_control"] = {"type": "ephemeral", "ttl": ttl}
    return out


def cached_system(text: str = BIG, ttl: str = "5m", **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 64,
        "system": [block(text, ttl)],
        "messages": [{"role": "user", "content": QUESTION}],
    }
    kwargs.update(overrides)
    return kwargs


def usage_of(client: anthropic.Anthropic, **kwargs: Any) -> Any:
    return client.messages.create(**kwargs).usage


def total_input(client: anthropic.Anthropic, **kwargs: Any) -> int:
    """What count_tokens says the request's whole input is."""
    kwargs.pop("max_tokens", None)
    return client.messages.count_tokens(**kwargs).input_tokens


# ---------------------------------------------------------------- write, read, accounting


def test_first_request_writes_and_the_second_reads(cclient: anthropic.Anthropic) -> None:
    request = cached_system()
    first = usage_of(cclient, **request)
    second = usage_of(cclient, **request)
    prefix = estimate_tokens(BIG)
    assert first.cache_creation_input_tokens == prefix
    assert first.cache_creation.ephemeral_5m_input_tokens == prefix
    assert first.cache_creation.ephemeral_1h_input_tokens == 0
    assert first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == prefix
    assert second.cache_creation_input_tokens == 0
    # Cached and uncached tokens always add up to the request's input token count.
    whole = total_input(cclient, **request)
    for usage in (first, second):
        assert usage.input_tokens == whole - prefix == estimate_tokens(QUESTION)
        assert (
            usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
            == whole
        )


def test_requests_without_breakpoints_are_untouched(
    csim: Simulator, cclient: anthropic.Anthropic
) -> None:
    request = cached_system()
    request["system"] = [block(BIG)]
    for _ in range(2):
        usage = usage_of(cclient, **request)
        assert usage.cache_read_input_tokens == usage.cache_creation_input_tokens == 0
        assert usage.input_tokens == total_input(cclient, **request)
    assert csim.prompt_cache == []
    assert csim.stats["prompt_cache"]["misses"] == 0


def test_1h_and_5m_writes_are_split_by_each_breakpoints_ttl(cclient: anthropic.Anthropic) -> None:
    turn = {"role": "user", "content": [block(OTHER, "5m"), block(QUESTION)]}
    request = cached_system(ttl="1h", messages=[turn])
    first = usage_of(cclient, **request)
    assert first.cache_creation.ephemeral_1h_input_tokens == estimate_tokens(BIG)
    assert first.cache_creation.ephemeral_5m_input_tokens == estimate_tokens(OTHER)
    assert first.cache_creation_input_tokens == estimate_tokens(BIG) + estimate_tokens(OTHER)
    assert first.input_tokens == estimate_tokens(QUESTION)

    # Same system, a different message: the 1h system prefix is read, the new message written.
    changed = {"role": "user", "content": [block(OTHER + " Again.", "5m"), block(QUESTION)]}
    second = usage_of(cclient, **cached_system(ttl="1h", messages=[changed]))
    assert second.cache_read_input_tokens == estimate_tokens(BIG)
    assert second.cache_creation.ephemeral_5m_input_tokens == estimate_tokens(OTHER + " Again.")
    assert second.cache_creation.ephemeral_1h_input_tokens == 0


def test_the_longest_cached_prefix_is_read(csim: Simulator, cclient: anthropic.Anthropic) -> None:
    first_turn = [
        {"role": "user", "content": [block(OTHER, "5m")]},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": [block(QUESTION, "5m")]},
    ]
    usage_of(cclient, **cached_system(messages=first_turn))
    assert sorted(e["ends_at"] for e in csim.prompt_cache) == [
        "messages.0.content.0",
        "messages.2.content.0",
        "system.0",
    ]
    again = usage_of(cclient, **cached_system(messages=first_turn))
    whole = estimate_tokens(BIG) + estimate_tokens(OTHER) + 2 + estimate_tokens(QUESTION)
    assert again.cache_read_input_tokens == whole
    assert again.input_tokens == 0
    # A conversation that shares only system + first message reads that and writes its tail.
    follow_up = [*first_turn[:2], {"role": "user", "content": [block("And now in French?", "5m")]}]
    usage = usage_of(cclient, **cached_system(messages=follow_up))
    shared = estimate_tokens(BIG) + estimate_tokens(OTHER)
    assert usage.cache_read_input_tokens == shared
    assert usage.cache_creation_input_tokens == 2 + estimate_tokens("And now in French?")


def test_a_string_system_prompt_is_part_of_the_prefix(
    cclient: anthropic.Anthropic,
) -> None:
    # A breakpoint on the question block caches system + question as one prefix.
    request = cached_system(
        system=BIG, messages=[{"role": "user", "content": [block(QUESTION, "5m")]}]
    )
    first = usage_of(cclient, **request)
    assert first.cache_creation_input_tokens == estimate_tokens(BIG) + estimate_tokens(QUESTION)
    assert usage_of(cclient, **request).cache_read_input_tokens == (
        first.cache_creation_input_tokens
    )


def conversation(*turns: Any) -> dict[str, Any]:
    """Request kwargs with no system prompt and these messages (user first, alternating)."""
    roles = ("user", "assistant")
    messages = [{"role": roles[n % 2], "content": c} for n, c in enumerate(turns)]
    return {"model": MODEL, "max_tokens": 64, "messages": messages}


def test_moving_the_breakpoint_to_the_newest_turn_still_reads_the_old_prefix(
    csim: Simulator, cclient: anthropic.Anthropic
) -> None:
    usage_of(cclient, **conversation([block(BIG, "5m")]))
    # Turn 2: the old breakpoint is gone; the new one looks back and finds the cached prefix.
    usage = usage_of(cclient, **conversation([block(BIG)], "Noted.", [block(QUESTION, "5m")]))
    assert usage.cache_read_input_tokens == estimate_tokens(BIG)
    assert usage.cache_creation_input_tokens == 2 + estimate_tokens(QUESTION)
    assert usage.input_tokens == 0


@pytest.mark.parametrize(("blocks", "hit"), [(18, True), (19, False)])
def test_the_lookback_reaches_20_blocks(
    cclient: anthropic.Anthropic, blocks: int, hit: bool
) -> None:
    usage_of(cclient, **conversation([block(BIG, "5m")]))
    tail = [block(f"Part {n}.") for n in range(blocks - 1)] + [block(QUESTION, "5m")]
    # The window is the breakpoint's block, the tail before it and the assistant turn: with 18
    # tail blocks the cached block is the 20th looked at, with 19 it is the 21st.
    usage = usage_of(cclient, **conversation([block(BIG)], "Noted.", tail))
    assert (usage.cache_read_input_tokens == estimate_tokens(BIG)) is hit
    assert (usage.cache_read_input_tokens == 0) is not hit


def test_a_lookback_hit_still_writes_the_breakpoints_after_it(
    csim: Simulator, cclient: anthropic.Anthropic
) -> None:
    usage_of(cclient, **conversation([block(BIG, "5m")]))
    request = conversation([block(BIG), block(OTHER, "5m")], "Noted.", [block(QUESTION, "5m")])
    usage = usage_of(cclient, **request)
    assert usage.cache_read_input_tokens == estimate_tokens(BIG)
    assert usage.cache_creation_input_tokens == (
        estimate_tokens(OTHER) + 2 + estimate_tokens(QUESTION)
    )
    assert sorted(e["ends_at"] for e in csim.prompt_cache) == [
        "messages.0.content.0",
        "messages.0.content.1",
        "messages.2.content.0",
    ]


# ---------------------------------------------------------------- minimum length


def test_a_prefix_below_the_minimum_is_not_cached(
    csim: Simulator, cclient: anthropic.Anthropic
) -> None:
    short = "A short system prompt. " * 20  # 115 tokens, under the 1024 default
    request = cached_system(text=short)
    for _ in range(2):
        usage = usage_of(cclient, **request)
        assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0
        assert usage.input_tokens == total_input(cclient, **request)
    assert csim.prompt_cache == []


def test_a_short_breakpoint_is_folded_into_the_next_one(cclient: anthropic.Anthropic) -> None:
    short = "Be brief."
    turn = {"role": "user", "content": [block(BIG, "5m"), block(QUESTION)]}
    usage = usage_of(cclient, **cached_system(text=short, messages=[turn]))
    # The system prefix alone is too short to cache; its tokens are written with the next one.
    assert usage.cache_creation_input_tokens == estimate_tokens(short) + estimate_tokens(BIG)


def test_the_minimum_is_per_model_and_configurable(
    csim: Simulator, cclient: anthropic.Anthropic
) -> None:
    # 1280 tokens: enough for the 1024 default, not for haiku-4-5's documented 4096.
    assert usage_of(cclient, **cached_system()).cache_creation_input_tokens > 0
    haiku = cached_system(model="claude-haiku-4-5-20251001")
    assert usage_of(cclient, **haiku).cache_creation_input_tokens == 0
    csim.configure(prompt_cache_min_tokens={"claude-haiku-4-5": 1000, "*": 5000})
    assert usage_of(cclient, **haiku).cache_creation_input_tokens == estimate_tokens(BIG)
    other = cached_system(model="claude-opus-5")
    assert usage_of(cclient, **other).cache_creation_input_tokens == 0


def test_a_bad_minimum_table_is_refused() -> None:
    with pytest.raises(ValueError, match="prompt_cache_min_tokens"):
        Simulator(prompt_cache_min_tokens={"claude": -1})


# ---------------------------------------------------------------- refused requests


def test_more_than_four_breakpoints_are_refused(
    csim: Simulator, cclient: anthropic.Anthropic
) -> None:
    system = [block(f"Rule {n}: {BIG}", "5m") for n in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4 blocks") as err:
        cclient.messages.create(**cached_system(system=system))
    assert "Found 5" in str(err.value)
    assert csim.prompt_cache == []
    four = cached_system(system=system[:4])
    assert usage_of(cclient, **four).cache_creation_input_tokens > 0


def test_a_1h_breakpoint_after_a_5m_one_is_refused(
    csim: Simulator, cclient: anthropic.Anthropic
) -> None:
    turn = {"role": "user", "content": [block(OTHER, "1h"), block(QUESTION)]}
    with pytest.raises(anthropic.BadRequestError, match=r"ttl='1h'.*must not come after"):
        cclient.messages.create(**cached_system(ttl="5m", messages=[turn]))
    assert csim.prompt_cache == []
    reverse = {"role": "user", "content": [block(OTHER, "5m"), block(QUESTION)]}
    assert usage_of(cclient, **cached_system(ttl="1h", messages=[reverse])).cache_creation


@pytest.mark.parametrize(
    ("control", "message"),
    [
        ({"type": "persistent"}, "cache_control.type: must be 'ephemeral'"),
        ({"type": "ephemeral", "ttl": "10m"}, "cache_control.ttl: must be '5m' or '1h'"),
        ({"type": "ephemeral", "scope": "global"}, "cache_control.scope: Extra inputs"),
    ],
)
def test_a_malformed_cache_control_is_refused(
    cclient: anthropic.Anthropic, control: dict[str, Any], message: str
) -> None:
    request = cached_system()
    request["system"][0]["cache_control"] = control
    with pytest.raises(anthropic.BadRequestError, match=message):
        cclient.messages.create(**request)


def test_a_failed_request_does_not_touch_the_cache(
    csim: Simulator, cclient: anthropic.Anthropic
) -> None:
    csim.set_script([Fault.OVERLOADED, Fault.RATE_LIMIT])
    for _ in range(2):
        with pytest.raises(anthropic.APIStatusError):
            cclient.messages.create(**cached_system())
    assert csim.prompt_cache == []
    assert usage_of(cclient, **cached_system()).cache_creation_input_tokens > 0


# ---------------------------------------------------------------- TTL and the clock


def test_entries_expire_after_their_ttl_and_reads_refresh_them(
    clock: FakeClock, csim: Simulator, cclient: anthropic.Anthropic
) -> None:
    request = cached_system()
    usage_of(cclient, **request)
    (entry,) = csim.prompt_cache
    assert entry["ttl"] == "5m"
    assert entry["expires_in"] == pytest.approx(300)
    clock.now += 299
    assert usage_of(cclient, **request).cache_read_input_tokens > 0  # refreshed to +300
    clock.now += 299
    assert usage_of(cclient, **request).cache_read_input_tokens > 0
    clock.now += 300
    assert csim.prompt_cache == []
    late = usage_of(cclient, **request)
    assert late.cache_read_input_tokens == 0
    assert late.cache_creation_input_tokens == estimate_tokens(BIG)


def test_a_1h_entry_outlives_a_5m_one(
    clock: FakeClock, csim: Simulator, cclient: anthropic.Anthropic
) -> None:
    usage_of(cclient, **cached_system(ttl="1h"))
    usage_of(cclient, **cached_system(text=OTHER, ttl="5m"))
    clock.now += 1800
    assert [e["ttl"] for e in csim.prompt_cache] == ["1h"]
    assert usage_of(cclient, **cached_system(ttl="1h")).cache_read_input_tokens > 0
    assert usage_of(cclient, **cached_system(text=OTHER)).cache_read_input_tokens == 0


# ---------------------------------------------------------------- isolation and inspection


def test_entries_are_per_api_key_and_model(csim: Simulator, cclient: anthropic.Anthropic) -> None:
    usage_of(cclient, **cached_system())
    with anthropic.Anthropic(api_key="sk-two", base_url=csim.base_url, max_retries=0) as other:
        assert usage_of(other, **cached_system()).cache_read_input_tokens == 0
    assert usage_of(cclient, **cached_system(model="claude-opus-5")).cache_read_input_tokens == 0
    assert usage_of(cclient, **cached_system()).cache_read_input_tokens > 0
    keys = {e["api_key_sha256"] for e in csim.prompt_cache}
    assert len(keys) == 2
    assert all("sk-" not in key for key in keys)


def test_inspection_stats_and_clear(csim: Simulator, cclient: anthropic.Anthropic) -> None:
    request = cached_system()
    usage_of(cclient, **request)
    usage_of(cclient, **request)
    (entry,) = csim.prompt_cache
    assert entry["model"] == MODEL
    assert entry["ends_at"] == "system.0"
    assert entry["tokens"] == estimate_tokens(BIG)
    assert entry["reads"] == 1
    stats = csim.stats["prompt_cache"]
    assert stats == {
        "hits": 1,
        "misses": 1,
        "writes": 1,
        "read_tokens": estimate_tokens(BIG),
        "written_tokens": estimate_tokens(BIG),
    }
    csim.clear_prompt_cache()
    assert csim.prompt_cache == []
    assert csim.stats["prompt_cache"]["hits"] == 0
    assert usage_of(cclient, **request).cache_read_input_tokens == 0


# ---------------------------------------------------------------- streaming


def test_streaming_message_start_reports_the_same_usage(cclient: anthropic.Anthropic) -> None:
    request = cached_system()
    plain = usage_of(cclient, **request)  # writes
    with cclient.messages.stream(**request) as stream:
        events = list(stream)
        final = stream.get_final_message()
    start = next(e for e in events if e.type == "message_start")
    assert start.message.usage.cache_read_input_tokens == plain.cache_creation_input_tokens
    assert start.message.usage.input_tokens == plain.input_tokens
    assert final.usage.cache_read_input_tokens == plain.cache_creation_input_tokens
    assert final.usage.cache_creation_input_tokens == 0


async def test_async_client_sees_the_cache(clock: FakeClock) -> None:
    async with (
        Simulator(clock=clock) as sim,
        anthropic.AsyncAnthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client,
    ):
        first = await client.messages.create(**cached_system())
        second = await client.messages.create(**cached_system())
    assert first.usage.cache_creation_input_tokens == second.usage.cache_read_input_tokens > 0


def test_configure_checks_the_minimum_table_before_changing_anything(csim: Simulator) -> None:
    with pytest.raises(ValueError, match=r"prompt_cache_min_tokens\['claude'\]"):
        csim.configure(rpm=5, prompt_cache_min_tokens={"claude": "many"})  # type: ignore[dict-item]
    assert "anthropic-ratelimit-requests-limit" not in csim_headers(csim)


def csim_headers(sim: Simulator) -> dict[str, str]:
    with anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client:
        return dict(client.messages.with_raw_response.create(**cached_system()).headers)
