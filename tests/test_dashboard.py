"""The dashboard page, headless (Streamlit's AppTest) against the real stack after a small counted election,
and in its empty and unreachable states."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page
from psycopg2 import sql
from streamlit.testing.v1 import AppTest

from realtime_voting import db
from realtime_voting.settings import REPO_ROOT, Settings
from tests.conftest import free_ports, query, run_script

APP = str(REPO_ROOT / "streamlit_app.py")
SCREENSHOTS = REPO_ROOT / ".local" / "screenshots"
ALL_DRAWN = """() => {
    const charts = document.querySelectorAll('[data-testid="stVegaLiteChart"] canvas, '
                                             + '[data-testid="stVegaLiteChart"] svg.marks');
    const tables = [...document.querySelectorAll('[data-testid="stDataFrame"]')];
    return charts.length >= 6 && tables.length >= 2
        && tables.every(table => table.querySelectorAll('[role=gridcell], td').length > 0);
}"""


@pytest.fixture(scope="module")
def counted_election(stack_settings: Settings) -> Iterator[Settings]:
    """An election of 400 voters, voted and counted, in a schema and topics of its own (shared by this module)."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with db.connect(stack_settings) as connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    election = replace(stack_settings, postgres_schema=schema, kafka_topic_prefix=f"test-{uuid.uuid4().hex[:8]}-")
    for script, *args in (("main.py", "--source", "offline", "--voters", "400"),
                          ("voting.py", "--exit-on-idle", "3"), ("spark_streaming.py", "--available-now")):
        result = run_script(election, script, *args)
        assert result.returncode == 0, result.stderr[-3000:]
    yield election


def page(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    for name, value in settings.as_environment().items():
        monkeypatch.setenv(name, value)
    return AppTest.from_file(APP, default_timeout=60)


def run_until(app: AppTest, condition: Callable[[AppTest], bool], timeout_s: float = 60) -> AppTest:
    """Rerun the page until ``condition`` holds (the results reader fills in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        app.run()
        assert not app.exception, app.exception
        if condition(app):
            return app
        assert time.monotonic() < deadline, "the page did not show the expected state in time"
        time.sleep(0.5)  # the reader's poll interval; the loop ends on the condition or the deadline


def metric(app: AppTest, label: str) -> str:
    return next(element.value for element in app.metric if element.label == label)


def has_results(app: AppTest) -> bool:
    return len(app.dataframe) >= 1


def test_the_metrics_equal_the_database_counts(counted_election, monkeypatch):
    app = run_until(page(counted_election, monkeypatch), has_results)
    [(voters, candidates, votes)] = query(
        counted_election,
        "SELECT (SELECT count(*) FROM voters), (SELECT count(*) FROM candidates), (SELECT count(*) FROM votes)")
    assert metric(app, "Registered voters") == f"{voters:,}"
    assert metric(app, "Candidates") == f"{candidates:,}"
    assert metric(app, "Votes cast") == f"{votes:,}"
    assert metric(app, "Turnout") == f"{votes / voters:.1%}"


def test_the_leader_is_the_candidate_with_most_votes_and_the_table_sums_to_votes_cast(counted_election, monkeypatch):
    app = run_until(page(counted_election, monkeypatch), has_results)
    per_candidate = query(counted_election, "SELECT c.candidate_name, count(*) FROM votes JOIN candidates c "
                                            "USING (candidate_id) GROUP BY 1 ORDER BY 2 DESC")
    top = [name for name, votes in per_candidate if votes == per_candidate[0][1]]
    headings = [element.value for element in app.subheader]
    if len(top) == 1:
        assert "Leading candidate" in headings
        assert any(top[0] in element.value for element in app.markdown)
    else:
        assert any(heading.startswith("Tie:") for heading in headings)
    table = app.dataframe[0].value
    assert dict(zip(table["Candidate"], table["Votes"], strict=True)) == dict(per_candidate)
    assert table["Votes"].sum() == query(counted_election, "SELECT count(*) FROM votes")[0][0]
    assert abs(table["Share"].sum() - 1.0) < 1e-9


def test_the_location_table_pages_through_every_state(counted_election, monkeypatch):
    app = run_until(page(counted_election, monkeypatch), lambda a: len(a.dataframe) >= 2)
    states = dict(query(counted_election, "SELECT v.address_state, count(*) FROM votes JOIN voters v "
                                          "USING (voter_id) GROUP BY 1"))
    app.selectbox(key="location_page_size").select(100).run()
    shown = app.dataframe[1].value
    assert len(shown) == min(100, len(states))
    assert all(states[state] == votes for state, votes in zip(shown["State"], shown["Votes"], strict=True))


def test_before_any_vote_the_page_says_so(stack_settings, pg_schema, monkeypatch):
    empty = replace(stack_settings, postgres_schema=pg_schema, kafka_topic_prefix=f"test-{uuid.uuid4().hex[:8]}-")
    app = page(empty, monkeypatch)
    app.run()
    assert not app.exception
    assert metric(app, "Votes cast") == "0"
    assert any("No votes have been counted yet" in element.value for element in app.info)
    assert not app.error


def test_unreachable_services_are_named_instead_of_a_traceback(monkeypatch):
    kafka_port, postgres_port = free_ports(2)
    nowhere = replace(Settings.from_env({}), kafka_bootstrap_servers=f"localhost:{kafka_port}",
                      postgres_port=postgres_port, kafka_topic_prefix=f"test-{uuid.uuid4().hex[:8]}-")
    app = run_until(page(nowhere, monkeypatch), lambda a: len(a.error) >= 2, timeout_s=30)
    errors = " ".join(element.value for element in app.error)
    assert f"localhost:{postgres_port}" in errors and "POSTGRES_HOST" in errors
    assert f"localhost:{kafka_port}" in errors and "KAFKA_BOOTSTRAP_SERVERS" in errors
    assert metric(app, "Votes cast") == "n/a"


@contextmanager
def app_in_a_browser(settings: Settings, path: str = "/") -> Iterator[Page]:
    """streamlit_app.py served on a free port with ``settings`` in its environment, opened at ``path`` in Debian's
    headless Chromium (the test is skipped without it)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium: `make setup` installs Debian's chromium package when it runs as root")
    from playwright.sync_api import sync_playwright

    port = free_ports(1)[0]
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", APP, "--server.headless", "true", "--server.port", str(port),
         "--browser.gatherUsageStats", "false"],
        cwd=REPO_ROOT, env={**os.environ, **settings.as_environment()},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync"])
            try:
                # Tall enough for the whole page: Streamlit scrolls inside its own container, not the window.
                browser_page = browser.new_page(viewport={"width": 1400, "height": 3000})
                deadline = time.monotonic() + 60
                while True:  # the server takes a few seconds to listen
                    try:
                        browser_page.goto(f"http://localhost:{port}{path}")
                        break
                    except PlaywrightError:
                        assert time.monotonic() < deadline and server.poll() is None, "streamlit did not start"
                        time.sleep(0.5)  # retry interval, bounded by the deadline
                yield browser_page
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_dashboard_in_a_real_browser_shows_the_votes_cast(counted_election):
    from playwright.sync_api import expect

    votes = query(counted_election, "SELECT count(*) FROM votes")[0][0]
    with app_in_a_browser(counted_election) as browser_page:
        votes_cast = browser_page.get_by_test_id("stMetric").filter(has_text="Votes cast")
        expect(votes_cast.get_by_test_id("stMetricValue")).to_have_text(f"{votes:,}", timeout=60_000)
        expect(browser_page.get_by_text("Leading candidate").or_(
            browser_page.get_by_text("Tie:"))).to_be_visible(timeout=60_000)
        # Every chart and both tables drawn (not loading skeletons) before the picture is taken.
        browser_page.wait_for_function(ALL_DRAWN, timeout=60_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser_page.screenshot(path=SCREENSHOTS / "dashboard.png")
    assert (SCREENSHOTS / "dashboard.png").stat().st_size > 10_000
