"""``%agent batch``: Message Batches from a notebook (half the price, results within 24 h).

``%agent batch AGENT --tasks VAR`` submits and returns at once (``--wait`` waits, and can be
interrupted: the job runs on); ``list``, ``status [ID]`` (a progress bar that refreshes from the
background loop while the kernel stays free), ``results ID`` and ``cancel ID`` work on any job
registered in the cache directory, also after a kernel restart. In simulate mode the jobs go to
the offline simulator and are registered beside the simulated answers.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import html
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..options import argument
from ..widgets import WidgetBar
from .registry import command, in_kernel, subcommand_args

if TYPE_CHECKING:
    from ...engine.batch import BatchJob, BatchStatus
    from ...engine.orchestrator import AsyncAgentOrchestrator
    from ..magics import AgentMagics

__all__ = ["batch"]

_ACTIONS = ("list", "status", "results", "cancel")
#: The background refresher of ``%agent batch status`` (its future and bar) per job id: one
#: per job at a time.
_REFRESHERS: dict[str, tuple[concurrent.futures.Future[Any], _Bar]] = {}
_REFRESHERS_LOCK = threading.Lock()


@command(
    "batch",
    ("batch AGENT --tasks VAR [--wait]", "send the tasks as a Message Batch (50 % price)"),
    ("batch list", "the batch jobs of this cache directory, with status and cost"),
    ("batch status [ID]", "a progress bar that refreshes while the job runs"),
    ("batch results ID [-o VAR]", "collect a finished job: a DataFrame of answers"),
    ("batch cancel ID", "cancel the items not processed yet"),
    manual=True,
)
@subcommand_args("agent batch")
@argument("target", metavar="AGENT|list|status|results|cancel", help="an agent, or an action")
@argument("job_id", nargs="?", metavar="ID", help="the job id (job_...) or a msgbatch_ id")
@argument("--tasks", metavar="VAR", help="a notebook variable: a list (or Series) of tasks")
@argument("--model", metavar="M", help="the model for every item")
@argument("--max-tokens", type=int, metavar="N", help="the answer bound for every item")
@argument("--wait", action="store_true", help="wait for the end (interruptible), then collect")
@argument("--poll", type=float, default=5.0, metavar="S", help="seconds between polls (5)")
@argument("-o", "--output", metavar="VAR", help="store the BatchJob (results: the results)")
def batch(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Submit tasks as a Message Batch, or list, watch, collect or cancel batch jobs.

    ``--tasks VAR`` names a list of task strings (or of dicts with ``task`` and optionally
    ``custom_id``, ``agent`` and call options; or a pandas Series). Each task is screened
    like untrusted data and looked up in the cache first: cached tasks are not sent.
    """
    if not args.poll > 0:
        raise UsageError("--poll must be a positive number of seconds.")
    if args.target in _ACTIONS:
        if args.tasks or args.wait or args.model or args.max_tokens is not None:
            raise UsageError(
                f"%agent batch {args.target} takes no --tasks/--model/--max-tokens/--wait; "
                "those are for submitting: %agent batch AGENT --tasks VAR."
            )
        handler = {"list": _list, "status": _status, "results": _results, "cancel": _cancel}
        return handler[args.target](magics, args)
    return _submit(magics, args)


# -- submitting ------------------------------------------------------------------------------


def _items(magics: AgentMagics, args: argparse.Namespace) -> list[Any]:
    if not args.tasks:
        raise UsageError(
            f"%agent batch {args.target}: say which tasks with --tasks VAR (a list of task "
            "strings in a notebook variable), or use list, status, results or cancel."
        )
    if args.job_id is not None:
        raise UsageError(f"%agent batch {args.target}: unexpected {args.job_id!r}.")
    name = args.tasks
    if name not in magics.ip.user_ns:
        raise UsageError(f"--tasks {name}: no such variable in the notebook.")
    value = magics.ip.user_ns[name]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # a pandas Series or a NumPy array
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise UsageError(
            f"--tasks {name}: expected a list of task strings (or of dicts with 'task'), got "
            f"{type(value).__name__}."
        )
    items: list[Any] = []
    for i, task in enumerate(value):
        if isinstance(task, str):
            items.append((args.target, task))
        elif isinstance(task, Mapping) and "task" in task:
            items.append({"agent": args.target, **task})
        else:
            raise UsageError(
                f"--tasks {name}[{i}]: expected a task string or a dict with 'task', got "
                f"{type(task).__name__}."
            )
    if not items:
        raise UsageError(f"--tasks {name} is empty: nothing to send.")
    return items


def _submit(magics: AgentMagics, args: argparse.Namespace) -> Any:
    items = _items(magics, args)
    options: dict[str, Any] = {"origin": "notebook %agent batch"}
    if args.model:
        options["model"] = args.model
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    orch = magics.session.orchestrator()
    job = magics.session.run(orch.submit_batch(items, **options))
    if args.output:
        magics.ip.user_ns[args.output] = job
    print(_submitted(job))
    if not args.wait:
        return None
    try:
        status = _wait(magics, job, args.poll)
    except KeyboardInterrupt:  # wherever it lands: the job was submitted and runs on
        print(
            f"Stopped waiting; the batch job {job.id} keeps running. Re-attach with "
            f"`%agent batch status {job.id}` and collect with `%agent batch results {job.id}`."
        )
        raise
    print(status)
    return _collect(magics, job, None)


def _submitted(job: BatchJob) -> str:
    from ..display import _money

    cached = job.cached_count
    ids = ", ".join(job.ids) or "none (every item came from the cache)"
    estimate = job.estimated_usd
    worst = "unknown (a price is missing)" if estimate is None else _money(estimate)
    return (
        f"Batch job {job.id}: {job.total} item(s), {cached} answered from the cache (not "
        f"sent); batches: {ids}. Worst case at batch prices: {worst}.\n"
        f"Watch it with `%agent batch status {job.id}`, collect it with "
        f"`%agent batch results {job.id}` (also after a kernel restart)."
    )


def _wait(magics: AgentMagics, job: BatchJob, poll: float) -> BatchStatus:
    bar = _Bar(job.total, notebook=in_kernel(magics.shell), label=job.id)
    bar.show()
    try:
        status = magics.session.run(job.wait(on_progress=bar.update, poll=poll))
    except KeyboardInterrupt:
        bar.stop("stopped waiting")
        raise
    bar.update(status)
    return status


# -- actions on registered jobs -----------------------------------------------------------------


def _orchestrator(magics: AgentMagics) -> AsyncAgentOrchestrator:
    return magics.session.orchestrator()


def _attach(magics: AgentMagics, args: argparse.Namespace, *, latest: bool = False) -> BatchJob:
    orch = _orchestrator(magics)
    job_id = args.job_id
    if job_id is None:
        rows = orch.batch_jobs() if latest else []
        if not rows:
            raise UsageError(
                f"%agent batch {args.target} ID: which job? `%agent batch list` shows them."
            )
        job_id = rows[0]["job_id"]
    return magics.session.run(orch.batch(job_id))


def _list(magics: AgentMagics, args: argparse.Namespace) -> Any:
    import pandas as pd

    if args.job_id is not None:
        raise UsageError("%agent batch list takes no ID.")
    orch = _orchestrator(magics)
    rows = orch.batch_jobs()
    for row in rows:  # ask the API about the jobs still running; the rest are as last seen
        if row.get("status") == "in_progress":
            with contextlib.suppress(Exception):
                job = magics.session.run(orch.batch(row["job_id"]))
                status = magics.session.run(job.status())
                row.update(status.counts, status=status.processing_status)
    columns = [
        "job_id",
        "created",
        "status",
        "items",
        "processing",
        "succeeded",
        "errored",
        "canceled",
        "expired",
        "cached",
        "collected",
        "estimated_usd",
        "settled_usd",
        "batch_ids",
    ]
    frame: pd.DataFrame = pd.DataFrame(rows, columns=columns)
    return frame


def _status(magics: AgentMagics, args: argparse.Namespace) -> Any:
    job = _attach(magics, args, latest=True)
    status = magics.session.run(job.status())
    notebook = in_kernel(magics.shell)
    if status.ended or not notebook:
        print(status)
        return None
    bar = _Bar(status.total, notebook=True, label=job.id)
    bar.show()
    bar.update(status)
    future = magics.session.runner.submit(_refresh(job, bar, args.poll))
    with _REFRESHERS_LOCK:
        old = _REFRESHERS.pop(job.id, None)
        _REFRESHERS[job.id] = (future, bar)
    if old is not None:
        old[0].cancel()  # one bar per job refreshes; the older one stops where it is
    return None


async def _refresh(job: BatchJob, bar: _Bar, poll: float) -> None:
    """Update ``bar`` from the background loop until the job ends (the kernel stays free)."""
    try:
        status = await job.wait(on_progress=bar.update, poll=poll, max_poll=max(poll, 60.0))
        bar.update(status)
    except Exception as exc:  # an unreachable API: say so on the bar and stop refreshing
        bar.stop(f"stopped refreshing: {type(exc).__name__}")


def _results(magics: AgentMagics, args: argparse.Namespace) -> Any:
    if args.job_id is None:
        raise UsageError("%agent batch results ID: which job? `%agent batch list` shows them.")
    job = _attach(magics, args)
    status = magics.session.run(job.status())
    if not status.ended:
        raise UsageError(
            f"{job.id} is still processing ({status.done} of {status.total} done). Watch it "
            f"with `%agent batch status {job.id}`; collect it when it has ended."
        )
    return _collect(magics, job, args.output)


def _collect(magics: AgentMagics, job: BatchJob, output: str | None) -> Any:
    results = magics.session.run(job.results())
    if output:
        magics.ip.user_ns[output] = results
    magics.session.notify()
    return job.to_frame()


def _cancel(magics: AgentMagics, args: argparse.Namespace) -> Any:
    if args.job_id is None:
        raise UsageError("%agent batch cancel ID: which job? `%agent batch list` shows them.")
    job = _attach(magics, args)
    status = magics.session.run(job.cancel())
    print(f"{status}\nItems not processed yet end as canceled (not billed).")
    return None


# -- the progress bar ------------------------------------------------------------------------------


class _Bar:
    """A job's progress: a :class:`~..widgets.WidgetBar` in a notebook (updated from the
    refresher's thread), a text line otherwise."""

    def __init__(self, total: int, *, notebook: bool, label: str) -> None:
        self.total = total
        self._notebook = notebook
        self._label = label
        self._widget = WidgetBar()
        self.line = ""

    def show(self) -> None:
        if self._notebook:
            starting = f"{self._label}: starting"
            if not self._widget.open(
                max(1, self.total), html.escape(starting), starting, as_html=True
            ):
                self._notebook = False

    def _plain(self) -> str:
        return self.line or f"{self._label}: starting"

    @property
    def value(self) -> int:
        """What the bar shows as done (-1 without a widget)."""
        return int(self._widget.bar.value) if self._widget.bar is not None else -1

    def update(self, status: BatchStatus) -> None:
        shown = ", ".join(f"{n} {k}" for k, n in status.counts.items() if n)
        self.line = (
            f"{self._label}: {status.processing_status}, {status.done}/{status.total} ({shown})"
        )
        if self._widget.bar is None:
            if not self._notebook:
                sys.stdout.write("\r" + self.line)
                sys.stdout.flush()
            return
        self._widget.bar.value = status.done
        self._widget.text.value = html.escape(self.line)
        if status.ended:
            failed = status.counts.get("errored", 0) + status.counts.get("expired", 0)
            self._widget.finish("warning" if failed else "success", self._plain())

    def stop(self, why: str) -> None:
        self.line = f"{self.line or self._label} ({why})"
        if self._widget.bar is not None:
            self._widget.text.value = html.escape(self.line)
            self._widget.finish("danger", self._plain())
        elif not self._notebook:
            sys.stdout.write("\n")
