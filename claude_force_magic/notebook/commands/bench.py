"""``%agent bench``: many calls at a chosen concurrency; latency percentiles and throughput."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..options import argument
from .registry import command, in_kernel, subcommand_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["bench"]


@command(
    "bench",
    ("bench AGENT [--n 50] [--concurrency 8] [--simulate] [--task TEXT | --tasks VAR]", ""),
    manual=True,
)
@subcommand_args("agent bench")
@argument("agent", help="the agent to benchmark")
@argument("--n", type=int, default=50, help="number of calls (default 50)")
@argument("--concurrency", type=int, default=8, help="calls in flight at once (default 8)")
@argument("--simulate", action="store_true", help="against the offline simulator")
@argument("--task", help="the task text (default: numbered generated tasks)")
@argument("--tasks", metavar="VAR", help="a notebook variable holding a list of tasks")
@argument("--max-tokens", type=int, default=256, help="answer token bound (default 256)")
@argument("--no-plot", action="store_true", help="skip the latency histogram")
@argument("-o", "--output", metavar="VAR", help="store the BenchResult")
def bench(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Run many calls at a chosen concurrency and report latency percentiles and throughput."""
    from .. import cells  # looked up at call time

    request = cells.BenchRequest(
        args=args,
        namespace=magics.ip.user_ns,
        policy=magics.injection_policy,
        notebook=in_kernel(magics.shell),
    )
    result = cells.run_bench_command(magics.session, request)
    if args.output:
        magics.ip.user_ns[args.output] = result
    return result.summary_frame()
