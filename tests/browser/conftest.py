"""Fixtures for the browser tests: one JupyterLab server and one Chromium per test module.

Every test gets its own browser context and page; when a test fails, a full-page screenshot is
written to its tmp dir (``failure.png``) and the path is printed in the report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_harness import Incidents, Lab, launch_chromium, save_screenshot, start_lab, stop_lab


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/browser carries the ``browser`` marker (``-m 'not browser'``)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A ``jupyter lab`` server on a free loopback port, stopped (with its kernels) at the end."""
    server = start_lab(tmp_path_factory.mktemp("lab"))
    try:
        yield server
    finally:
        stop_lab(server)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium through Playwright, closed at the end of the module.

    Module scope, not session: Playwright's sync API keeps an event loop running in the main
    thread while it is open, which would break every later test that starts its own loop.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any, lab: Lab, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh page (own context) watched for dialogs, navigations, popups, foreign requests.

    ``page.incidents`` holds what was seen. On failure a screenshot goes to the test's tmp dir.
    """
    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(60_000)
    pg = context.new_page()
    incidents = Incidents()
    incidents.watch(pg, lab.base_url)
    pg.incidents = incidents
    try:
        yield pg
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            shot = tmp_path / "failure.png"
            save_screenshot(pg, shot)
            print(f"\nscreenshot of the failed page: {shot}")
        context.close()
