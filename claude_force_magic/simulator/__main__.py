"""Run the Messages API simulator from the command line.

``python -m claude_force_magic.simulator --port 8765 --latency lognormal:0.2,1.0`` prints its
base URL on one line and serves until SIGINT or SIGTERM, then exits with status 0. Streams are
paced with ``--ttft`` (time to first token) and ``--per-token``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import signal
import sys
from collections.abc import Sequence

from .behaviour import Fault, Latency
from .server import Simulator


def _fault_rates(spec: str) -> dict[str, float]:
    rates: dict[str, float] = {}
    for item in filter(None, spec.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=PROBABILITY, got {item!r}")
        try:
            rates[Fault.check(name.strip())] = float(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return rates


def _script(spec: str) -> list[str]:
    try:
        return [Fault.check(name.strip()) for name in spec.split(",") if name.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _latency(spec: str) -> Latency:
    try:
        return Latency.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pairs(spec: str, convert: type[int] | type[float]) -> dict[str, float]:
    pairs: dict[str, float] = {}
    for item in filter(None, spec.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {item!r}")
        try:
            pairs[name.strip()] = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: {value!r} is not a number") from None
    return pairs


def _batch_faults(spec: str) -> dict[str, float]:
    return _pairs(spec, float)


def _min_tokens(spec: str) -> dict[str, int]:
    return {name: int(value) for name, value in _pairs(spec, int).items()}


def _seconds(spec: str) -> float:
    try:
        value = float(spec)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {spec!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {spec!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (``--help`` lists every option)."""
    parser = argparse.ArgumentParser(
        prog="python -m claude_force_magic.simulator",
        description="Serve a local simulation of the Anthropic Messages API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    parser.add_argument(
        "--latency",
        type=_latency,
        default=Latency.fixed(0.0),
        help="fixed:S | uniform:LO,HI | lognormal:MEDIAN,P99 (seconds; default fixed:0)",
    )
    parser.add_argument(
        "--ttft",
        type=_seconds,
        default=None,
        help="streams: seconds before the first text delta (default: one latency sample)",
    )
    parser.add_argument(
        "--per-token",
        type=_seconds,
        default=0.0,
        help="streams: seconds per output token between deltas (default 0)",
    )
    parser.add_argument(
        "--faults",
        type=_fault_rates,
        default={},
        help="fault probabilities, e.g. rate_limit=0.1,overloaded=0.05",
    )
    parser.add_argument(
        "--script",
        type=_script,
        default=[],
        help="faults for the first requests, e.g. rate_limit,ok",
    )
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute limit")
    parser.add_argument("--itpm", type=int, default=None, help="input tokens per minute limit")
    parser.add_argument("--otpm", type=int, default=None, help="output tokens per minute limit")
    parser.add_argument("--seed", type=int, default=0, help="seed for faults, latency and text")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any)")
    parser.add_argument(
        "--stall-seconds", type=float, default=30.0, help="how long the stall fault hangs"
    )
    parser.add_argument(
        "--retry-after",
        type=float,
        default=1.0,
        help="seconds the rate_limit fault advertises in retry-after (default 1)",
    )
    parser.add_argument(
        "--prompt-cache-min-tokens",
        type=_min_tokens,
        default=None,
        help="minimum cacheable prefix per model prefix, e.g. claude-haiku-4-5=4096,*=1024",
    )
    parser.add_argument(
        "--batch-seconds",
        type=_seconds,
        default=2.0,
        help="how long a Message Batch takes to process (default 2)",
    )
    parser.add_argument(
        "--batch-cancel-seconds",
        type=_seconds,
        default=0.5,
        help="how long a cancelled batch stays 'canceling' (default 0.5)",
    )
    parser.add_argument(
        "--batch-retention-seconds",
        type=_seconds,
        default=29 * 24 * 3600.0,
        help="a batch and its results vanish this long after creation (default 29 days)",
    )
    parser.add_argument(
        "--batch-faults",
        type=_batch_faults,
        default={},
        help="per-item outcome probabilities in batches, e.g. errored=0.05,expired=0.01",
    )
    parser.add_argument(
        "--batch-max-requests",
        type=int,
        default=100_000,
        help="most requests in one batch (default 100000)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not available on Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        simulator = Simulator(
            latency=args.latency,
            script=args.script,
            fault_rates=args.faults,
            rpm=args.rpm,
            input_tpm=args.itpm,
            output_tpm=args.otpm,
            seed=args.seed,
            api_key=args.api_key,
            stall_seconds=args.stall_seconds,
            retry_after=args.retry_after,
            prompt_cache_min_tokens=args.prompt_cache_min_tokens,
            batch_seconds=args.batch_seconds,
            batch_cancel_seconds=args.batch_cancel_seconds,
            batch_retention_seconds=args.batch_retention_seconds,
            batch_fault_rates=args.batch_faults,
            batch_max_requests=args.batch_max_requests,
            host=args.host,
            port=args.port,
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    async with simulator as sim:
        print(sim.base_url, flush=True)
        await stop.wait()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; ``args.latency`` includes ``--ttft`` and ``--per-token``."""
    args = build_parser().parse_args(argv)
    args.latency = dataclasses.replace(args.latency, ttft=args.ttft, per_token=args.per_token)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, serve until interrupted, and return the exit status."""
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
