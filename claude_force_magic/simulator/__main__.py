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
