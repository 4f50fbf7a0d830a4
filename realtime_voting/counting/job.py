"""The counting stage (``spark_streaming.py``): Spark Structured Streaming tallies of ``votes_topic``.

Reads ``votes_topic`` with Spark's Kafka connector and keeps the running results in compacted Kafka topics,
one JSON message per group (``schemas.Result``), keyed by the group, in update mode: the latest message of a key
is its total. The six result topics, their keys and fields: docs/architecture.md, "Counting".

When a result was computed is its message's timestamp. One query does everything, reading and parsing each vote
once (``counting_records``): the results, and the dead letters below, leave through one Kafka sink that routes
each row by its ``topic`` column.

How it runs (``SPARK_COUNTING_MODE``): by default in Spark's **Real-Time Mode** (Spark 4.3), whose long-running
tasks count each vote as it arrives and send the totals it changed at once, tens of milliseconds after the vote;
the trigger's duration (``SPARK_CHECKPOINT_SECONDS``) is only how often it checkpoints. Its tasks hold their
slots for good, one per partition of ``votes_topic`` and one per shuffle partition of each of the two stateful
stages (``task_slots_needed``): a local master gets that many threads, and a cluster that offers fewer is refused
at start with the setting to change. ``microbatch`` runs a micro-batch every ``SPARK_TRIGGER_SECONDS`` instead
(about a second from vote to total); ``--available-now`` always runs micro-batches.

Exactly once in the totals. Kafka's sink is at-least-once, so the design makes repeats harmless:

1. Deduplicate by voter. ``votes_topic`` may carry a vote twice (see ``realtime_voting.voting.ballot_box``); the
   counting query drops every vote of a voter after the first (``dropDuplicates``, without a watermark, so a
   duplicate is caught however late it comes). That state lives in the checkpoint (RocksDB).
2. Checkpoints (``SPARK_CHECKPOINT_DIR``, format v2, which Real-Time Mode requires) record the offsets of every
   batch and the state after it. After a crash, even SIGKILL, Spark replays the unfinished batch from the same
   offsets over the same state, so it computes the same totals; the sink may write them twice, and a compacted
   topic keyed by the group keeps the latest, which is right either way. In Real-Time Mode the replayed span
   (up to ``SPARK_CHECKPOINT_SECONDS``) re-sends totals lower than those already sent, until it catches up:
   every reader of the results keeps the highest total it has seen per key (``schemas.keep_highest``), so no
   screen shows a total fall.
3. The per-minute counts are groups like the others (candidate and minute), not windows with a watermark:
   a vote counts in its minute however late it comes, and the state grows by one row per candidate per
   minute of voting, a few thousand rows for a day's election.

Bad messages (not JSON, not an object, missing or non-string ``voter_id``/``candidate_id``, a candidate who
is not standing, a ``voting_time`` that is missing or not a time) are not counted: they go to
``dead_letter_topic`` with their original key and bytes and ``dlq.*`` headers. The job never fails on them.
Candidates are read from PostgreSQL when the job starts; restart it after adding candidates.

Run it with ``python spark_streaming.py`` (until Ctrl-C or SIGTERM) or ``python spark_streaming.py
--available-now`` (everything available, then exit). A checkpoint written by the job before it read each vote
once is refused with the command that rebuilds it (``--rebuild-checkpoint``). On a cluster, set
``SPARK_MASTER`` and a shared ``SPARK_CHECKPOINT_DIR``; nothing else assumes local disk.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

from py4j.protocol import Py4JError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812 - the conventional name
from pyspark.sql.streaming import StreamingQuery

from realtime_voting.core import topics, waiting
from realtime_voting.core.schemas import (
    DEAD_LETTER_HEADERS,
    RESULT_GROUP_FIELDS,
    VOTE_FIELDS,
    VOTE_REQUIRED,
    Candidate,
    Rejection,
    field_names,
)
from realtime_voting.core.settings import Settings
from realtime_voting.core.topics import checkpoint_root
from realtime_voting.counting.batch_progress import ProgressLog
from realtime_voting.services import db, kafka_io
from realtime_voting.services.cli import service_wait_option, start_long_running
from realtime_voting.services.spark_session import build_spark_session

logger = logging.getLogger(__name__)

STAGE = "counting"
AGE_GROUPS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64))
# A result's group (schemas.RESULT_GROUP_FIELDS): a result sets the fields its topic groups by, the others null.
GROUP_TYPE = f"struct<{','.join(f'{name}:{kind}' for name, kind in RESULT_GROUP_FIELDS)}>"
# What a dead letter carries through the aggregation to the sink: the message's bytes and its schemas.Rejection
# but the stage, which is this one. (A key of the aggregation's state: changing it orphans every checkpoint.)
REJECTION_TYPE = "struct<value:binary,reason:string,source_topic:string,source_partition:int,source_offset:bigint>"
HEADERS_TYPE = "array<struct<key:string,value:binary>>"  # the Kafka sink's `headers` column


# --- Transformations: plain functions from DataFrame to DataFrame, the same on a stream and on a batch. ---

def _json_type(document: Column, name: str) -> Column:
    return F.schema_of_variant(F.try_variant_get(document, f"$.{name}", "variant"))


def vote_fields(document: Column) -> list[Column]:
    """The vote message's fields (``schemas.VOTE_FIELDS``) as columns of their types: null where the field is
    missing or will not convert. A time is also kept as its text (``<name>_text``), to say why it is not a time."""
    columns = []
    for name, kind in VOTE_FIELDS:
        if kind == "timestamp":
            text = F.try_variant_get(document, f"$.{name}", "string")
            columns += [text.alias(f"{name}_text"), F.try_to_timestamp(text).alias(name)]
        else:
            columns.append(F.try_variant_get(document, f"$.{name}", kind).alias(name))
    return columns


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
        *(_json_type(F.col("document"), name).alias(f"{name}_type") for name, kind in VOTE_FIELDS
          if name in VOTE_REQUIRED and kind == "string"),
        *vote_fields(F.col("document")),
    )

    # The candidates standing, as a literal map from id to name, party and photo: a handful of rows, so a map
    # lookup per vote instead of a join, which would cost a broadcast job in every micro-batch.
    standing = F.create_map(*(item for candidate in candidates for item in (
        F.lit(candidate.candidate_id),
        F.struct(*(F.lit(getattr(candidate, name)).alias(name)
                   for name in ("candidate_name", "party_affiliation", "photo_url"))))))
    joined = parsed.withColumn("candidate", F.try_element_at(standing, F.col("candidate_id"))).select(
        "*", "candidate.*")

    def problems(name: str, kind: str) -> list[Column]:
        """Why a required field of the vote (``schemas.VOTE_REQUIRED``) is unusable, null when it is not."""
        if kind == "timestamp":
            return [F.when(F.col(f"{name}_text").isNull(), F.lit(f"missing {name}")),
                    F.when(F.col(name).isNull(), F.concat(F.lit(f"{name} is not a time: "), F.col(f"{name}_text")))]
        json_type = F.col(f"{name}_type")
        return [F.when(json_type.isNull() | (json_type == "VOID"), F.lit(f"missing {name}"))
                .when(json_type != "STRING", F.concat(F.lit(f"{name} must be a string, got "), F.lower(json_type)))]

    reason = (
        F.when(F.col("document").isNull(), F.lit("not valid JSON"))
        .when(~F.col("is_object"), F.lit("not a JSON object"))
        .otherwise(F.coalesce(
            *(problem for name, kind in VOTE_FIELDS if name in VOTE_REQUIRED for problem in problems(name, kind)),
            F.when(F.col("candidate_name").isNull(),
                   F.concat(F.lit("unknown candidate "), F.col("candidate_id"))),
        ))
    )
    return joined.select(
        "key", "value", "topic", "partition", "offset", reason.alias("reason"),
        "voter_id", "candidate_id", "candidate_name", "party_affiliation",
        "photo_url", "voting_time", F.coalesce("address_state", F.lit("unknown")).alias("state"),
        F.coalesce("gender", F.lit("unknown")).alias("gender"), "date_of_birth",
    )


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
    fields = [dimensions.get(name, F.lit(None).cast(kind)).alias(name) for name, kind in RESULT_GROUP_FIELDS]
    return F.struct(F.lit(topic).alias("topic"), key.cast("binary").alias("key"), F.struct(*fields).alias("group"),
                    F.lit(None).cast(REJECTION_TYPE).alias("rejection"))


def _minute_results(topic: str) -> Column:
    """The per-minute result of a vote: its candidate in the 1-minute window of its ``voting_time``."""
    window_start = F.date_trunc("minute", F.col("voting_time"))
    return _result(
        topic, F.concat_ws("|", F.col("candidate_id"), F.date_format(window_start, "yyyy-MM-dd'T'HH:mm'Z'")),
        candidate_id=F.col("candidate_id"), candidate_name=F.col("candidate_name"),
        party_affiliation=F.col("party_affiliation"), window_start=window_start,
        window_end=window_start + F.expr("INTERVAL 1 MINUTE"))


def _dead_letter(topic: str) -> Column:
    """The row of a rejected message: its original key, and its bytes and where it came from, to be sent on."""
    return F.struct(
        F.lit(topic).alias("topic"), F.col("key"), F.lit(None).cast(GROUP_TYPE).alias("group"),
        F.struct(F.coalesce("value", F.lit(b"")).alias("value"), "reason", F.col("topic").alias("source_topic"),
                 F.col("partition").alias("source_partition"), F.col("offset").alias("source_offset"),
                 ).alias("rejection"))


def counting_records(classified: DataFrame, settings: Settings) -> DataFrame:
    """Every message, read once -> the Kafka records it causes: the running totals its vote changes, or its dead
    letter. Columns ``topic``, ``key``, ``value`` and ``headers``, for the Kafka sink to route row by row.

    One deduplication and one aggregation serve all six results and the dead letters: each vote becomes one row
    per result, tagged with its topic, a rejected message one dead-letter row, and a single
    ``groupBy(topic, key, ...)`` counts them. One query reads ``votes_topic`` and parses each vote once; it is
    also all that Real-Time Mode allows (one source per query, no ``foreachBatch``), and on a small machine every
    query has fixed costs of its own.
    """
    topic = settings.topic
    counted = F.col("reason").isNull()
    # The first vote of each voter counts; a rejected message is its own (its partition and offset), so each one
    # is sent on once. `rejected` keeps the two kinds of identity apart, whatever a voter_id says.
    deduplicated = classified.select(
        "*", (~counted).alias("rejected"),
        F.when(counted, F.col("voter_id")).otherwise(F.concat_ws(":", "partition", "offset")).alias("identity"),
    ).dropDuplicates(["rejected", "identity"])
    per_message = F.when(counted, F.array(
        _result(topic(topics.VOTES_PER_CANDIDATE), F.col("candidate_id"),
                candidate_id=F.col("candidate_id"), candidate_name=F.col("candidate_name"),
                party_affiliation=F.col("party_affiliation"), photo_url=F.col("photo_url")),
        _result(topic(topics.TURNOUT_BY_LOCATION), F.col("state"), state=F.col("state")),
        _result(topic(topics.VOTES_PER_PARTY), F.col("party_affiliation"),
                party_affiliation=F.col("party_affiliation")),
        _result(topic(topics.TURNOUT_BY_GENDER), F.col("gender"), gender=F.col("gender")),
        _result(topic(topics.TURNOUT_BY_AGE_GROUP), F.col("age_group"), age_group=F.col("age_group")),
        _minute_results(topic(topics.VOTES_PER_MINUTE)),
    )).otherwise(F.array(_dead_letter(topic(topics.DEAD_LETTERS))))
    records = (
        deduplicated
        .withColumn("age_group", age_group(F.col("date_of_birth"), F.col("voting_time")))
        .select(F.explode(per_message).alias("record"))
        .select("record.*")
    )
    counts = records.groupBy("topic", "key", "group", "rejection").agg(F.count(F.lit(1)).alias("total_votes"))
    is_result = F.col("rejection").isNull()
    # A result's value is its group and total (to_json leaves out the group's null fields); when it was computed
    # is the message's own timestamp, which the sink's producer sets as it sends (in Real-Time Mode a batch runs
    # for SPARK_CHECKPOINT_SECONDS, so Spark's current_timestamp() would be its start, not the result's time).
    header = lambda name, text: F.struct(F.lit(name).alias("key"), text.cast("binary").alias("value"))  # noqa: E731
    rejection = F.col("rejection")
    # Each field of the rejection as its dlq.* header says it: the stage is this one, the rest travelled with it.
    header_values = {name: F.lit(STAGE) if name == "stage" else rejection[name] for name in field_names(Rejection)}
    return counts.select(
        "topic", "key",
        F.when(is_result, F.to_json(F.struct("group.*", F.col("total_votes"))).cast("binary"))
        .otherwise(rejection["value"]).alias("value"),
        F.when(is_result, F.array().cast(HEADERS_TYPE)).otherwise(F.array(*(
            header(DEAD_LETTER_HEADERS[name], column.cast("string")) for name, column in header_values.items()
        ))).alias("headers"),
    )


# --- The job: its source and sink, the task slots it needs, its checkpoint, and running until told to stop. ---

def kafka_options(settings: Settings) -> dict[str, str]:
    """The counting job's Kafka client settings (the servers, and who it is with SASL_SSL), as Spark's ``kafka.*``
    options for its source and its sink."""
    properties = kafka_io.java_client_properties(settings, kafka_io.COUNTING)
    return {f"kafka.{name}": value for name, value in properties.items()}


# The most the broker holds an empty fetch of the source, per mode (read_votes says why).
REALTIME_FETCH_WAIT_MS, MICROBATCH_FETCH_WAIT_MS = "100", "10"


def read_votes(spark: SparkSession, settings: Settings, *, realtime: bool) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .options(**kafka_options(settings))
        .option("subscribe", settings.topic(topics.VOTES))
        # The consumer groups' names: a prefix that the counting user's ACLs allow (kafka_security).
        .option("groupIdPrefix", settings.topic(topics.COUNTING_GROUP_PREFIX))
        .option("startingOffsets", "earliest")
        # Only votes of committed transactions (Spark's source reads uncommitted ones by default).
        .option("kafka.isolation.level", "read_committed")
        # How long the broker may hold a fetch that finds nothing new. It answers as soon as there is a vote
        # (fetch.min.bytes is 1), so this is what an idle wait costs: in Real-Time Mode, whose source tasks fetch
        # all the time, 100 ms took a quarter off the job's CPU at 200 and 1,000 votes/s against 10 ms, with no
        # latency lost (bench/README.md, #23's levers); micro-batches read to a batch's end offsets, where 500 ms
        # stalled every batch, so they keep 10.
        .option("kafka.fetch.max.wait.ms", REALTIME_FETCH_WAIT_MS if realtime else MICROBATCH_FETCH_WAIT_MS)
    )
    if not realtime:
        # Bounded micro-batches: a large backlog is counted in steps instead of one huge first batch. (Real-Time
        # Mode refuses the option: its long-running tasks read whatever comes.)
        reader = reader.option("maxOffsetsPerTrigger", settings.spark_max_offsets_per_trigger)
    return reader.load()


def task_slots_needed(vote_partitions: int, shuffle_partitions: int) -> int:
    """The tasks Real-Time Mode runs at once, for as long as the job runs: one per partition of ``votes_topic``
    (the source), and one per shuffle partition for each of the two stateful stages (the deduplication and the
    tallies), which a pipelined shuffle runs beside the source instead of after it."""
    return vote_partitions + 2 * shuffle_partitions


LOCAL_MASTER = re.compile(r"local(?:\[(?P<threads>\*|\d+)(?:,\d+)?\])?")  # local, local[4], local[*], local[4,2]


class NotEnoughTaskSlots(RuntimeError):
    """The Spark master offers fewer task slots than Real-Time Mode holds at once."""


def local_master_for(settings: Settings, slots: int) -> str:
    """The master to run: ``SPARK_MASTER`` as set, except that a local master offering fewer threads than
    Real-Time Mode's ``slots`` (``local[*]`` on a small machine) gets exactly that many (they wait on Kafka most
    of the time, so more threads than cores is what it needs). ``local[N]`` set below ``slots`` is refused."""
    master = settings.spark_master
    local = LOCAL_MASTER.fullmatch(master)
    if not settings.realtime_counting or local is None:
        return master
    threads = local["threads"]
    if threads in (None, "*"):
        return f"local[{slots}]"
    if int(threads) < slots:
        raise NotEnoughTaskSlots(
            f"SPARK_MASTER={master} offers {threads} task slot(s), and Real-Time Mode needs {slots} at once "
            f"({_slots_explained(settings, slots)}): set SPARK_MASTER=local[{slots}] (or local[*]), or "
            "SPARK_COUNTING_MODE=microbatch")
    return master


def _slots_explained(settings: Settings, slots: int) -> str:
    vote_partitions = slots - 2 * settings.spark_shuffle_partitions
    return (f"{vote_partitions} for the partitions of {settings.topic(topics.VOTES)}, and 2 x "
            f"SPARK_SHUFFLE_PARTITIONS={settings.spark_shuffle_partitions} for the two stateful stages")


CLUSTER_SLOTS_WAIT_S = 60.0  # for the workers' executors to register with the job after it starts


def check_cluster_slots(spark: SparkSession, settings: Settings, slots: int, stop: threading.Event) -> None:
    """On a cluster, wait for the executors to offer ``slots`` task slots; ``NotEnoughTaskSlots`` if they do not
    within ``CLUSTER_SLOTS_WAIT_S`` (Real-Time Mode would start and then count nothing)."""
    if not settings.realtime_counting or settings.spark_master.startswith("local"):
        return
    # A standalone master's default parallelism is the cores of the executors registered so far (2 before any).
    offered = lambda: spark.sparkContext.defaultParallelism  # noqa: E731
    try:
        waiting.until(lambda: offered() >= slots, timeout_s=CLUSTER_SLOTS_WAIT_S, every_s=1.0, stop=stop,
                      what=f"{slots} task slots at {settings.spark_master}")
    except waiting.TimedOut:
        raise NotEnoughTaskSlots(
            f"the Spark cluster at SPARK_MASTER={settings.spark_master} offers {offered()} task slot(s), and "
            f"Real-Time Mode needs {slots} at once ({_slots_explained(settings, slots)}): give its workers more "
            "cores (SPARK_WORKER_CORES in compose) or more workers, or set SPARK_COUNTING_MODE=microbatch") from None


# The folders of the job before it read each vote once (two queries, checkpoint format 1), which this job's one
# query cannot carry on from; `--rebuild-checkpoint` deletes them.
EARLIER_QUERIES = ("tallies", "dead_letters")
QUERY = "counting"


class CheckpointFromEarlierVersion(RuntimeError):
    """The checkpoint was written by an earlier version of the counting job."""


def counting_checkpoint(settings: Settings, *, rebuild: bool) -> str:
    """The checkpoint folder of this election's counting query. An earlier version's checkpoint is refused,
    naming the command that rebuilds it, or with ``rebuild`` deleted, so that the job counts ``votes_topic``
    again from its start (exact totals; readers keep the highest total per key, so nobody sees one fall)."""
    root = Path(checkpoint_root(settings))
    earlier = [root / name for name in EARLIER_QUERIES if (root / name).exists()]
    if earlier and not rebuild:
        raise CheckpointFromEarlierVersion(
            f"the checkpoint in {root} was written by an earlier version of the counting job (queries "
            f"{', '.join(path.name for path in earlier)}), which this one cannot carry on from. Rebuild it once with "
            "`python spark_streaming.py --rebuild-checkpoint`: it deletes that checkpoint and counts "
            f"{settings.topic(topics.VOTES)} again from its start, to the same totals")
    if rebuild:
        for path in [*earlier, root / QUERY]:
            if path.exists():
                logger.info("deleting the checkpoint %s (--rebuild-checkpoint): counting again from the start", path)
                shutil.rmtree(path)
    checkpoint = root / QUERY
    # A Real-Time Mode batch writes its offsets when it ends: a job killed in its first batch leaves state files
    # and an empty offset log, which Spark refuses (STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY). Nothing of them
    # was committed, so they go, and the first batch runs again from the start of votes_topic.
    offsets, state = checkpoint / "offsets", checkpoint / "state"
    if state.exists() and not (offsets.exists() and any(offsets.iterdir())):
        logger.info("deleting %s: state of a first batch that never committed (the job stopped during it)", state)
        shutil.rmtree(state)
    return str(checkpoint)


def start_counting(spark: SparkSession, settings: Settings, candidates: list[Candidate], checkpoint: str, *,
                   available_now: bool) -> StreamingQuery:
    realtime = settings.realtime_counting and not available_now
    classified = classify_votes(read_votes(spark, settings, realtime=realtime), candidates)
    writer = (
        counting_records(classified, settings).writeStream.format("kafka")
        .queryName(f"{settings.kafka_topic_prefix}{QUERY}")
        .options(**kafka_options(settings))
        .option("checkpointLocation", checkpoint)
        .outputMode("update")
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    elif realtime:
        writer = writer.trigger(realTime=f"{settings.spark_checkpoint_seconds:g} seconds")
    else:
        writer = writer.trigger(processingTime=f"{settings.spark_trigger_seconds:g} seconds")
    return writer.start()


def run(settings: Settings, *, available_now: bool, rebuild_checkpoint: bool, stop: threading.Event) -> int:
    candidates = db.wait_for_candidates(settings, stop)
    if candidates is None:
        return 0
    vote_partitions = (kafka_io.partition_count(settings, kafka_io.COUNTING, settings.topic(topics.VOTES))
                       or settings.kafka_topic_partitions)
    slots = task_slots_needed(vote_partitions, settings.spark_shuffle_partitions)
    try:
        checkpoint = counting_checkpoint(settings, rebuild=rebuild_checkpoint)
        master = local_master_for(settings, slots)
    except (CheckpointFromEarlierVersion, NotEnoughTaskSlots) as error:
        logger.error("%s", error)
        return 2
    spark = build_spark_session(settings, "realtime-voting-counting", master=master)
    spark.streams.addListener(ProgressLog())
    try:
        check_cluster_slots(spark, settings, slots, stop)
        mode = ("everything available, then exit" if available_now else
                f"Real-Time Mode on {slots} task slots, a checkpoint every {settings.spark_checkpoint_seconds:g} s"
                if settings.realtime_counting else f"a micro-batch every {settings.spark_trigger_seconds:g} s")
        logger.info("counting votes for %d candidates from %s into the aggregated_* topics (%s; checkpoint %s)",
                    len(candidates), settings.topic(topics.VOTES), mode, checkpoint)
        query = start_counting(spark, settings, candidates, checkpoint, available_now=available_now)
        # A failing query stops the job loudly; Ctrl-C/SIGTERM stops it (in micro-batch mode, between batches).
        while not stop.is_set() and query.isActive:
            query.awaitTermination(1.0)
        if query.exception() is not None:
            raise RuntimeError(f"query {query.name} failed: {query.exception()}")
        return 0
    except NotEnoughTaskSlots as error:
        logger.error("%s", error)
        return 2
    finally:
        try:
            for query in spark.streams.active:
                # Ends the batch in hand; the checkpoint makes the next start resume after the last one committed
                # (a Real-Time Mode batch stopped midway is replayed, which Spark logs as an aborted write).
                query.stop()
        except Py4JError as error:  # the JVM went first (it was signalled too): nothing left to stop
            logger.warning("Spark had already stopped: %s", str(error).splitlines()[0])
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spark_streaming.py", description=__doc__.split("\n")[0],
                                     parents=[service_wait_option()])
    parser.add_argument("--available-now", action="store_true",
                        help="count everything available on votes_topic, then exit (for scripts and tests; in "
                             "micro-batches, whatever SPARK_COUNTING_MODE says)")
    parser.add_argument("--rebuild-checkpoint", action="store_true",
                        help="delete this election's checkpoint first and count votes_topic again from its start "
                             "(to carry on from an earlier version's checkpoint, which the job otherwise refuses)")
    args = parser.parse_args(argv)
    started = start_long_running(kafka_io.COUNTING, args.wait_for_services)
    if started is None:
        return 1
    settings, stop = started
    return run(settings, available_now=args.available_now, rebuild_checkpoint=args.rebuild_checkpoint, stop=stop)
