"""Debian's headless Chromium driven by Playwright, for the tests that look at the web app as a person does."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from realtime_voting.core import waiting
from realtime_voting.core.settings import REPO_ROOT
from tests.support.tools import tool_missing

SCREENSHOTS = REPO_ROOT / ".local" / "screenshots"
# Every chart of the results page and both its tables drawn (not loading skeletons): ready for a picture.
ALL_DRAWN = """() => {
    const charts = document.querySelectorAll('[data-testid="stVegaLiteChart"] canvas, '
                                             + '[data-testid="stVegaLiteChart"] svg.marks');
    const tables = [...document.querySelectorAll('[data-testid="stDataFrame"]')];
    return charts.length >= 6 && tables.length >= 2
        && tables.every(table => table.querySelectorAll('[role=gridcell], td').length > 0);
}"""


@contextmanager
def chromium_page() -> Iterator[Page]:
    """A page of Debian's headless Chromium (the test is skipped without it), tall enough for a whole Streamlit
    page: Streamlit scrolls inside its own container, not the window."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        tool_missing("no Chromium: `make setup` installs Debian's chromium package when it runs as root")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 3000})
        finally:
            browser.close()


def open_when_served(page: Page, url: str, server_alive: Callable[[], bool], timeout_s: float = 60) -> None:
    """Open ``url`` once its server listens (a Streamlit server takes a few seconds to start)."""

    def opened() -> bool:
        assert server_alive(), f"the server of {url} exited before it served the page"
        try:
            page.goto(url)
        except PlaywrightError:  # nothing listens yet
            return False
        return True

    waiting.until(opened, timeout_s=timeout_s, what=f"a page served at {url}", every_s=0.5)


def metric_value(page: Page, label: str) -> str:
    return page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue").inner_text()
