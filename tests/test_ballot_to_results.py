"""A ballot cast in a real browser (headless Chromium) shows on the results page, open in another tab, within two
seconds: the counting job in its default mode (Real-Time Mode) and the results page refreshing every second."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.services.db import query
from tests.support.ballot_page import voters
from tests.support.browser import chromium_page, open_when_served
from tests.support.ports import free_ports
from tests.support.stages import seed

pytestmark = [pytest.mark.browser, pytest.mark.spark]

SHOWN_WITHIN_MS = 2000  # issue #23: from "Cast my vote" to the count on the results page


@pytest.fixture
def app_port(election: Settings, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """The counting job (running until stopped, in its default mode) and the web app: its port and process."""
    port = free_ports(1)[0]
    with (processes.running(election, "spark_streaming.py", log=tmp_path / "counting.log"),
          processes.running(election, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
                            "--server.port", str(port), "--browser.gatherUsageStats", "false",
                            log=tmp_path / "app.log") as app):
        yield port, app


def cast(ballot: Page, port: int, voter: tuple[str, str], candidate: str) -> None:
    """Sign in as ``voter`` (ID, registration number) on the ballot page and choose ``candidate``, up to the click
    on "Cast my vote", which is left to the caller."""
    voter_id, registration_number = voter
    ballot.goto(f"http://localhost:{port}/vote")
    ballot.get_by_label("Voter ID").fill(voter_id)
    ballot.get_by_label("Registration number").fill(registration_number)
    ballot.get_by_role("button", name="Sign in").click()
    ballot.get_by_text(candidate).click()
    ballot.get_by_text("I confirm my choice").click()


def test_a_ballot_cast_in_the_browser_shows_on_the_results_page_within_two_seconds(election, app_port):
    port, app = app_port
    seed(election, "--voters", "3", "--candidates", "2")
    first_voter, second_voter, _ = voters(election)
    [(name, party)] = query(election, "SELECT candidate_name, party_affiliation FROM candidates "
                                      "ORDER BY candidate_id LIMIT 1")
    with chromium_page() as ballot:
        results = ballot.context.browser.new_page(viewport={"width": 1400, "height": 3000})
        open_when_served(results, f"http://localhost:{port}/", lambda: app.poll() is None)

        # The first ballot: once the results page shows it, the counting job has started and counts as votes come.
        cast(ballot, port, first_voter, f"{name} ({party})")
        ballot.get_by_role("button", name="Cast my vote").click()
        expect(ballot.get_by_text(f"Your vote for {name}")).to_be_visible(timeout=30_000)
        expect(results.get_by_text("1 votes (100.0%)")).to_be_visible(timeout=180_000)

        cast(ballot, port, second_voter, f"{name} ({party})")
        ballot.get_by_role("button", name="Cast my vote").click()
        expect(results.get_by_text("2 votes (100.0%)")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    assert query(election, "SELECT count(*) FROM votes") == [(2,)]
