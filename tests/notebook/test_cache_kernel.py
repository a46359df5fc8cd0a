"""A broken cache in a real kernel (issue 9 §3): cells still run, after one warning.

The read-only cache is a real read-only tmpfs (``small_fs``); the unopenable one a path under a
regular file. One kernel for the module, simulate mode.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kernel_harness import CellRun, Kernel

from claude_force_magic.notebook.frames import cache_frame

if TYPE_CHECKING:
    from conftest import SmallFs

SIM = "get_ipython().magics_manager.registry['AgentMagics'].session.simulator()"


pytestmark = pytest.mark.usefixtures("simulated_kernel")


def _requests(kernel: Kernel) -> int:
    return int(kernel.ok(f"print({SIM}.stats['requests'])").stdout)


def _said(run: CellRun) -> str:
    """Everything a failed cell showed: stderr (UsageError), the error's lines, its value."""
    error = run.error or {}
    lines = "\n".join(error.get("traceback", []))
    return f"{run.stderr}\n{lines}\n{error.get('evalue', '')}\n{run.reply.get('evalue', '')}"


def _no_traceback(run: CellRun) -> None:
    text = _said(run)
    assert "Traceback" not in text and "File " not in text, text


def _set_dir(kernel: Kernel, path: Path) -> None:
    kernel.ok(f"%config AgentMagics.cache_dir = {str(path)!r}")


@pytest.mark.kernel
def test_read_only_cache_serves_hits_and_every_subcommand_works(
    kernel: Kernel, small_fs: SmallFs, tmp_path: Path
) -> None:
    cell = "%%agent python-expert\nWhat does functools.partial do? One sentence."
    _set_dir(kernel, small_fs.path / "c")
    kernel.ok(cell)  # stored in <c>-simulated
    _set_dir(kernel, tmp_path / "elsewhere")  # closes the cache on the tmpfs
    small_fs.read_only()
    _set_dir(kernel, small_fs.path / "c")
    before = _requests(kernel)
    hit = kernel.ok(cell)
    assert "cache hit" in hit.texts("text/html")[-1]
    assert _requests(kernel) == before  # the stored answer was not bought again
    assert hit.stderr.count("read-only") == 1, hit.stderr
    new = kernel.ok("%%agent python-expert\nWhat does functools.reduce do? One sentence.")
    assert _requests(kernel) == before + 1
    assert "read-only" not in new.stderr  # one warning, not one per cell
    assert "cache miss (not stored)" in new.texts("text/html")[-1]
    listing = kernel.ok("%agent cache --frame")
    assert "read-only" in listing.stdout and "python-expert" in listing.result_text
    for command in ("%agent cache clear", "%agent cache verify"):
        run = kernel.run(command)
        assert run.status == "error" and "read-only" in _said(run), command
        _no_traceback(run)
    for command in ("%agent stats", "%agent config", "%agent history"):
        _no_traceback(kernel.ok(command))
    _set_dir(kernel, tmp_path / "elsewhere")  # release the tmpfs before it is unmounted


@pytest.mark.kernel
def test_unopenable_cache_cell_runs_after_one_warning(kernel: Kernel, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file where the cache directory should be")
    _set_dir(kernel, blocker / "cache")
    first = kernel.ok("%%agent python-expert\nName one use of itertools.chain.")
    assert "could not be opened" in first.stderr
    assert "%config AgentMagics.enable_cache = False" in first.stderr
    second = kernel.ok("%%agent python-expert\nName one use of itertools.islice.")
    assert "could not be opened" not in second.stderr
    for command in ("%agent cache", "%agent cache clear", "%agent cache verify"):
        run = kernel.run(command)
        assert run.status == "error" and "could not be opened" in _said(run), command
        _no_traceback(run)
    for command in ("%agent stats", "%agent config"):
        _no_traceback(kernel.ok(command))


@pytest.mark.kernel
def test_ttl_over_ten_years_is_refused_before_sending(kernel: Kernel) -> None:
    before = _requests(kernel)
    run = kernel.run("%%agent python-expert --ttl 87600000\nAnything.")
    assert run.ename == "UsageError" and "ten years" in _said(run)
    _no_traceback(run)
    config = kernel.run("%config AgentMagics.ttl_hours = 87600000")
    assert "ten years" in config.stderr + config.stdout
    assert (
        kernel.ok(
            "print(get_ipython().magics_manager.registry['AgentMagics'].ttl_hours)"
        ).stdout.strip()
        == "24.0"
    )
    assert _requests(kernel) == before


def test_cache_frame_lists_any_stored_expiry() -> None:
    far = [
        {"agent_name": "a", "created_at": 1.8e9, "expires_at": 1.8e9 + 87_600_000 * 3600},
        {"agent_name": "b", "created_at": 1.8e9, "expires_at": 1e308},
        {"agent_name": "c", "created_at": 1.8e9, "expires_at": 1.8e9 + 3600},
    ]
    frame = cache_frame(far)
    assert list(frame["agent_name"]) == ["a", "b", "c"]
    assert frame["expires"].isna().tolist() == [True, True, False]
    assert isinstance(frame["expires"].iloc[2], dt.datetime)
