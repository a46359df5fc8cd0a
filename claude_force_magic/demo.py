"""``python -m claude_force_magic.demo``: run the quickstart notebook in a real kernel.

Executes ``notebooks/quickstart.ipynb`` top to bottom with nbclient (offline against the
built-in simulator unless ``ANTHROPIC_API_KEY`` is set), writes ``notebooks/quickstart.html``
with nbconvert, and prints where it is plus a short summary. Exit status 0 on success, 1 if a
cell failed (its error is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DemoSummary", "execute_notebook", "find_notebook", "main", "run_notebook"]


@dataclass(frozen=True)
class DemoSummary:
    """What the demo run produced."""

    notebook: Path
    html: Path
    cells: int
    agent_cells: int
    seconds: float
    simulated: bool

    def __str__(self) -> str:
        mode = "offline (simulator)" if self.simulated else "live (ANTHROPIC_API_KEY)"
        return (
            f"Executed {self.notebook.name}: {self.cells} code cells, {self.agent_cells} agent "
            f"cells, {self.seconds:.1f} s, {mode}.\nWrote {self.html}"
        )


def find_notebook(name: str = "quickstart.ipynb") -> Path:
    """The bundled example notebook: next to the package source, else under the cwd.

    Raises ``FileNotFoundError`` naming where it looked.
    """
    candidates = [
        Path(__file__).resolve().parents[1] / "notebooks" / name,
        Path.cwd() / "notebooks" / name,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{name} not found in " + " or ".join(str(c.parent) for c in candidates)
    )


def kernel_manager(sockets: Path) -> Any:
    """A manager for a python3 kernel run by this interpreter.

    On POSIX the kernel talks over Unix sockets in ``sockets`` (a private temporary directory)
    instead of TCP: nothing listens on a port, and ipykernel does not warn "Kernel is running
    over TCP without encryption". The path is absolute because the kernel runs in the
    notebook's directory and the client in ours.
    """
    from jupyter_client.manager import KernelManager

    transport: dict[str, str] = {}
    if os.name == "posix":
        transport = {"transport": "ipc", "ip": str(sockets / "kernel")}
    manager = KernelManager(kernel_name="python3", **transport)
    spec = manager.kernel_spec
    if spec is None:
        raise RuntimeError("No python3 kernel spec: install ipykernel in this environment.")
    # Run the kernel with this interpreter, whatever `python` means on PATH.
    spec.argv = [
        sys.executable,
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]
    return manager


def execute_notebook(
    path: Path, *, timeout: int = 300, env: Mapping[str, str] | None = None
) -> Any:
    """Execute ``path`` top to bottom in a fresh kernel; return the executed notebook node.

    ``env`` replaces the kernel's environment (default: this process's). The file itself is
    not changed. The kernel is shut down before this returns, also when a cell fails. Raises
    ``nbclient.exceptions.CellExecutionError`` when a cell fails.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    with tempfile.TemporaryDirectory(prefix="cfm-kernel-") as sockets:
        manager = kernel_manager(Path(sockets))
        client = NotebookClient(
            nb,
            km=manager,
            timeout=timeout,
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute(**({"env": dict(env)} if env is not None else {}))
        finally:
            # nbclient leaves a kernel it did not create running (until this process exits).
            if manager.has_kernel:
                manager.shutdown_kernel()
    return nb


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def static_copy(nb: Any) -> Any:
    """A copy of the executed notebook ``nb`` for a static page: every output that carries both
    a live widget and an HTML or text fallback keeps only the fallback.

    A static HTML page can only draw widgets with JavaScript fetched from a CDN, so offline (or
    behind a strict proxy) the ``%agent stats`` dashboard and progress bars would be blank; their
    HTML tables and text lines show everywhere. The widget state is dropped only when no
    widget is left to draw.
    """
    import copy

    page = copy.deepcopy(nb)
    widgets_left = False
    for cell in page.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data and ({"text/html", "text/plain"} & data.keys()):
                del data[WIDGET_VIEW]
            widgets_left = widgets_left or WIDGET_VIEW in data
    if not widgets_left:
        page.metadata.pop("widgets", None)
    return page


def run_notebook(
    path: Path,
    html_path: Path | None = None,
    *,
    timeout: int = 300,
    env: Mapping[str, str] | None = None,
) -> DemoSummary:
    """Execute ``path`` (see :func:`execute_notebook`), write it as HTML, return a summary."""
    from nbconvert import HTMLExporter

    start = time.perf_counter()
    nb = execute_notebook(path, timeout=timeout, env=env)
    seconds = time.perf_counter() - start
    body, _ = HTMLExporter().from_notebook_node(static_copy(nb))  # type: ignore[no-untyped-call]
    html_path = html_path or path.with_suffix(".html")
    html_path.write_text(body, encoding="utf-8")
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    return DemoSummary(
        notebook=path,
        html=html_path,
        cells=len(code_cells),
        agent_cells=sum(1 for c in code_cells if c.source.lstrip().startswith("%%agent")),
        seconds=seconds,
        simulated=not (env if env is not None else os.environ).get("ANTHROPIC_API_KEY"),
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m claude_force_magic.demo", description=__doc__)
    parser.add_argument("notebook", nargs="?", help="notebook to run (default: the quickstart)")
    parser.add_argument("--html", help="where to write the HTML (default: next to the notebook)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    args = parser.parse_args(argv)
    from nbclient.exceptions import CellExecutionError

    path = Path(args.notebook) if args.notebook else find_notebook()
    try:
        summary = run_notebook(path, Path(args.html) if args.html else None, timeout=args.timeout)
    except CellExecutionError as exc:
        print(f"A cell of {path} failed:\n{exc}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
