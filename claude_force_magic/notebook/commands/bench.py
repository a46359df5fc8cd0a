"""``%agent bench``: benchmark agents x models x loads; percentiles, throughput, goodput, plots."""

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
    (
        "bench AGENT [AGENT ...] [--models M1,M2] [--concurrency 1,4,16 | --rate 0.5,1,2 "
        "[--burstiness B] [--max-concurrency C]] [--n N | --duration S] [--warmup W] "
        "[--slo ttft=2,e2e=20] [--simulate] [--task TEXT | --tasks VAR]",
        "",
    ),
    manual=True,
)
@subcommand_args("agent bench")
@argument("agent", nargs="+", help="the agent(s) to benchmark")
@argument("--n", type=int, default=None, help="calls per run (default 50; or --duration)")
@argument(
    "--concurrency",
    default=None,
    help="closed loop: calls in flight, a comma list to sweep (default 8), e.g. 1,4,16",
)
@argument(
    "--rate",
    default=None,
    help="open loop: Poisson arrivals in calls/s, a comma list to sweep, e.g. 0.5,1,2 (inf: all "
    "at once)",
)
@argument(
    "--burstiness",
    type=float,
    default=None,
    help="gamma shape of the arrival gaps with --rate (1: Poisson; <1 burstier; default 1)",
)
@argument("--duration", type=float, default=None, help="seconds per run instead of --n")
@argument("--warmup", type=int, default=0, help="calls before each run, not counted (default 0)")
@argument("--max-concurrency", type=int, default=None, help="cap on calls in flight with --rate")
@argument("--models", help="models to compare, comma separated (default: the agent's own)")
@argument("--slo", help="latency objectives in seconds for goodput, e.g. ttft=2,e2e=20")
@argument("--simulate", action="store_true", help="against the offline simulator")
@argument("--task", help="the task text (default: numbered generated tasks)")
@argument(
    "--tasks",
    metavar="VAR",
    help="a variable holding tasks: a list, a Series, a DataFrame (or VAR[COLUMN]), or a dict of "
    "named lists to compare prompt sets",
)
@argument("--max-tokens", type=int, default=256, help="answer token bound (default 256)")
@argument("--no-plot", action="store_true", help="skip the plots")
@argument("-o", "--output", metavar="VAR", help="store the BenchResult (one run) or SweepResult")
def bench(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Benchmark agents under load: TTFT, TPOT, ITL and end-to-end percentiles, throughput,
    goodput, errors and cost, for one run or a sweep of agents x models x loads."""
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
    if hasattr(result, "frame"):
        return result.frame(brief=True)
    return result.summary_frame(brief=True)
