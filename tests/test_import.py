"""Importing the package and loading the extension stay light: nothing heavy is imported."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("anthropic", "pandas", "ipywidgets", "aiohttp", "httpx2", "matplotlib", "diskcache")


def _modules_after(code: str) -> dict[str, bool]:
    probe = (
        f"{code}\nimport sys, json\n"
        f"print(json.dumps({{m: m in sys.modules for m in {list(HEAVY)!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_package_imports_nothing_heavy() -> None:
    loaded = _modules_after("import claude_force_magic")
    assert not any(loaded.values()), loaded


def test_import_does_not_import_ipython_either() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import claude_force_magic, sys; print('IPython' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_load_ext_registers_the_magics_without_heavy_imports() -> None:
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.run_line_magic('load_ext', 'claude_force_magic')\n"
        "assert 'agent' in shell.magics_manager.magics['cell']\n"
        "assert 'agent' in shell.magics_manager.magics['line']\n"
    )
    loaded = _modules_after(code)
    assert not any(loaded.values()), loaded


def test_load_ext_starts_no_thread() -> None:
    code = (
        "import threading\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "before = {t.name for t in threading.enumerate()}\n"
        "shell.run_line_magic('load_ext', 'claude_force_magic')\n"
        "after = {t.name for t in threading.enumerate()}\n"
        "print(sorted(after - before))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
