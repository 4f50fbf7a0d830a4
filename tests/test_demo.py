"""``make demo`` as a person sees it, in headless Chromium: a paced election whose counts climb on the dashboard, and
a voter it prints who signs in on the ballot page and casts a vote that the running counting job counts."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from realtime_voting.core import waiting
from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.services.db import query
from realtime_voting.voting.stage import stays_home
from tests.support.browser import ALL_DRAWN, SCREENSHOTS, chromium_page, metric_value, open_when_served
from tests.support.ports import free_ports

pytestmark = [pytest.mark.browser, pytest.mark.spark]

VOTERS, RATE, TURNOUT, SEED = 1600, 10, 0.75, 5  # 1,200 votes at 10 a second: two minutes of voting
PRINTED_VOTER = re.compile(r"voter ID (\S+)\s+registration number (\S+)")
PROGRESS = re.compile(r"votes cast ([\d,]+) of ([\d,]+) voters, counted ([\d,]+)")


class Demo:
    """``python -m realtime_voting.running.demo`` running with an election's settings; its output in a log file."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def wait_for_lines(self, pattern: re.Pattern[str], count: int, timeout_s: float) -> list[re.Match[str]]:
        def printed() -> list[re.Match[str]]:
            return [match for line in self.lines if (match := pattern.search(line))]

        def enough() -> bool:
            assert self.process.poll() is None or len(printed()) >= count, (
                "the demo exited:\n" + "\n".join(self.lines[-30:]))
            return len(printed()) >= count

        waiting.until(enough, timeout_s=timeout_s, what=f"the demo printing {count} lines {pattern.pattern!r}",
                      explain=lambda: "\n".join(self.lines))
        return printed()

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; its exit status."""
        return processes.stop("the demo", self.process, timeout_s=90, how=signal.SIGINT)


@pytest.fixture
def demo(election: Settings, tmp_path: Path) -> Iterator[Demo]:
    port, log = free_ports(1)[0], tmp_path / "demo.log"
    with processes.running(election, "-m", "realtime_voting.running.demo", "--voters", str(VOTERS), "--rate", str(RATE),
                           "--turnout", str(TURNOUT), "--seed", str(SEED), "--port", str(port), log=log,
                           timeout_s=90) as process:
        yield Demo(process, port, log)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def watch_votes_cast_climb(page: Page, refreshes: int) -> list[int]:
    """The "Votes cast" figure across ``refreshes`` refreshes of the page's live part, each higher than the last."""
    seen = [number(metric_value(page, "Votes cast"))]
    for _ in range(refreshes):
        waiting.until(lambda: number(metric_value(page, "Votes cast")) > seen[-1], timeout_s=30,
                      what="the votes cast rising")
        seen.append(number(metric_value(page, "Votes cast")))
    return seen


def test_a_paced_election_climbs_on_the_dashboard_and_a_printed_voter_votes_on_the_ballot_page(election, demo):
    [first_voter, *_] = demo.wait_for_lines(PRINTED_VOTER, 3, timeout_s=120)
    voter_id, registration_number = first_voter.groups()
    [(voter_name, candidates)] = query(election, "SELECT voter_name, (SELECT count(*) FROM candidates) FROM voters "
                                                 "WHERE voter_id = %s", (voter_id,))
    assert stays_home(voter_id, TURNOUT, SEED) and candidates == 3
    voting = [voter for (voter,) in query(election, "SELECT voter_id FROM voters")
              if not stays_home(voter, TURNOUT, SEED)]

    with chromium_page() as page:
        open_when_served(page, f"http://localhost:{demo.port}/", lambda: demo.process.poll() is None)
        climbing = watch_votes_cast_climb(page, refreshes=2)
        assert climbing[-1] < len(voting), "the election was over before the page could watch it"

        # Counted by the demo's Spark job while votes still arrive: a picture of the election in progress.
        expect(page.get_by_text("Leading candidate").or_(page.get_by_text("Tie:"))).to_be_visible(timeout=180_000)
        page.wait_for_function(ALL_DRAWN, timeout=60_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "dashboard.png")
        mid_election = number(metric_value(page, "Votes cast"))

        page.goto(f"http://localhost:{demo.port}/vote")
        page.get_by_label("Voter ID").fill(voter_id)
        page.get_by_label("Registration number").fill(registration_number)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text(f"Signed in as {voter_name}")).to_be_visible(timeout=30_000)
        [(name, party)] = query(election, "SELECT candidate_name, party_affiliation FROM candidates "
                                          "ORDER BY candidate_id LIMIT 1")
        page.get_by_text(f"{name} ({party})").click()
        page.get_by_text("I confirm my choice").click()
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                               ".filter(img => img.complete && img.naturalWidth > 0).length >= 3")
        page.screenshot(path=SCREENSHOTS / "ballot.png", clip={"x": 0, "y": 0, "width": 1400, "height": 860})
        page.get_by_role("button", name="Cast my vote").click()
        expect(page.get_by_text(f"Your vote for {name}")).to_be_visible(timeout=30_000)

        # Once every voter has had their turn, the page shows all their votes and the printed voter's, all counted.
        page.get_by_text("See the results").click()
        final = len(voting) + 1
        waiting.until(lambda: metric_value(page, "Votes cast") == f"{final:,}", timeout_s=240,
                      what=f"the votes cast reaching {final}")
        expect(page.get_by_text(re.compile(r"; 0 cast votes not counted yet"))).to_be_visible(timeout=120_000)

    assert query(election, "SELECT candidate_id FROM votes JOIN candidates USING (candidate_id) "
                           "WHERE voter_id = %s AND candidate_name = %s", (voter_id, name)) != []
    assert query(election, "SELECT count(*) FROM votes") == [(final,)]
    progress = demo.wait_for_lines(PROGRESS, 2, timeout_s=10)
    assert number(progress[-1].group(3)) > 0, "the progress line never showed a counted vote"
    assert demo.stop() == 0
    assert mid_election < len(voting), "the counting job's first results came after the election: no live picture"
    for picture in ("dashboard.png", "ballot.png"):
        assert (SCREENSHOTS / picture).stat().st_size > 10_000
