"""The dashboard page, headless (Streamlit's AppTest) against the real stack after a small counted election,
and in its empty and unreachable states. In a real browser, during a live election: tests/test_demo.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from realtime_voting.core import waiting
from realtime_voting.core.settings import Settings
from realtime_voting.services import elections
from realtime_voting.services.db import query
from tests.support.ports import free_ports
from tests.support.stages import count, seed, vote


@pytest.fixture(scope="module")
def counted_election(stack_settings: Settings) -> Iterator[Settings]:
    """An election of 400 voters, voted and counted, in a schema and topics of its own (shared by this module,
    removed after it)."""
    with elections.throwaway(stack_settings, "dashboard") as election:
        seed(election, "--voters", "400")
        vote(election)
        count(election)
        yield election


def run_until(app: AppTest, condition: Callable[[AppTest], bool], timeout_s: float = 60) -> AppTest:
    """Rerun the page until ``condition`` holds (the results reader fills in the background)."""

    def shows_it() -> bool:
        app.run()
        assert not app.exception, app.exception
        return condition(app)

    waiting.until(shows_it, timeout_s=timeout_s, what="the page showing the expected state", every_s=0.5)
    return app


def metric(app: AppTest, label: str) -> str:
    return next(element.value for element in app.metric if element.label == label)


def has_results(app: AppTest) -> bool:
    return len(app.dataframe) >= 1


@pytest.mark.spark  # counted_election ran the counting job
def test_the_metrics_equal_the_database_counts(counted_election, streamlit_app):
    app = run_until(streamlit_app(counted_election), has_results)
    [(voters, candidates, votes)] = query(
        counted_election,
        "SELECT (SELECT count(*) FROM voters), (SELECT count(*) FROM candidates), (SELECT count(*) FROM votes)")
    assert metric(app, "Registered voters") == f"{voters:,}"
    assert metric(app, "Candidates") == f"{candidates:,}"
    assert metric(app, "Votes cast") == f"{votes:,}"
    assert metric(app, "Turnout") == f"{votes / voters:.1%}"


@pytest.mark.spark  # counted_election ran the counting job
def test_the_leader_is_the_candidate_with_most_votes_and_the_table_sums_to_votes_cast(counted_election,
                                                                                       streamlit_app):
    app = run_until(streamlit_app(counted_election), has_results)
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


@pytest.mark.spark  # counted_election ran the counting job
def test_the_location_table_pages_through_every_state(counted_election, streamlit_app):
    app = run_until(streamlit_app(counted_election), lambda a: len(a.dataframe) >= 2)
    states = dict(query(counted_election, "SELECT v.address_state, count(*) FROM votes JOIN voters v "
                                          "USING (voter_id) GROUP BY 1"))
    app.selectbox(key="location_page_size").select(100).run()
    shown = app.dataframe[1].value
    assert len(shown) == min(100, len(states))
    assert all(states[state] == votes for state, votes in zip(shown["State"], shown["Votes"], strict=True))


def test_before_any_vote_the_page_says_so(election, streamlit_app):
    app = streamlit_app(election)
    app.run()
    assert not app.exception
    assert metric(app, "Votes cast") == "0"
    assert any("No votes have been counted yet" in element.value for element in app.info)
    assert not app.error


def test_unreachable_services_are_named_instead_of_a_traceback(streamlit_app):
    kafka_port, postgres_port = free_ports(2)
    nowhere = replace(Settings.from_env({}), kafka_bootstrap_servers=f"localhost:{kafka_port}",
                      postgres_port=postgres_port)
    app = run_until(streamlit_app(nowhere), lambda a: len(a.error) >= 2, timeout_s=30)
    errors = " ".join(element.value for element in app.error)
    assert f"localhost:{postgres_port}" in errors and "POSTGRES_HOST" in errors
    assert f"localhost:{kafka_port}" in errors and "KAFKA_BOOTSTRAP_SERVERS" in errors
    assert metric(app, "Votes cast") == "n/a"
