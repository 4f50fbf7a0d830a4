"""The dashboard's data, with no Streamlit in it: the current results and the register's counts.

- ``ResultsReader`` keeps the current value of every key of the compacted ``aggregated_*`` topics (the highest
  total seen, ``schemas.keep_highest``: a replay by the counting job never makes one fall). It reads
  each topic once from the beginning and then only what is new, in one background thread, so one reader per
  server process serves every browser session (the page caches it with ``st.cache_resource``). It is
  thread-safe: ``snapshot()`` returns a copy.
- ``fetch_register`` counts voters, candidates and votes cast in PostgreSQL.
- The rest are pure functions from results to the tables and figures the page shows.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from realtime_voting.core import topics
from realtime_voting.core.schemas import InvalidMessage, Result, keep_highest
from realtime_voting.core.settings import Settings
from realtime_voting.services import db, kafka_io

logger = logging.getLogger(__name__)

METADATA_EVERY_S = 3.0  # how often the reader looks for result topics (and partitions) that appeared


@dataclass(frozen=True)
class Register:
    """What PostgreSQL says: who may vote, who stands, how many voted."""

    voters: int
    candidates: int
    votes_cast: int
    latest_vote_at: datetime | None

    @property
    def turnout(self) -> float | None:
        return self.votes_cast / self.voters if self.voters else None


def fetch_register(settings: Settings) -> Register:
    """Count the register; raises ``db.PostgresUnavailable`` (with a message saying where) when unreachable."""
    with db.short_lived_connection(settings) as connection, connection, connection.cursor() as cursor:
        try:
            cursor.execute("SELECT (SELECT count(*) FROM voters), (SELECT count(*) FROM candidates), "
                           "(SELECT count(*) FROM votes), (SELECT max(voting_time) FROM votes)")
        except db.UndefinedTable:
            return Register(0, 0, 0, None)
        return Register(*cursor.fetchone())


@dataclass(frozen=True)
class Results:
    """The latest value of every key of each result topic, by the topic's base name."""

    by_topic: dict[str, dict[str, Result]] = field(default_factory=dict)
    kafka_error: str | None = None
    newest_computed_at: datetime | None = None  # the newest result's message timestamp: when the job sent it

    def rows(self, topic: str) -> list[Result]:
        return list(self.by_topic.get(topic, {}).values())

    @property
    def votes_counted(self) -> int:
        return sum(row.total_votes for row in self.rows(topics.VOTES_PER_CANDIDATE))


class ResultsReader:
    """One consumer, assigned every partition of the result topics from the start, folding messages into the
    latest value per key. Starts its thread at once; ``close()`` stops it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._topics = {settings.topic(name): name for name in topics.AGGREGATED}
        self._latest: dict[str, dict[str, Result]] = {name: {} for name in topics.AGGREGATED}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._kafka_error: str | None = None
        self._newest_ms = 0
        self._thread = threading.Thread(target=self._run, name="results-reader", daemon=True)
        self._thread.start()

    def snapshot(self) -> Results:
        with self._lock:
            newest = datetime.fromtimestamp(self._newest_ms / 1000, UTC) if self._newest_ms else None
            return Results({name: dict(rows) for name, rows in self._latest.items()}, self._kafka_error, newest)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._kafka_error = (f"Kafka at {self.settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) "
                                 "is not reachable")

    def _run(self) -> None:
        # A group of its own that never commits: every reader starts from the beginning of each topic. The page
        # says when Kafka is unreachable (error_cb); librdkafka need not repeat it on the console (log_level 0).
        group = self.settings.topic(topics.DASHBOARD_GROUP_PREFIX) + uuid.uuid4().hex[:12]
        consumer = Consumer(kafka_io.consumer_config(self.settings, kafka_io.DASHBOARD, group,
                                                     error_cb=self._on_error, log_level=0,
                                                     **{"enable.auto.commit": False}))
        assigned: set[tuple[str, int]] = set()
        next_metadata_at = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_metadata_at:
                    next_metadata_at = time.monotonic() + METADATA_EVERY_S
                    self._assign_new_partitions(consumer, assigned)
                for message in consumer.consume(num_messages=1000, timeout=0.5):
                    if message.error() is None:
                        self._fold(message.topic(), message.key(), message.value(), message.timestamp()[1])
        finally:
            consumer.close()

    def _assign_new_partitions(self, consumer: Consumer, assigned: set[tuple[str, int]]) -> None:
        try:
            metadata = consumer.list_topics(timeout=2)
        except KafkaException as error:
            self._kafka_error = (f"Kafka at {self.settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) "
                                 f"is not reachable: {error.args[0].str()}")
            return
        self._kafka_error = None
        new = [TopicPartition(topic, partition, OFFSET_BEGINNING)
               for topic in self._topics if topic in metadata.topics
               for partition in metadata.topics[topic].partitions if (topic, partition) not in assigned]
        if new:
            consumer.incremental_assign(new)
            assigned.update((partition.topic, partition.partition) for partition in new)

    def _fold(self, topic: str, key: bytes | None, value: bytes | None, sent_ms: int) -> None:
        if key is None or value is None:
            return
        try:
            result = Result.from_message(value)
        except (InvalidMessage, TypeError, ValueError) as error:
            logger.warning("skipping a result on %s that is not one (%s)", topic, error)
            return
        with self._lock:
            keep_highest(self._latest[self._topics[topic]], key.decode(), result)
            self._newest_ms = max(self._newest_ms, sent_ms)


# --- Pure functions: results -> what the page shows. ---

def candidate_table(results: Results) -> pd.DataFrame:
    """One row per candidate: name, party, votes and share of the votes counted, most votes first."""
    rows = results.rows(topics.VOTES_PER_CANDIDATE)
    frame = pd.DataFrame(rows, columns=["candidate_id", "candidate_name", "party_affiliation", "photo_url",
                                        "total_votes"])
    total = frame["total_votes"].sum()
    frame["share"] = frame["total_votes"] / total if total else 0.0
    return frame.sort_values(["total_votes", "candidate_name"], ascending=[False, True]).reset_index(drop=True)


def leaders(table: pd.DataFrame) -> pd.DataFrame:
    """The candidates with the most votes: one row normally, several in a tie, none before any vote."""
    if table.empty or table["total_votes"].max() == 0:
        return table.iloc[0:0]
    return table[table["total_votes"] == table["total_votes"].max()]


def tally_table(results: Results, topic: str, group: str) -> pd.DataFrame:
    """A result topic as (group, total_votes, share), most votes first."""
    frame = pd.DataFrame(results.rows(topic), columns=[group, "total_votes"])
    total = frame["total_votes"].sum()
    frame["share"] = frame["total_votes"] / total if total else 0.0
    return frame.sort_values(["total_votes", group], ascending=[False, True]).reset_index(drop=True)


def votes_over_time(results: Results) -> pd.DataFrame:
    """Cumulative votes per candidate at the end of each minute, for the race chart; every candidate's line starts
    from 0 at the start of the first minute with votes, so that it is a line from the first minute on."""
    frame = pd.DataFrame(results.rows(topics.VOTES_PER_MINUTE),
                         columns=["candidate_name", "window_start", "window_end", "total_votes"])
    if frame.empty:
        return frame.drop(columns="window_start")
    start = pd.to_datetime(frame["window_start"], utc=True).min()
    frame = pd.concat([
        pd.DataFrame({"candidate_name": frame["candidate_name"].unique(), "window_end": start, "total_votes": 0}),
        frame.drop(columns="window_start").assign(window_end=pd.to_datetime(frame["window_end"], utc=True)),
    ]).sort_values("window_end", kind="stable").reset_index(drop=True)
    frame["votes_so_far"] = frame.groupby("candidate_name")["total_votes"].cumsum()
    return frame


# Vega-Lite's own default palette (Tableau 10), handed out to the candidates in a fixed order so that a candidate
# has one colour in every chart and keeps it while the counts, and so the charts' orders, change.
PALETTE = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac")


def candidate_colours(table: pd.DataFrame) -> dict[str, str]:
    """Candidate name -> colour, by candidate ID (the palette repeats after ten candidates)."""
    names = table.sort_values("candidate_id")["candidate_name"]
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(names)}


def party_colours(table: pd.DataFrame) -> dict[str, str]:
    """Party -> the colour of its first candidate (by candidate ID), so that a party looks like its candidate."""
    colours = candidate_colours(table)
    parties: dict[str, str] = {}
    for candidate in table.sort_values("candidate_id").itertuples():
        parties.setdefault(candidate.party_affiliation, colours[candidate.candidate_name])
    return parties


def page_of(frame: pd.DataFrame, page: int, page_size: int) -> pd.DataFrame:
    """Rows of one page (1-based), clamped to the pages there are."""
    pages = max(1, -(-len(frame) // page_size))
    page = min(max(page, 1), pages)
    return frame.iloc[(page - 1) * page_size: page * page_size]


def seconds_since(moment: datetime | None, now: datetime | None = None) -> float | None:
    if moment is None:
        return None
    return ((now or datetime.now(UTC)) - moment).total_seconds()
