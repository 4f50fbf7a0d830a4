"""The dashboard's pure functions, on hand-made results."""

from datetime import datetime, timedelta

import pandas as pd

from realtime_voting.core import topics
from realtime_voting.core.schemas import Result, keep_highest
from realtime_voting.web import dashboard_data as data


def minute_before(end: str) -> datetime:
    return datetime.fromisoformat(end) - timedelta(minutes=1)


def results_with(candidates: list[tuple[str, str, int]], minutes: list[tuple[str, str, int]] = ()) -> data.Results:
    per_candidate = {cid: Result(candidate_id=cid, candidate_name=name, party_affiliation=f"{name} Party",
                                 photo_url="", total_votes=votes)
                     for cid, name, votes in candidates}
    per_minute = {f"{name}|{end}": Result(candidate_name=name, window_start=minute_before(end),
                                          window_end=datetime.fromisoformat(end), total_votes=votes)
                  for name, end, votes in minutes}
    return data.Results({topics.VOTES_PER_CANDIDATE: per_candidate, topics.VOTES_PER_MINUTE: per_minute})


def test_the_candidate_table_is_sorted_by_votes_with_shares():
    table = data.candidate_table(results_with([("a", "Ann", 10), ("b", "Bob", 30)]))
    assert list(table["candidate_name"]) == ["Bob", "Ann"]
    assert list(table["share"]) == [0.75, 0.25]


def test_one_leader_normally_several_in_a_tie_none_before_votes():
    assert list(data.leaders(data.candidate_table(results_with([("a", "Ann", 10), ("b", "Bob", 30)])))
                ["candidate_name"]) == ["Bob"]
    tie = data.leaders(data.candidate_table(results_with([("a", "Ann", 7), ("b", "Bob", 7), ("c", "Cy", 1)])))
    assert sorted(tie["candidate_name"]) == ["Ann", "Bob"]
    assert data.leaders(data.candidate_table(results_with([]))).empty
    assert data.leaders(data.candidate_table(results_with([("a", "Ann", 0)]))).empty


def test_the_votes_counted_are_the_per_candidate_totals():
    results = results_with([("a", "Ann", 10), ("b", "Bob", 5)], [("Ann", "2026-11-24T12:01:00.000Z", 3)])
    assert results.votes_counted == 15
    assert data.Results().votes_counted == 0 and data.Results().newest_computed_at is None


def test_a_lower_total_sent_again_after_a_replay_never_replaces_a_higher_one():
    latest: dict[str, dict] = {}
    for total in (1, 5, 3, 5, 7, 2):  # a restart's replay re-sends 3 after 5, and 2 after 7
        keep_highest(latest, "a", Result(candidate_id="a", total_votes=total))
    assert latest == {"a": Result(candidate_id="a", total_votes=7)}


def test_votes_over_time_accumulate_per_candidate():
    race = data.votes_over_time(results_with([], [("Ann", "2026-11-24T12:02:00.000Z", 4),
                                                  ("Ann", "2026-11-24T12:01:00.000Z", 3),
                                                  ("Bob", "2026-11-24T12:01:00.000Z", 5)]))
    ann = race[race["candidate_name"] == "Ann"]
    assert list(ann["votes_so_far"]) == [0, 3, 7]
    assert list(ann["window_end"].dt.strftime("%H:%M")) == ["12:00", "12:01", "12:02"]


def test_in_the_first_minute_every_candidate_already_has_a_line_from_zero():
    race = data.votes_over_time(results_with([], [("Ann", "2026-11-24T12:01:00.000Z", 3),
                                                  ("Bob", "2026-11-24T12:01:00.000Z", 5)]))
    assert race.groupby("candidate_name")["votes_so_far"].apply(list).to_dict() == {"Ann": [0, 3], "Bob": [0, 5]}


def test_a_candidate_and_their_party_have_one_colour_whatever_the_order_of_the_counts():
    leading_ann = data.candidate_table(results_with([("a", "Ann", 30), ("b", "Bob", 10), ("c", "Cy", 20)]))
    leading_bob = data.candidate_table(results_with([("a", "Ann", 1), ("b", "Bob", 50), ("c", "Cy", 2)]))
    colours = data.candidate_colours(leading_ann)
    assert colours == data.candidate_colours(leading_bob)
    assert len(set(colours.values())) == 3
    assert data.party_colours(leading_bob) == {f"{name} Party": colour for name, colour in colours.items()}


def test_pages_are_clamped_to_the_rows_there_are():
    frame = pd.DataFrame({"n": range(23)})
    assert list(data.page_of(frame, 1, 10)["n"]) == list(range(10))
    assert list(data.page_of(frame, 3, 10)["n"]) == [20, 21, 22]
    assert list(data.page_of(frame, 9, 10)["n"]) == [20, 21, 22]


def test_turnout_is_votes_over_registered_voters():
    assert data.Register(200, 3, 50, None).turnout == 0.25
    assert data.Register(0, 0, 0, None).turnout is None
