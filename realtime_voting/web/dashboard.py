"""The web app's navigation, and its results page: the live election dashboard, top to bottom as it reads.

``streamlit run streamlit_app.py`` runs ``navigation()``: the results page, and the "Cast your vote" page
(``realtime_voting/web/ballot_page.py``) unless ``DASHBOARD_READ_ONLY`` is set. Each page is a two-line script in
``realtime_voting/web/pages/`` (``st.Page`` runs a file, which ``AppTest.switch_page`` can open too).

Results come from one long-lived ``ResultsReader`` per server process (``st.cache_resource``), which holds the
latest value of every key of the compacted result topics; counts come from PostgreSQL with a short cache.
Only the live part, an ``st.fragment(run_every=...)``, reruns on each refresh.
"""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st

from realtime_voting.core import topics
from realtime_voting.core.settings import Settings
from realtime_voting.services import db
from realtime_voting.web import dashboard_data as data

PAGE_SIZES = (10, 25, 50, 100)
# The pages' scripts, relative to streamlit_app.py (as st.Page, st.page_link and AppTest.switch_page want them).
RESULTS_PAGE = "realtime_voting/web/pages/results.py"
BALLOT_PAGE = "realtime_voting/web/pages/ballot.py"


def navigation() -> st.Page:
    """The app's pages, shared by one navigation; returns the page to run. Read-only: the results page alone."""
    st.set_page_config(page_title="Realtime election", page_icon="🗳️", layout="wide")
    pages = [st.Page(RESULTS_PAGE, title="Election results", icon=":material/bar_chart:", default=True)]
    if not Settings.from_env().dashboard_read_only:
        pages.append(st.Page(BALLOT_PAGE, title="Cast your vote", icon=":material/how_to_vote:", url_path="vote"))
    return st.navigation(pages)


# on_release: a cleared cache (a test's teardown, `st.cache_resource.clear()`) stops the reader's thread and consumer.
@st.cache_resource(show_spinner=False, on_release=data.ResultsReader.close)
def results_reader(settings: Settings) -> data.ResultsReader:
    return data.ResultsReader(settings)


@st.cache_data(ttl=2, show_spinner=False)
def register(settings: Settings) -> data.Register:
    return data.fetch_register(settings)


def colour_scale(colours: dict[str, str] | None) -> alt.Scale | type[alt.Undefined]:
    """A fixed colour per value (``dashboard_data.candidate_colours``), or Vega-Lite's default order without one."""
    return alt.Scale(domain=list(colours), range=list(colours.values())) if colours else alt.Undefined


def bar_chart(frame: pd.DataFrame, category: str, title: str, colours: dict[str, str] | None = None) -> alt.Chart:
    return alt.Chart(frame, title=title).mark_bar().encode(
        x=alt.X("total_votes:Q", title="Votes"),
        y=alt.Y(f"{category}:N", sort="-x", title=None),
        color=alt.Color(f"{category}:N", legend=None, scale=colour_scale(colours)),
        tooltip=[category, "total_votes", alt.Tooltip("share:Q", format=".1%")],
    )


def donut_chart(frame: pd.DataFrame, category: str, title: str, colours: dict[str, str] | None = None) -> alt.Chart:
    return alt.Chart(frame, title=title).mark_arc(innerRadius=60).encode(
        theta="total_votes:Q",
        color=alt.Color(f"{category}:N", title=None, scale=colour_scale(colours)),
        tooltip=[category, "total_votes", alt.Tooltip("share:Q", format=".1%")],
    )


def show_results(settings: Settings) -> None:
    """The live part: everything that changes with the votes, top to bottom as the page shows it."""
    now = datetime.now(UTC)
    counts, results = read_election(settings)
    show_freshness(now, counts, results)
    show_metrics(counts)
    table = data.candidate_table(results)
    if table.empty:
        st.info("No votes have been counted yet. Results appear here as soon as `spark_streaming.py` counts "
                f"the first votes on {settings.topic(topics.VOTES)} ({settings.kafka_bootstrap_servers}).")
        return
    show_leader(table)
    colours = data.candidate_colours(table)
    show_candidate_votes(table, colours)
    show_groups(results, data.party_colours(table))
    show_race(results, colours)
    show_location_table(results)


def read_election(settings: Settings) -> tuple[data.Register | None, data.Results]:
    """PostgreSQL's counts (None while it is unreachable) and the latest results; an error on the page names each
    service that cannot be reached."""
    problems = []
    try:
        counts = register(settings)
    except db.PostgresUnavailable as error:
        counts = None
        problems.append(str(error))
    results = results_reader(settings).snapshot()
    if results.kafka_error:
        problems.append(results.kafka_error)
    for problem in problems:
        st.error(f"{problem}. The page recovers by itself when it is back; `make status` shows the local stack.")
    return counts, results


def show_freshness(now: datetime, counts: data.Register | None, results: data.Results) -> None:
    """When the page and the newest result were computed, and how many cast votes the results do not count yet."""
    newest = results.newest_computed_at
    age = data.seconds_since(newest, now)
    freshness = f"newest result computed {age:.0f}s ago" if age is not None else "no result computed yet"
    behind = ""
    if counts is not None and newest is not None:
        behind = f"; {max(counts.votes_cast - results.votes_counted, 0):,} cast votes not counted yet"
    st.caption(f"Last refreshed {now:%H:%M:%S} UTC; {freshness}{behind}.")


def show_metrics(counts: data.Register | None) -> None:
    metrics = st.columns(4)
    metrics[0].metric("Registered voters", f"{counts.voters:,}" if counts else "n/a")
    metrics[1].metric("Candidates", f"{counts.candidates:,}" if counts else "n/a")
    metrics[2].metric("Votes cast", f"{counts.votes_cast:,}" if counts else "n/a")
    turnout = counts.turnout if counts else None
    metrics[3].metric("Turnout", f"{turnout:.1%}" if turnout is not None else "n/a")


def show_leader(table: pd.DataFrame) -> None:
    leading = data.leaders(table)
    if leading.empty:
        st.info("No votes counted yet: the leader appears with the first result.")
        return
    if len(leading) > 1:
        names = " and ".join(leading["candidate_name"])
        st.subheader(f"Tie: {names}")
        st.caption(f"{len(leading)} candidates lead with {int(leading['total_votes'].iloc[0]):,} votes each.")
    else:
        st.subheader("Leading candidate")
    columns = st.columns(max(len(leading), 2))
    for column, leader in zip(columns, leading.itertuples(), strict=False):
        with column:
            if leader.photo_url:
                st.image(leader.photo_url, width=160)
            st.markdown(f"**{leader.candidate_name}**  \n{leader.party_affiliation}")
            st.markdown(f"{int(leader.total_votes):,} votes ({leader.share:.1%})")


def show_candidate_votes(table: pd.DataFrame, colours: dict[str, str]) -> None:
    st.subheader("Votes per candidate")
    charts = st.columns(2)
    charts[0].altair_chart(bar_chart(table, "candidate_name", "Votes", colours), width="stretch")
    charts[1].altair_chart(donut_chart(table, "candidate_name", "Share", colours), width="stretch")
    shown = table[["candidate_name", "party_affiliation", "total_votes", "share"]].rename(columns={
        "candidate_name": "Candidate", "party_affiliation": "Party", "total_votes": "Votes", "share": "Share"})
    st.dataframe(shown, hide_index=True, width="stretch",
                 column_config={"Share": st.column_config.NumberColumn(format="percent")})
    st.download_button("Download candidates (CSV)", shown.to_csv(index=False), "votes_per_candidate.csv",
                       "text/csv", key="download_candidates")


def show_groups(results: data.Results, party_colours: dict[str, str]) -> None:
    """Votes per party, and turnout by gender and by age group, side by side."""
    st.subheader("Votes per party and turnout by group")
    groups = st.columns(3)
    groups[0].altair_chart(bar_chart(data.tally_table(results, topics.VOTES_PER_PARTY, "party_affiliation"),
                                     "party_affiliation", "Votes per party", party_colours),
                           width="stretch")
    groups[1].altair_chart(donut_chart(data.tally_table(results, topics.TURNOUT_BY_GENDER, "gender"),
                                       "gender", "Turnout by gender"), width="stretch")
    ages = data.tally_table(results, topics.TURNOUT_BY_AGE_GROUP, "age_group").sort_values("age_group")
    groups[2].altair_chart(
        alt.Chart(ages, title="Turnout by age group").mark_bar().encode(
            x=alt.X("age_group:N", title=None, sort=None), y=alt.Y("total_votes:Q", title="Votes"),
            tooltip=["age_group", "total_votes"]),
        width="stretch")


def show_race(results: data.Results, colours: dict[str, str]) -> None:
    """Each candidate's running total per minute, once there is a minute to show."""
    race = data.votes_over_time(results)
    if race.empty:
        return
    st.subheader("Votes over time")
    st.altair_chart(
        alt.Chart(race).mark_line(point=True).encode(
            x=alt.X("window_end:T", title="Time (UTC)"), y=alt.Y("votes_so_far:Q", title="Votes so far"),
            color=alt.Color("candidate_name:N", title="Candidate", scale=colour_scale(colours)),
            tooltip=["candidate_name", "window_end:T", "total_votes", "votes_so_far"]),
        width="stretch")


def show_location_table(results: data.Results) -> None:
    st.subheader("Turnout by location")
    locations = data.tally_table(results, topics.TURNOUT_BY_LOCATION, "state")
    if locations.empty:
        st.caption("No location results yet.")
        return
    controls = st.columns(3)
    sort_by = controls[0].selectbox("Sort by", ["Votes", "State"], key="location_sort")
    page_size = controls[1].selectbox("Rows per page", PAGE_SIZES, index=0, key="location_page_size")
    pages = max(1, -(-len(locations) // page_size))
    page = controls[2].number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key="location_page")
    ordered = locations.sort_values(["total_votes", "state"], ascending=[False, True]) if sort_by == "Votes" \
        else locations.sort_values("state")
    st.dataframe(
        data.page_of(ordered, int(page), page_size).rename(columns={"state": "State", "total_votes": "Votes",
                                                                    "share": "Share"}),
        hide_index=True, width="stretch",
        column_config={"Share": st.column_config.NumberColumn(format="percent")},
    )
    st.download_button("Download locations (CSV)", locations.to_csv(index=False), "turnout_by_location.csv",
                       "text/csv", key="download_locations")


def render() -> None:
    settings = Settings.from_env()
    st.title("Realtime election results")
    with st.sidebar:
        st.header("Refresh")
        interval = st.slider("Refresh every (seconds)", min_value=1, max_value=60, value=1, key="refresh_seconds")
        if st.button("Refresh now"):
            register.clear()
        st.caption(f"Kafka: {settings.kafka_bootstrap_servers}  \n"
                   f"PostgreSQL: {settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}")
    st.fragment(run_every=interval)(show_results)(settings)
