"""Driving a real JupyterLab in headless Chromium from tests (and the browser benchmarks).

:func:`start_lab` starts ``jupyter lab`` on a free loopback port with a token, a temporary root
directory and temporary HOME, JUPYTER_* and XDG directories; the extension runs in its kernels
against the built-in simulator (``CLAUDE_FORCE_MAGIC_SIMULATE=1``) and never sees a real key.
:func:`stop_lab` stops the server and its kernels by PID. :func:`launch_chromium` starts
Debian's Chromium through Playwright (Playwright's own browser download is not used) with every
host but 127.0.0.1 unresolvable, so nothing a page does can reach the internet.

:class:`NotebookPage` wraps one open notebook: run cells through JupyterLab's own commands (what
the Run menu and the toolbar call), read outputs from the DOM, and collect what must never
happen in a page showing model answers (page globals set by a payload, dialogs, navigations,
popups, requests to anything but the server).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Every host name but the loopback server fails to resolve: a payload cannot phone home.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
LAB_STARTUP_TIMEOUT = 90.0
REPO = Path(__file__).resolve().parents[2]
#: The page globals a payload sets when it runs are named with this prefix.
XSS_PREFIX = "__xss_"
#: JavaScript: the names of the payload globals set in this frame and its top window.
XSS_GLOBALS_JS = (
    "() => { const seen = new Set();"
    " for (const w of [window, window.top]) { try { for (const k of Object.getOwnPropertyNames(w))"
    f" if (k.startsWith('{XSS_PREFIX}')) seen.add(k); }} catch (e) {{}} }}"
    " return [...seen].sort(); }"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lab_env(home: Path) -> dict[str, str]:
    """The server's (and so its kernels') environment: private dirs, simulator on, no key."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "CLAUDE_", "JUPYTER", "XDG_", "IPYTHON"))
    }
    dirs = {
        "HOME": home,
        "JUPYTER_CONFIG_DIR": home / "jupyter-config",
        "JUPYTER_DATA_DIR": home / "jupyter-data",
        "JUPYTER_RUNTIME_DIR": home / "jupyter-runtime",
        "IPYTHONDIR": home / "ipython",
        "XDG_CONFIG_HOME": home / "xdg-config",
        "XDG_CACHE_HOME": home / "xdg-cache",
        "XDG_DATA_HOME": home / "xdg-data",
        "XDG_RUNTIME_DIR": home / "xdg-runtime",
        "CLAUDE_FORCE_MAGIC_CONFIG_DIR": home / "cfm-config",
        "CLAUDE_CACHE_DIR": home / "cfm-cache",
        "MPLCONFIGDIR": home / "mpl",
    }
    for path in dirs.values():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update({k: str(v) for k, v in dirs.items()})
    env["CLAUDE_FORCE_MAGIC_SIMULATE"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _lab_config(config_dir: Path) -> None:
    """No news, no update check, and ``window.jupyterapp`` for the tests' commands."""
    config = {
        "LabApp": {
            "news_url": None,
            "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
            "expose_app_in_browser": True,
            "extension_manager": "readonly",
        },
        "ServerApp": {"shutdown_no_activity_timeout": 0},
    }
    (config_dir / "jupyter_lab_config.json").write_text(json.dumps(config))
    notif = config_dir / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True, exist_ok=True)
    (notif / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # Render every cell (JupyterLab 4 defers off-screen cells): tests read all outputs.
    tracker = config_dir / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True, exist_ok=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))


@dataclass
class Lab:
    """A running ``jupyter lab`` server."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    root: Path
    home: Path
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """The browser URL of ``path`` under the server, token included."""
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the server's REST API; returns the decoded JSON answer (or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base_url}/api/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def write_notebook(self, name: str, cells: Sequence[str | tuple[str, str]]) -> str:
        """Write a notebook of these cells (code, or ``("markdown", text)``) to the root dir."""
        nb_cells = []
        for i, cell in enumerate(cells):
            kind, source = ("code", cell) if isinstance(cell, str) else cell
            entry: dict[str, Any] = {
                "id": f"cell-{i}",
                "cell_type": kind,
                "metadata": {},
                "source": source,
            }
            if kind == "code":
                entry.update(outputs=[], execution_count=None)
            nb_cells.append(entry)
        notebook = {
            "cells": nb_cells,
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (self.root / name).write_text(json.dumps(notebook), encoding="utf-8")
        return name

    def kernel_pids(self) -> list[int]:
        """PIDs of the server's descendants (its kernels)."""
        try:
            return [c.pid for c in psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def start_lab(base: Path) -> Lab:
    """Start ``jupyter lab`` under ``base`` (root, home, log live there); wait until it serves."""
    root, home = base / "root", base / "home"
    root.mkdir(parents=True, exist_ok=True)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = lab_env(home)
    _lab_config(Path(env["JUPYTER_CONFIG_DIR"]))
    port, token = free_port(), secrets.token_hex(16)
    log = base / "jupyter-lab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    with log.open("wb") as out:
        process = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = Lab(process, port, token, root, home, log)
    deadline = time.monotonic() + LAB_STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited early:\n{log.read_text(errors='replace')}")
        try:
            lab.api("GET", "status")
            return lab
        except OSError:
            if time.monotonic() > deadline:
                stop_lab(lab)
                raise RuntimeError(f"jupyter lab did not answer in time; see {log}") from None
            time.sleep(0.2)


def stop_lab(lab: Lab) -> None:
    """Stop the server (SIGTERM, then SIGKILL) and any kernel it leaves, by PID."""
    pids = lab.kernel_pids()
    if lab.process.poll() is None:
        lab.process.send_signal(signal.SIGTERM)
        try:
            lab.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.process.kill()
            lab.process.wait(timeout=10)
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.kill()
            proc.wait(timeout=10)
        except psutil.NoSuchProcess:
            pass


def launch_chromium(playwright: Any) -> Any:
    """Debian's headless Chromium, driven by Playwright."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


@dataclass
class Incidents:
    """What must never happen in a page that shows model answers."""

    dialogs: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)
    popups: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)

    def watch(self, page: Any, allowed_url_prefix: str) -> None:
        """Record dialogs, main-frame navigations away from the start URL, popups, and requests
        to anything outside ``allowed_url_prefix``."""

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        def on_nav(frame: Any) -> None:
            if frame == page.main_frame and not frame.url.startswith(allowed_url_prefix):
                self.navigations.append(frame.url)

        def on_request(request: Any) -> None:
            url = request.url
            if not url.startswith((allowed_url_prefix, "data:", "blob:", "about:")):
                self.foreign_requests.append(url)

        page.on("dialog", on_dialog)
        page.on("framenavigated", on_nav)
        page.on("popup", lambda popup: self.popups.append(popup.url))
        page.on("request", on_request)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "dialogs": self.dialogs,
            "navigations": self.navigations,
            "popups": self.popups,
            "foreign_requests": self.foreign_requests,
        }


def xss_globals(page: Any) -> list[str]:
    """Payload globals set in any frame of ``page`` (empty when no payload ran)."""
    found: set[str] = set()
    for frame in page.frames:
        try:
            found.update(frame.evaluate(XSS_GLOBALS_JS))
        except Exception:  # a frame that navigated away or is cross-origin: nothing to read
            continue
    return sorted(found)


#: JavaScript: every URL-bearing attribute in outputs whose scheme can run code or load a page.
DANGEROUS_URLS_JS = "\n".join(
    line
    for line in (Path(__file__).parent / "dangerous_markup.js").read_text("utf-8").splitlines()
    if not line.startswith("//")
)


class NotebookPage:
    """One notebook open in JupyterLab, driven through its own commands and read from the DOM."""

    def __init__(self, page: Any, lab: Lab, name: str) -> None:
        self.page = page
        self.lab = lab
        self.name = name

    @classmethod
    def open(cls, page: Any, lab: Lab, name: str, timeout: float = 90.0) -> NotebookPage:
        """Open ``name`` in the page and wait until its kernel is idle."""
        page.goto(lab.url(f"lab/tree/{name}?reset"))
        nb = cls(page, lab, name)
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout * 1000)
        page.wait_for_function(
            "(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " if (!w || !w.context || w.context.path !== name) return false;"
            " window.__cfmPanel = w;"
            " const k = w && w.sessionContext && w.sessionContext.session"
            " && w.sessionContext.session.kernel;"
            " return !!k && k.status === 'idle'; }",
            arg=name,
            timeout=timeout * 1000,
        )
        return nb

    # ---------------------------------------------------------------- running

    def command(self, name: str, wait: bool = True) -> None:
        """Execute a JupyterLab command (``notebook:run-all-cells``...); wait for it if asked."""
        if wait:
            self.page.evaluate("(c) => window.jupyterapp.commands.execute(c)", name)
        else:
            self.page.evaluate("(c) => { window.jupyterapp.commands.execute(c); }", name)

    def select(self, index: int) -> None:
        """Make cell ``index`` the active cell (command mode)."""
        self.page.evaluate(
            "(i) => { const nb = window.__cfmPanel.content;"
            " nb.activeCellIndex = i; nb.mode = 'command'; nb.node.focus(); }",
            index,
        )

    def run_cell(self, index: int, wait: bool = True) -> None:
        """Run cell ``index`` (as Ctrl+Enter does); wait until it finished if asked."""
        self.select(index)
        self.command("notebook:run-cell", wait=wait)
        if wait:
            self.wait_idle()

    def run_all(self, timeout: float = 120.0) -> None:
        """Run All, then wait until every code cell has an execution count and the kernel idles."""
        self.command("notebook:run-all-cells", wait=False)
        self.wait_all_executed(timeout)

    def wait_all_executed(self, timeout: float = 120.0) -> None:
        self.page.wait_for_function(
            "() => { const nb = window.__cfmPanel.content;"
            " return nb.widgets.every(c => c.model.type !== 'code'"
            " || (c.model.executionCount !== null && !c.node.querySelector("
            "'.jp-InputArea-prompt').textContent.includes('*'))); }",
            timeout=timeout * 1000,
        )
        self.wait_idle(timeout)

    def wait_idle(self, timeout: float = 60.0) -> None:
        self.page.wait_for_function(
            "() => { const s = window.__cfmPanel.sessionContext.session;"
            " return !!s && !!s.kernel && s.kernel.status === 'idle'; }",
            timeout=timeout * 1000,
        )

    def set_source(self, index: int, source: str) -> None:
        self.page.evaluate(
            "([i, s]) => { window.__cfmPanel.content.widgets[i].model.sharedModel.setSource(s); }",
            [index, source],
        )

    # ---------------------------------------------------------------- reading

    def cell_count(self) -> int:
        return int(self.page.evaluate("() => window.__cfmPanel.content.widgets.length"))

    def cell(self, index: int) -> Any:
        """The Playwright locator of cell ``index``."""
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").nth(index)

    def outputs(self, index: int) -> Any:
        return self.cell(index).locator(".jp-OutputArea-output")

    def output_text(self, index: int) -> str:
        return str(self.cell(index).locator(".jp-OutputArea").inner_text())

    def output_models(self, index: int) -> list[dict[str, Any]]:
        """The cell's outputs as stored in the notebook model (what a save would write)."""
        result = self.page.evaluate(
            "(i) => { const m = window.__cfmPanel.content.widgets[i].model;"
            " return m.outputs ? m.outputs.toJSON() : []; }",
            index,
        )
        return list(result)

    def error_outputs(self) -> list[tuple[int, str]]:
        """``(cell index, text)`` of every error output, and stderr stream, in the notebook."""
        found: list[tuple[int, str]] = []
        for i in range(self.cell_count()):
            for out in self.output_models(i):
                if out.get("output_type") == "error" or (
                    out.get("output_type") == "stream" and out.get("name") == "stderr"
                ):
                    text = out.get("text") or "\n".join(out.get("traceback", []))
                    found.append((i, f"{out.get('ename', 'stderr')}: {text}"))
        return found

    def dangerous_markup(self) -> list[str]:
        """Executable markup left in any output area of the notebook (see DANGEROUS_URLS_JS)."""
        areas = self.page.locator(".jp-OutputArea")
        found: list[str] = []
        for i in range(areas.count()):
            found.extend(areas.nth(i).evaluate(DANGEROUS_URLS_JS))
        return found

    def mathjax_in_outputs(self) -> int:
        return int(self.page.locator(".jp-OutputArea mjx-container").count())


def save_screenshot(page: Any, path: Path) -> None:
    """Best-effort full-page screenshot (a failing test keeps its own error)."""
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception as exc:  # the page or browser may already be gone
        path.with_suffix(".txt").write_text(f"no screenshot: {exc}")


def texts_visible(haystack: str, needles: Iterable[str]) -> list[str]:
    """The needles NOT found in ``haystack`` (whitespace-normalised)."""
    flat = " ".join(haystack.split())
    return [n for n in needles if " ".join(n.split()) not in flat]


def repo_path(*parts: str) -> Path:
    return REPO.joinpath(*parts)
