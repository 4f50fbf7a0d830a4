"""The counting job's transformations on small batch DataFrames (no Kafka): validation, dedup, tallies, dead
letters, and the task slots Real-Time Mode needs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from realtime_voting.core import topics
from realtime_voting.core.schemas import Candidate, Rejection, Result, encode
from realtime_voting.core.settings import Settings
from realtime_voting.core.topics import checkpoint_root
from realtime_voting.counting.job import (
    CheckpointFromEarlierVersion,
    NotEnoughTaskSlots,
    classify_votes,
    counting_checkpoint,
    counting_records,
    local_master_for,
    task_slots_needed,
)

SETTINGS = replace(Settings.from_env({}), kafka_topic_prefix="t-")
# The result topics of SETTINGS' election, by what they count.
PER_CANDIDATE, PER_PARTY, BY_LOCATION, BY_GENDER, BY_AGE_GROUP, PER_MINUTE = (
    SETTINGS.topic(name) for name in (topics.VOTES_PER_CANDIDATE, topics.VOTES_PER_PARTY, topics.TURNOUT_BY_LOCATION,
                                      topics.TURNOUT_BY_GENDER, topics.TURNOUT_BY_AGE_GROUP, topics.VOTES_PER_MINUTE))
CANDIDATES = [
    Candidate("c-1", "Jennie Nichols", "Management Party", "", "", "https://x/1.jpg"),
    Candidate("c-2", "Harry Pearson", "Savior Party", "", "", "https://x/2.jpg"),
]


def vote(voter_id="v-1", candidate_id="c-1", voting_time="2026-11-24T12:00:30.5+00:00", **extra) -> bytes:
    body = {"voter_id": voter_id, "candidate_id": candidate_id, "voting_time": voting_time,
            "address_state": "Devon", "gender": "female", "date_of_birth": "1990-06-01",
            # What the message says about the candidate is ignored: the candidates table is the reference.
            "candidate_name": "Forged Name", "party_affiliation": "Forged Party", **extra}
    return encode(body)


def classify(spark, values: list[bytes | None]):
    raw = spark.createDataFrame(
        [(f"k{number}".encode(), value, topics.VOTES, 0, number) for number, value in enumerate(values)],
        "key binary, value binary, topic string, partition int, offset long",
    )
    return classify_votes(raw, CANDIDATES)


def records(spark, values: list[bytes | None]) -> list:
    return counting_records(classify(spark, values), SETTINGS).collect()


def results(rows) -> dict[tuple[str, str], Result]:
    """The result records among ``rows``, by (topic, key)."""
    dead_letters = SETTINGS.topic(topics.DEAD_LETTERS)
    return {(row.topic, bytes(row.key).decode()): Result.from_message(bytes(row.value)) for row in rows
            if row.topic != dead_letters}


def counted(classified) -> list:
    return [row for row in classified.collect() if row.reason is None]


BAD_VOTES = [
    (b"{not json", "not valid JSON"),
    (None, "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"candidate_id": "c-1", "voting_time": "2026-11-24T12:00:00Z"}', "missing voter_id"),
    (vote(voter_id=None), "missing voter_id"),
    (vote(voter_id=42), "voter_id must be a string, got bigint"),
    (vote(candidate_id=None), "missing candidate_id"),
    (vote(candidate_id=["c-1"]), "candidate_id must be a string, got array<string>"),
    (vote(candidate_id="c-404"), "unknown candidate c-404"),
    (vote(voting_time=None), "missing voting_time"),
    (vote(voting_time="yesterday-ish"), "voting_time is not a time: yesterday-ish"),
]


def test_bad_votes_are_not_counted_and_each_says_why(spark):
    classified = classify(spark, [value for value, _ in BAD_VOTES] + [vote()])
    reasons = {row.offset: row.reason for row in classified.collect()}
    assert reasons == {**{offset: reason for offset, (_, reason) in enumerate(BAD_VOTES)}, len(BAD_VOTES): None}
    assert [row.voter_id for row in counted(classified)] == ["v-1"]


def test_a_valid_vote_takes_the_candidate_from_the_candidates_table(spark):
    [row] = counted(classify(spark, [vote()]))
    assert (row.voter_id, row.candidate_id, row.candidate_name, row.party_affiliation) == (
        "v-1", "c-1", "Jennie Nichols", "Management Party")
    assert row.voting_time.isoformat() == "2026-11-24T12:00:30.500000"


def test_dead_letters_keep_the_original_bytes_and_carry_the_reason(spark):
    [row] = records(spark, [b"{not json"])
    assert (row.topic, bytes(row.key), bytes(row.value)) == (SETTINGS.topic(topics.DEAD_LETTERS), b"k0", b"{not json")
    rejection = Rejection.from_headers([(header.key, bytes(header.value)) for header in row.headers])
    assert rejection == Rejection(stage="counting", reason="not valid JSON", source_topic=topics.VOTES,
                                  source_partition=0, source_offset=0)


def test_tallies_count_each_voter_once_in_every_result(spark):
    values = [
        vote("v-1", "c-1"), vote("v-1", "c-1"),  # the same vote twice: counted once
        vote("v-4", "c-1", date_of_birth="2000-02-29", voting_time="2026-02-28T12:00:00Z"),  # 25, not 26
        vote("v-2", "c-2", gender="male", address_state="Kent", date_of_birth="1950-01-01"),
        vote("v-3", "c-2", date_of_birth="2008-11-25"),  # 17 at voting time
        b"{broken",
    ]
    totals = results(records(spark, values))
    assert totals[(PER_CANDIDATE, "c-2")] == Result(
        candidate_id="c-2", candidate_name="Harry Pearson", party_affiliation="Savior Party",
        photo_url="https://x/2.jpg", total_votes=2)
    assert totals[(PER_CANDIDATE, "c-1")].total_votes == 2
    assert totals[(PER_PARTY, "Management Party")] == Result(party_affiliation="Management Party", total_votes=2)
    assert totals[(BY_LOCATION, "Devon")] == Result(state="Devon", total_votes=3)
    assert totals[(BY_LOCATION, "Kent")].total_votes == 1
    assert totals[(BY_GENDER, "female")] == Result(gender="female", total_votes=3)
    assert totals[(BY_AGE_GROUP, "25-34")] == Result(age_group="25-34", total_votes=1)
    assert totals[(BY_AGE_GROUP, "65+")].total_votes == 1
    assert totals[(BY_AGE_GROUP, "35-44")].total_votes == 1
    assert totals[(BY_AGE_GROUP, "under 18")].total_votes == 1
    assert sum(result.total_votes for (topic, _), result in totals.items() if topic == PER_CANDIDATE) == 4


def test_votes_per_minute_count_each_candidate_in_its_minute(spark):
    values = [vote("v-1", "c-1", "2026-11-24T12:00:59Z"), vote("v-1", "c-1", "2026-11-24T12:00:59Z"),
              vote("v-2", "c-1", "2026-11-24T12:01:00Z"), vote("v-3", "c-2", "2026-11-24T12:00:01Z")]
    minutes = {key: value for key, value in results(records(spark, values)).items() if key[0] == PER_MINUTE}
    first = minutes[(PER_MINUTE, "c-1|2026-11-24T12:00Z")]
    assert (first.total_votes, first.window_start, first.window_end) == (
        1, datetime(2026, 11, 24, 12, 0, tzinfo=UTC), datetime(2026, 11, 24, 12, 1, tzinfo=UTC))
    assert minutes[(PER_MINUTE, "c-1|2026-11-24T12:01Z")].total_votes == 1
    assert minutes[(PER_MINUTE, "c-2|2026-11-24T12:00Z")].candidate_name == "Harry Pearson"
    assert len(minutes) == 3


def test_each_message_becomes_its_results_or_its_dead_letter_in_one_pass(spark):
    rows = records(spark, [vote("v-1"), b"{broken", b"{broken"])
    topics_written = sorted(row.topic for row in rows)
    # Six results for the vote; the two broken messages (offsets 1 and 2) are each a dead letter of their own.
    assert topics_written == sorted([PER_CANDIDATE, PER_PARTY, BY_LOCATION, BY_GENDER, BY_AGE_GROUP, PER_MINUTE]
                                    + [SETTINGS.topic(topics.DEAD_LETTERS)] * 2)
    assert all(row.headers == [] for row in rows if row.topic != SETTINGS.topic(topics.DEAD_LETTERS))


def test_each_message_is_parsed_once_for_its_results_and_its_dead_letter(spark):
    plan = counting_records(classify(spark, [vote()]), SETTINGS)._jdf.queryExecution().executedPlan().toString()
    assert plan.count("parseJson(") == 1


def test_real_time_mode_holds_a_slot_per_vote_partition_and_per_stateful_stage():
    assert task_slots_needed(vote_partitions=3, shuffle_partitions=1) == 5
    assert task_slots_needed(vote_partitions=12, shuffle_partitions=4) == 20


def test_a_local_master_gets_the_slots_real_time_mode_needs_or_a_clear_refusal():
    assert local_master_for(replace(SETTINGS, spark_master="local[*]"), 5) == "local[5]"
    assert local_master_for(replace(SETTINGS, spark_master="local[8]"), 5) == "local[8]"
    assert local_master_for(replace(SETTINGS, spark_master="local[2]", spark_counting_mode="microbatch"), 5) == (
        "local[2]")
    assert local_master_for(replace(SETTINGS, spark_master="local"), 5) == "local[5]"
    assert local_master_for(replace(SETTINGS, spark_master="spark://master:7077"), 5) == "spark://master:7077"
    with pytest.raises(NotEnoughTaskSlots, match=r"SPARK_MASTER=local\[2\] offers 2 task slot\(s\).*local\[5\]"):
        local_master_for(replace(SETTINGS, spark_master="local[2]"), 5)


def test_an_earlier_versions_checkpoint_is_refused_naming_the_command_that_rebuilds_it(tmp_path):
    settings = replace(SETTINGS, spark_checkpoint_dir=str(tmp_path))
    earlier = Path(checkpoint_root(settings)) / "tallies" / "offsets"
    earlier.mkdir(parents=True)
    with pytest.raises(CheckpointFromEarlierVersion, match="python spark_streaming.py --rebuild-checkpoint"):
        counting_checkpoint(settings, rebuild=False)
    assert counting_checkpoint(settings, rebuild=True).endswith("/counting")
    assert not earlier.exists()


def test_the_state_of_a_first_batch_that_never_committed_is_cleared_and_a_committed_one_kept(tmp_path):
    settings = replace(SETTINGS, spark_checkpoint_dir=str(tmp_path))
    checkpoint = Path(checkpoint_root(settings)) / "counting"
    (checkpoint / "state" / "0").mkdir(parents=True)
    counting_checkpoint(settings, rebuild=False)
    assert not (checkpoint / "state").exists()  # killed in batch 0: no offsets written, nothing committed
    (checkpoint / "state" / "0").mkdir(parents=True)
    (checkpoint / "offsets").mkdir()
    (checkpoint / "offsets" / "0").write_text("v2\n")
    counting_checkpoint(settings, rebuild=False)
    assert (checkpoint / "state" / "0").exists()
