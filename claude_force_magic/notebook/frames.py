"""pandas DataFrames for the ``%agent`` tables, built from plain rows.

pandas is imported inside each function, never at module import, so ``%load_ext`` stays fast.
Every function takes the rows another layer already produces (registry rows, metrics records,
cache entries) and only chooses, orders and formats columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AGENT_COLUMNS",
    "CACHE_COLUMNS",
    "HISTORY_COLUMNS",
    "agents_frame",
    "cache_frame",
    "config_frame",
    "cost_frame",
    "history_frame",
    "latency_frame",
    "mode_history_frame",
    "rows_frame",
]

AGENT_COLUMNS = ("name", "description", "domains", "priority", "source")
HISTORY_COLUMNS = (
    "time",
    "mode",
    "agent_name",
    "model",
    "latency_s",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "saved_usd",
    "cached",
    "success",
    "status",
    "error_type",
    "attempts",
    "stop_reason",
    "ttft_s",
    "tpot_s",
    "itl_p50_s",
    "output_tokens_per_s",
)
CACHE_COLUMNS = (
    "agent_name",
    "model",
    "created",
    "expires",
    "size_bytes",
    "hits",
    "input_tokens",
    "output_tokens",
    "estimated_cost",
    "preview",
    "origin",
    "key",
)


def rows_frame(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame of ``rows`` with exactly ``columns`` in that order (missing ones are None)."""
    import pandas as pd

    frame: pd.DataFrame = pd.DataFrame(
        [{c: row.get(c) for c in columns} for row in rows], columns=list(columns)
    )

    return frame


def _as_dict(record: Any) -> dict[str, Any]:
    if isinstance(record, Mapping):
        return dict(record)
    if is_dataclass(record) and not isinstance(record, type):
        return asdict(record)
    return {k: getattr(record, k) for k in dir(record) if not k.startswith("_")}


def _when(epoch: Any) -> dt.datetime | None:
    """Epoch seconds as a local datetime; None for a missing time or one no datetime can hold
    (an expiry stored before TTLs were bounded, year 12020, must not break the table)."""
    if epoch is None:
        return None
    try:
        return dt.datetime.fromtimestamp(float(epoch)).replace(microsecond=0)
    except (OverflowError, OSError, ValueError, TypeError):
        return None


def agents_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Agents: name, description, domains (comma-joined), priority, source.

    ``domains`` may arrive as a list or already joined (``AgentRegistry.rows()`` joins them).
    """
    prepared = [{**r, "domains": _joined(r.get("domains"))} for r in rows]
    return rows_frame(prepared, AGENT_COLUMNS)


def _joined(domains: Any) -> str:
    if isinstance(domains, str):
        return domains  # joining a string would put ", " between its letters
    return ", ".join(domains or ())


def history_frame(records: Iterable[Any], mode: str | None = None) -> pd.DataFrame:
    """Calls from ``Metrics.recent()`` in the order given; ``mode`` ("live"/"simulated") fills
    the ``mode`` column of records that do not carry one. The streaming columns (``ttft_s``,
    ``tpot_s``, ``itl_p50_s``, ``output_tokens_per_s``) are empty for calls that were not
    streamed and for cache hits."""
    rows = []
    for record in records:
        row = _as_dict(record)
        row["time"] = _when(row.get("timestamp"))
        row.setdefault("mode", mode)
        rows.append(row)
    return rows_frame(rows, HISTORY_COLUMNS)


def mode_history_frame(records: Mapping[str, Iterable[Any]]) -> pd.DataFrame:
    """Each mode's records (``{"live": Metrics.recent(), ...}``) merged oldest first, with a
    ``mode`` column."""
    rows = [{**_as_dict(r), "mode": mode} for mode, recs in records.items() for r in recs]
    rows.sort(key=lambda row: float(row.get("timestamp") or 0.0))  # stable: ties keep mode order
    return history_frame(rows)


def cost_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Spend and savings by agent and model (from ``Metrics.cost_by()``), costliest first;
    rows that carry a ``mode`` are grouped by mode (live first)."""
    import pandas as pd

    frame: pd.DataFrame = pd.DataFrame(list(rows))
    if "cost_usd" in frame.columns and len(frame):
        by = ["mode", "cost_usd"] if "mode" in frame.columns else ["cost_usd"]
        ascending = [True, False] if "mode" in frame.columns else [False]
        frame = frame.sort_values(by, ascending=ascending, ignore_index=True)
    return frame


def latency_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Latency percentiles by agent, model and live/cached (``Metrics.latency_percentiles()``)."""
    import pandas as pd

    frame: pd.DataFrame = pd.DataFrame(list(rows))

    return frame


def cache_frame(entries: Iterable[Mapping[str, Any]], *, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Cache entries without response text; ``created``/``expires`` as local datetimes.

    ``preview`` is the task's start (empty for entries stored before it was kept); ``extra``
    columns (``saved_usd`` for ``%agent cache top``) come before ``key``.
    """
    rows = []
    for entry in entries:
        row = {k: v for k, v in entry.items() if k != "response"}
        row["created"] = _when(entry.get("created_at"))
        row["expires"] = _when(entry.get("expires_at"))
        row.setdefault("preview", "")
        rows.append(row)
    return rows_frame(rows, (*CACHE_COLUMNS[:-1], *extra, CACHE_COLUMNS[-1]))


def config_frame(values: Mapping[str, Any]) -> pd.DataFrame:
    """The effective configuration as a two-column table (setting, value)."""
    import pandas as pd

    rows = [{"setting": k, "value": "" if v is None else str(v)} for k, v in values.items()]
    frame: pd.DataFrame = pd.DataFrame(rows, columns=["setting", "value"]).set_index("setting")
    return frame
