"""``python -m claude_force_magic.simulator`` in a real subprocess."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

import claude_force_magic.simulator as simulator_package

from .helpers import ask, text_of

ROOT = Path(simulator_package.__file__).resolve().parents[2]


def launch(*args: str) -> subprocess.Popen[str]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.Popen(
        [sys.executable, "-m", "claude_force_magic.simulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def first_line(process: subprocess.Popen[str], timeout: float = 15.0) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("the simulator printed no URL in time")
    return process.stdout.readline().strip()


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = launch("--port", "0", "--script", "rate_limit,ok", "--rpm", "100", "--seed", "3")
    try:
        yield process, first_line(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_then_exits_cleanly_on_signal(
    served: tuple[subprocess.Popen[str], str], stop_signal: signal.Signals
) -> None:
    process, url = served
    assert url.startswith("http://127.0.0.1:")
    with anthropic.Anthropic(api_key="k", base_url=url, max_retries=0) as client:
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(**ask())
        raw = client.messages.with_raw_response.create(**ask())
        assert text_of(raw.parse()).startswith("## ")
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "100"
    process.send_signal(stop_signal)
    assert process.wait(timeout=10) == 0
    assert process.stderr is not None
    assert "Traceback" not in process.stderr.read()


def test_cli_rejects_bad_options() -> None:
    process = launch("--faults", "explode=0.5")
    _, err = process.communicate(timeout=15)
    assert process.returncode == 2
    assert "unknown fault 'explode'" in err
    process = launch("--latency", "gamma:1")
    _, err = process.communicate(timeout=15)
    assert process.returncode == 2
    assert "fixed:S" in err


def test_cli_sets_stream_pacing() -> None:
    from claude_force_magic.simulator import Latency
    from claude_force_magic.simulator.__main__ import parse_args

    args = parse_args(["--latency", "fixed:0.2", "--ttft", "0.5", "--per-token", "0.01"])
    assert args.latency == Latency.fixed(0.2, ttft=0.5, per_token=0.01)
    assert parse_args([]).latency == Latency.fixed(0.0)
    process = launch("--per-token", "-1")
    _, err = process.communicate(timeout=15)
    assert process.returncode == 2 and "--per-token" in err
    help_text = subprocess.run(
        [sys.executable, "-m", "claude_force_magic.simulator", "--help"],
        capture_output=True,
        text=True,
        timeout=15,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    ).stdout
    assert "--ttft" in help_text and "--per-token" in help_text


def test_cli_sets_prompt_caching_and_batches() -> None:
    process = launch(
        "--prompt-cache-min-tokens",
        "*=5",
        "--batch-seconds",
        "0",
        "--batch-faults",
        "errored=1",
    )
    try:
        url = first_line(process)
        with anthropic.Anthropic(api_key="k", base_url=url, max_retries=0) as client:
            system = [{"type": "text", "text": "x" * 40, "cache_control": {"type": "ephemeral"}}]
            usage = client.messages.create(**ask(system=system)).usage
            assert usage.cache_creation_input_tokens == 10  # over the minimum of 5
            batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": ask()}])
            assert batch.processing_status == "ended"  # --batch-seconds 0
            (line,) = client.messages.batches.results(batch.id)
            assert line.result.type == "errored"  # --batch-faults errored=1
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)


def test_cli_rejects_bad_batch_options() -> None:
    process = launch("--batch-faults", "errored")
    _, err = process.communicate(timeout=15)
    assert process.returncode == 2
    assert "expected NAME=VALUE" in err
    process = launch("--batch-faults", "errored=0.7,expired=0.7")
    _, err = process.communicate(timeout=15)
    assert process.returncode == 1
    assert "must not exceed 1" in err
    process = launch("--prompt-cache-min-tokens", "claude=lots")
    _, err = process.communicate(timeout=15)
    assert process.returncode == 2
    assert "is not a number" in err
