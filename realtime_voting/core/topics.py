"""The pipeline's Kafka topics: their names, and what each carries (``services.elections`` creates them).

- ``voters_topic``: one message per registered voter, keyed by ``voter_id`` (seeding -> voting).
- ``votes_topic``: one message per vote, keyed by ``voter_id`` (voting -> Spark). A vote may appear twice
  after a crash or a re-published voter; it is always the same vote, and the counting deduplicates by voter.
- ``aggregated_*``: the running results, keyed by the group they count, **compacted** so that the latest
  message per key is the current total and a reader never replays history (Spark -> dashboard).
- ``dead_letter_topic``: what a stage rejected, with the original key and bytes and headers that say
  which stage, why, and where it came from (``dlq.*``, the Kafka Connect convention).
"""

from __future__ import annotations

from realtime_voting.core.settings import Settings

VOTERS = "voters_topic"
VOTES = "votes_topic"
DEAD_LETTERS = "dead_letter_topic"
# The running results (Spark -> dashboard), one topic per way of counting.
VOTES_PER_CANDIDATE = "aggregated_votes_per_candidate"
TURNOUT_BY_LOCATION = "aggregated_turnout_by_location"
VOTES_PER_PARTY = "aggregated_votes_per_party"
TURNOUT_BY_GENDER = "aggregated_turnout_by_gender"
TURNOUT_BY_AGE_GROUP = "aggregated_turnout_by_age_group"
VOTES_PER_MINUTE = "aggregated_votes_per_minute"
AGGREGATED = (VOTES_PER_CANDIDATE, TURNOUT_BY_LOCATION, VOTES_PER_PARTY, TURNOUT_BY_GENDER, TURNOUT_BY_AGE_GROUP,
              VOTES_PER_MINUTE)
# The consumer groups (names, and prefixes of names that end in a random part), which ACLs name too.
VOTING_GROUP = "voting-group"
COUNTING_GROUP_PREFIX = "counting-"  # the counting job's Kafka source (Spark's groupIdPrefix)
DASHBOARD_GROUP_PREFIX = "dashboard-"  # each dashboard reader's own group, never committed

COMPACTED = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"}


def checkpoint_root(settings: Settings) -> str:
    """Where the counting job keeps the checkpoints of this election's queries (one folder per topic prefix)."""
    return f"{settings.spark_checkpoint_dir.rstrip('/')}/{settings.kafka_topic_prefix or 'election'}"


def all_topics(settings: Settings) -> list[str]:
    return [settings.topic(name) for name in (VOTERS, VOTES, DEAD_LETTERS, *AGGREGATED)]
