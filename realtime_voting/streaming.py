"""The counting stage (``spark_streaming.py``): Spark Structured Streaming tallies of ``votes_topic``.

Reads ``votes_topic`` with Spark's Kafka connector and keeps the running results in compacted Kafka topics,
one JSON message per group, keyed by the group, in update mode: the latest message of a key is its total.

- ``aggregated_votes_per_candidate``  candidate_id, candidate_name, party_affiliation, photo_url, total_votes
- ``aggregated_turnout_by_location``  state, total_votes
- ``aggregated_votes_per_party``      party_affiliation, total_votes
- ``aggregated_turnout_by_gender``    gender, total_votes
- ``aggregated_turnout_by_age_group`` age_group (age at voting time: 18-24, 25-34, ..., 65+), total_votes
- ``aggregated_votes_per_minute``     candidate_id, candidate_name, party_affiliation, window_start,
                                      window_end, total_votes (the minute of voting_time)

Every result carries ``computed_at``, the time of the micro-batch that produced it.

Exactly once in the totals. Kafka's sink is at-least-once, so the design makes repeats harmless:

1. Deduplicate by voter. ``votes_topic`` may carry a vote twice (see ``realtime_voting.ballot_box``); the
   counting query drops every vote of a voter after the first (``dropDuplicates(["voter_id"])``, without a
   watermark, so a duplicate is caught however late it comes). That state lives in the checkpoint (RocksDB).
2. Checkpoints (``SPARK_CHECKPOINT_DIR``) record the offsets of every micro-batch and the state after it.
   After a crash, even SIGKILL, Spark replays the unfinished batch from the same offsets over the same state,
   so it computes the same totals; the sink may write them twice, and a compacted topic keyed by the group
   keeps the latest, which is right either way.
3. The per-minute counts are groups like the others (candidate and minute), not windows with a watermark:
   a vote counts in its minute however late it comes, and the state grows by one row per candidate per
   minute of voting, a few thousand rows for a day's election.

Bad messages (not JSON, not an object, missing or non-string ``voter_id``/``candidate_id``, a candidate who
is not standing, a ``voting_time`` that is missing or not a time) are not counted: a second query writes them
to ``dead_letter_topic`` with their original key and bytes and ``dlq.*`` headers. The job never fails on
them. Candidates are read from PostgreSQL when the job starts; restart it after adding candidates.

Run it with ``python spark_streaming.py`` (until Ctrl-C or SIGTERM, a micro-batch every
``SPARK_TRIGGER_SECONDS``) or ``python spark_streaming.py --available-now`` (everything available, then exit).
On a cluster, set ``SPARK_MASTER`` and a shared ``SPARK_CHECKPOINT_DIR``; nothing else assumes local disk.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Sequence

from py4j.protocol import Py4JError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812 - the conventional name
from pyspark.sql.streaming import StreamingQuery

from realtime_voting import db, kafka_io, topics
from realtime_voting.batch_progress import ProgressLog
from realtime_voting.cli import service_wait_option, start_long_running
from realtime_voting.schemas import Candidate
from realtime_voting.settings import Settings
from realtime_voting.spark_session import build_spark_session
from realtime_voting.topics import checkpoint_root

logger = logging.getLogger(__name__)

STAGE = "counting"
AGE_GROUPS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64))
# Every field a result's group can have, with its type; a result sets its own and leaves the others null.
RESULT_DIMENSIONS = {name: "string" for name in (
    "candidate_id", "candidate_name", "party_affiliation", "photo_url", "state", "gender", "age_group")} | {
    "window_start": "timestamp", "window_end": "timestamp"}


# --- Transformations: plain functions from DataFrame to DataFrame, the same on a stream and on a batch. ---

def _json_type(document: Column, name: str) -> Column:
    return F.schema_of_variant(F.try_variant_get(document, f"$.{name}", "variant"))


def classify_votes(raw: DataFrame, candidates: Sequence[Candidate]) -> DataFrame:
    """Kafka rows -> one row per message: the vote's fields, and ``reason`` (null for a vote that counts).

    ``raw`` has the Kafka source's columns (``key``, ``value``, ``topic``, ``partition``, ``offset``).
    The candidate's name, party and photo come from ``candidates``, not from the message.
    """
    text = F.col("value").cast("string")
    parsed = raw.select(
        "key", "value", "topic", "partition", "offset",
        F.try_parse_json(text).alias("document"),
        # Parsed JSON that starts with "{" is an object: far cheaper than describing the whole document.
        F.ltrim(text).startswith("{").alias("is_object"),
    ).select(
        "*",
        _json_type(F.col("document"), "voter_id").alias("voter_id_type"),
        _json_type(F.col("document"), "candidate_id").alias("candidate_id_type"),
        F.try_variant_get("document", "$.voter_id", "string").alias("voter_id"),
        F.try_variant_get("document", "$.candidate_id", "string").alias("message_candidate_id"),
        F.try_variant_get("document", "$.voting_time", "string").alias("voting_time_text"),
        F.try_variant_get("document", "$.address_state", "string").alias("state"),
        F.try_variant_get("document", "$.gender", "string").alias("gender"),
        F.try_variant_get("document", "$.date_of_birth", "date").alias("date_of_birth"),
    ).withColumn("voting_time", F.try_to_timestamp("voting_time_text"))

    # The candidates standing, as a literal map from id to name, party and photo: a handful of rows, so a map
    # lookup per vote instead of a join, which would cost a broadcast job in every micro-batch.
    standing = F.create_map(*(item for candidate in candidates for item in (
        F.lit(candidate.candidate_id),
        F.struct(*(F.lit(getattr(candidate, name)).alias(name)
                   for name in ("candidate_name", "party_affiliation", "photo_url"))))))
    joined = parsed.withColumn("candidate", F.try_element_at(standing, F.col("message_candidate_id"))).select(
        "*", "candidate.*")

    def id_problem(name: str) -> Column:
        json_type = F.col(f"{name}_type")
        return (F.when(json_type.isNull() | (json_type == "VOID"), F.lit(f"missing {name}"))
                .when(json_type != "STRING", F.concat(F.lit(f"{name} must be a string, got "), F.lower(json_type))))

    reason = (
        F.when(F.col("document").isNull(), F.lit("not valid JSON"))
        .when(~F.col("is_object"), F.lit("not a JSON object"))
        .otherwise(F.coalesce(
            id_problem("voter_id"),
            id_problem("candidate_id"),
            F.when(F.col("voting_time_text").isNull(), F.lit("missing voting_time")),
            F.when(F.col("voting_time").isNull(),
                   F.concat(F.lit("voting_time is not a time: "), F.col("voting_time_text"))),
            F.when(F.col("candidate_name").isNull(),
                   F.concat(F.lit("unknown candidate "), F.col("message_candidate_id"))),
        ))
    )
    return joined.select(
        "key", "value", "topic", "partition", "offset", reason.alias("reason"),
        "voter_id", F.col("message_candidate_id").alias("candidate_id"), "candidate_name", "party_affiliation",
        "photo_url", "voting_time", F.coalesce("state", F.lit("unknown")).alias("state"),
        F.coalesce("gender", F.lit("unknown")).alias("gender"), "date_of_birth",
    )


def counted_votes(classified: DataFrame) -> DataFrame:
    return classified.where(F.col("reason").isNull()).drop("key", "value", "topic", "partition", "offset", "reason")


def age_group(date_of_birth: Column, at: Column) -> Column:
    """The voter's age bracket at ``at`` ("18-24" ... "65+"), "under 18", or "unknown" without a birth date."""
    # Whole years, with the birthday itself counting (so 29 February birthdays are not off by one).
    day = F.to_date(at)
    birthday_not_reached = (F.month(day) * 100 + F.dayofmonth(day)) < (
        F.month(date_of_birth) * 100 + F.dayofmonth(date_of_birth))
    age = F.year(day) - F.year(date_of_birth) - birthday_not_reached.cast("int")
    bracket = F.when(age.isNull(), F.lit("unknown")).when(age < 18, F.lit("under 18"))
    for low, high in AGE_GROUPS:
        bracket = bracket.when(age <= high, F.lit(f"{low}-{high}"))
    return bracket.otherwise(F.lit("65+"))


def _result(topic: str, key: Column, **dimensions: Column) -> Column:
    """One result row: the topic it goes to, its key, and its group's fields (the others stay null)."""
    fields = [dimensions.get(name, F.lit(None).cast(kind)).alias(name) for name, kind in RESULT_DIMENSIONS.items()]
    return F.struct(F.lit(topic).alias("topic"), key.cast("string").alias("key"), F.struct(*fields).alias("group"))


def _minute_results(topic: str) -> Column:
    """The per-minute result of a vote: its candidate in the 1-minute window of its ``voting_time``."""
    window_start = F.date_trunc("minute", F.col("voting_time"))
    return _result(
        topic, F.concat_ws("|", F.col("candidate_id"), F.date_format(window_start, "yyyy-MM-dd'T'HH:mm'Z'")),
        candidate_id=F.col("candidate_id"), candidate_name=F.col("candidate_name"),
        party_affiliation=F.col("party_affiliation"), window_start=window_start,
        window_end=window_start + F.expr("INTERVAL 1 MINUTE"))


def tallies(votes: DataFrame, settings: Settings) -> DataFrame:
    """Counted votes -> every running total, as Kafka records for their topics.

    One deduplication and one aggregation serve all six results: each vote becomes one row per result,
    tagged with its topic, and a single ``groupBy(topic, key)`` counts them. One stateful query instead of
    one per result matters: on a small machine every micro-batch of every query has a fixed cost.
    """
    topic = settings.topic
    per_result = F.explode(F.array(
        _result(topic(topics.VOTES_PER_CANDIDATE), F.col("candidate_id"),
                candidate_id=F.col("candidate_id"), candidate_name=F.col("candidate_name"),
                party_affiliation=F.col("party_affiliation"), photo_url=F.col("photo_url")),
        _result(topic(topics.TURNOUT_BY_LOCATION), F.col("state"), state=F.col("state")),
        _result(topic(topics.VOTES_PER_PARTY), F.col("party_affiliation"),
                party_affiliation=F.col("party_affiliation")),
        _result(topic(topics.TURNOUT_BY_GENDER), F.col("gender"), gender=F.col("gender")),
        _result(topic(topics.TURNOUT_BY_AGE_GROUP), F.col("age_group"), age_group=F.col("age_group")),
        _minute_results(topic(topics.VOTES_PER_MINUTE)),
    ))
    results = (
        votes.dropDuplicates(["voter_id"])
        .withColumn("age_group", age_group(F.col("date_of_birth"), F.col("voting_time")))
        .select(per_result.alias("result"))
        .select("result.*")
    )
    grouped = results.groupBy("topic", "key", "group").agg(F.count(F.lit(1)).alias("total_votes"))
    # The Kafka sink's (topic, key, value); to_json leaves out the group's null fields.
    value = F.to_json(F.struct("group.*", F.col("total_votes"), F.current_timestamp().alias("computed_at")))
    return grouped.select("topic", "key", value.alias("value"))


def dead_letters(classified: DataFrame, settings: Settings) -> DataFrame:
    """Rejected messages -> Kafka records for ``dead_letter_topic``: original key and bytes, ``dlq.*`` headers."""
    header = lambda name, text: F.struct(F.lit(name).alias("key"), text.cast("binary").alias("value"))  # noqa: E731
    return classified.where(F.col("reason").isNotNull()).select(
        F.lit(settings.topic(topics.DEAD_LETTERS)).alias("topic"),
        "key",
        F.coalesce("value", F.lit(b"")).alias("value"),
        F.array(
            header("dlq.stage", F.lit(STAGE)),
            header("dlq.reason", F.col("reason")),
            header("dlq.source.topic", F.col("topic")),
            header("dlq.source.partition", F.col("partition").cast("string")),
            header("dlq.source.offset", F.col("offset").cast("string")),
        ).alias("headers"),
    )


# --- The job: sources, sinks, progress, and running until told to stop. ---

def kafka_options(settings: Settings) -> dict[str, str]:
    """The counting job's Kafka client settings (the servers, and who it is with SASL_SSL), as Spark's ``kafka.*``
    options for its source and its sinks."""
    properties = kafka_io.java_client_properties(settings, kafka_io.COUNTING)
    return {f"kafka.{name}": value for name, value in properties.items()}


def read_votes(spark: SparkSession, settings: Settings) -> DataFrame:
    return (
        spark.readStream.format("kafka")
        .options(**kafka_options(settings))
        .option("subscribe", settings.topic(topics.VOTES))
        # The consumer groups' names: a prefix that the counting user's ACLs allow (kafka_security).
        .option("groupIdPrefix", settings.topic(topics.COUNTING_GROUP_PREFIX))
        .option("startingOffsets", "earliest")
        # Only votes of committed transactions (Spark's source reads uncommitted ones by default).
        .option("kafka.isolation.level", "read_committed")
        # Bounded micro-batches: a large backlog is counted in steps instead of one huge first batch.
        .option("maxOffsetsPerTrigger", settings.spark_max_offsets_per_trigger)
        .option("kafka.fetch.max.wait.ms", "10")
        .load()
    )


def start_queries(spark: SparkSession, settings: Settings, candidates: list[Candidate],
                  available_now: bool) -> list[StreamingQuery]:
    classified = classify_votes(read_votes(spark, settings), candidates)
    votes = counted_votes(classified)
    checkpoints = checkpoint_root(settings)
    # The dead letters run less often: nobody waits for them, and every micro-batch costs the tallies CPU.
    outputs = {
        "tallies": (tallies(votes, settings), "update", settings.spark_trigger_seconds),
        "dead_letters": (dead_letters(classified, settings), "append", settings.spark_dead_letter_trigger_seconds),
    }
    queries = []
    for name, (frame, mode, trigger_seconds) in outputs.items():
        writer = (
            frame.writeStream.format("kafka")
            .queryName(f"{settings.kafka_topic_prefix}{name}")
            .options(**kafka_options(settings))
            .option("checkpointLocation", f"{checkpoints}/{name}")
            .outputMode(mode)
        )
        writer = writer.trigger(availableNow=True) if available_now else writer.trigger(
            processingTime=f"{trigger_seconds} seconds")
        queries.append(writer.start())
    return queries


def run(settings: Settings, *, available_now: bool, stop: threading.Event) -> int:
    spark = build_spark_session(settings, "realtime-voting-counting")
    spark.streams.addListener(ProgressLog())
    try:
        candidates = db.wait_for_candidates(settings, stop)
        if candidates is None:
            return 0
        logger.info("counting votes for %d candidates", len(candidates))
        queries = start_queries(spark, settings, candidates, available_now)
        logger.info("counting %s into the aggregated_* topics (checkpoints in %s)%s",
                    settings.topic(topics.VOTES), checkpoint_root(settings),
                    ": everything available, then exit" if available_now else "; Ctrl-C stops")
        # Any query failing stops the job loudly; Ctrl-C/SIGTERM stops it between micro-batches.
        while not stop.is_set() and any(query.isActive for query in queries):
            spark.streams.awaitAnyTermination(1.0)
            failed = [query for query in queries if query.exception() is not None]
            if failed:
                raise RuntimeError(f"query {failed[0].name} failed: {failed[0].exception()}")
            spark.streams.resetTerminated()
        return 0
    finally:
        try:
            for query in spark.streams.active:
                query.stop()  # ends the micro-batch in hand; the checkpoint makes the next start resume after it
        except Py4JError as error:  # the JVM went first (it was signalled too): nothing left to stop
            logger.warning("Spark had already stopped: %s", str(error).splitlines()[0])
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spark_streaming.py", description=__doc__.split("\n")[0],
                                     parents=[service_wait_option()])
    parser.add_argument("--available-now", action="store_true",
                        help="count everything available on votes_topic, then exit (for scripts and tests)")
    args = parser.parse_args(argv)
    started = start_long_running(kafka_io.COUNTING, args.wait_for_services)
    if started is None:
        return 1
    settings, stop = started
    return run(settings, available_now=args.available_now, stop=stop)
