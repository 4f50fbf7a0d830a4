"""The measured phases. Each runs the pipeline's own scripts, the way a user does, and returns its figure.

The backlog phases (seeding, voting, counting) share one election, passed in; the latency phase and the whole
election make an election of their own (``elections.throwaway``), removed afterwards.
"""

from __future__ import annotations

import time
from contextlib import ExitStack

from confluent_kafka import Producer

from bench import footprint, results
from bench.stages import Stage, Stages, services_cpu_seconds
from realtime_voting.core import topics, waiting
from realtime_voting.core.settings import Settings
from realtime_voting.counting import batch_progress
from realtime_voting.counting import job as streaming
from realtime_voting.seeding import people
from realtime_voting.services import db, elections, kafka_io

STAGE_TIMEOUT_S = 3600.0  # a million voters take minutes; an hour means something is stuck
SEED_BATCH = "5000"


def seed(election: Settings, voters: int, stages: Stages) -> Stage:
    """``main.py`` registers ``voters`` offline voters (and the candidates) and publishes them."""
    return stages.run(election, "seed", "main.py", "--source", "offline", "--voters", str(voters),
                      "--batch-size", SEED_BATCH, log="seed", timeout_s=STAGE_TIMEOUT_S)


def seed_rate(election: Settings, voters: int, stages: Stages) -> float:
    """``seed_voters_per_s``: the wall time of ``main.py`` seeding ``voters``."""
    started = time.perf_counter()
    seed(election, voters, stages)
    return voters / (time.perf_counter() - started)


def vote_rate(election: Settings, voters: int, workers: int, stages: Stages) -> float:
    """``vote_per_s``: ``workers`` voting processes over ``voters`` published voters, from their start until the
    votes table has ``voters`` rows."""
    with ExitStack() as running:
        started = time.perf_counter()
        voting = [running.enter_context(stages.start(election, f"voting-{worker}", "voting.py",
                                                     "--until-end", log="voting"))
                  for worker in range(workers)]
        waiting.until(lambda: results.votes_stored(election) >= voters, timeout_s=STAGE_TIMEOUT_S,
                      what=f"{voters:,} votes stored")
        elapsed = time.perf_counter() - started
        for stage in voting:
            stage.wait(timeout_s=120)
    return voters / elapsed


def spark_rate(election: Settings, stages: Stages) -> float:
    """``spark_rows_per_s``: ``spark_streaming.py --available-now`` over the backlog, rows over batch time of its
    one query (from the job's own per-batch lines); the totals are checked after."""
    stages.run(election, "spark", "spark_streaming.py", "--available-now", log="spark", timeout_s=STAGE_TIMEOUT_S)
    batches = counting_batches(election, stages)
    millis = sum(batch.millis for batch in batches)
    results.check_totals(election)
    return sum(batch.rows for batch in batches) / (millis / 1000) if millis else 0.0


def counting_batches(election: Settings, stages: Stages) -> list[batch_progress.Batch]:
    """The batches that read rows, of the counting job of ``election``, from its log."""
    log = stages.log("spark")
    name = f"{election.kafka_topic_prefix}{streaming.QUERY}"  # the job's query name: one election's own
    batches = (batch_progress.parse(line) for line in log.read_text().splitlines()) if log.exists() else ()
    return [batch for batch in batches if batch is not None and batch.query == name]


DEFAULT_RATE = 1000  # votes/s: the latency figures at this rate, in the default mode, keep their plain names


def default_warm_up(settings: Settings) -> int:
    """Seconds of votes before the latency phase measures: 15, for the JVM to compile the job's code paths, and
    in Real-Time Mode past the job's first checkpoint too (its first batch's end and the next one's start, the
    slowest of all: 2.2 s here, where a warm one takes 1.2 s)."""
    return int(settings.spark_checkpoint_seconds) + 5 if settings.realtime_counting else 15


def latency_suffix(rate: int, mode: str) -> str:
    """What the latency phase's figure names end with: nothing at 1,000 votes/s in the default counting mode (the
    names of every earlier run), else the rate and the mode, e.g. ``_at_5000`` or ``_at_1000_microbatch``."""
    default_mode = Settings().spark_counting_mode
    if rate == DEFAULT_RATE and mode == default_mode:
        return ""
    return f"_at_{rate}" + ("" if mode == default_mode else f"_{mode}")


def e2e_latency(base: Settings, rate: int, seconds: int, warm_up_s: int,
                stages: Stages) -> tuple[dict[str, float], list[batch_progress.Batch]]:
    """The latency figures of the votes of ``seconds`` at ``rate``, after ``warm_up_s`` at the same rate, named
    with ``latency_suffix``: ``e2e_latency_ms_p50``/``p95``/``p99``, the voting stage's part of them
    (``vote_published_ms_p50``/``p95``), the counting job's CPU seconds (its JVM's included) per 1,000 votes
    over the measured votes, and the result messages it wrote per vote; and the counting job's batches meanwhile.

    The warm-up lets the JVM compile the job's code paths (its first batches take seconds): the figure is that of
    a job that has been running, as it is during an election.
    """
    suffix = latency_suffix(rate, base.spark_counting_mode.lower())
    with elections.throwaway(base, "bench_latency") as election:
        stages.run(election, "seed", "main.py", "--source", "offline", "--voters", "0", log="seed", timeout_s=600)
        total = rate * (warm_up_s + seconds)
        voters = [people.voter_from_randomuser(person) for person in people.OfflineSource(5).people(total)]
        with db.connected(election) as connection:
            for start in range(0, total, 10_000):
                db.insert_voters(connection, voters[start:start + 10_000])
        with (stages.start(election, "voting", "voting.py", "--batch-size", "200", log="voting"),
              stages.start(election, "spark", "spark_streaming.py", log="spark") as counting):
            # The job is ready once it has counted a first vote; wait for that before the clock starts.
            producer = Producer(kafka_io.producer_config(election, kafka_io.SEEDING))
            voters_topic = election.topic(topics.VOTERS)
            producer.produce(voters_topic, key=voters[0].voter_id, value=voters[0].to_message())
            producer.flush(10)
            waiting.until(lambda: results.votes_counted(election) >= 1, timeout_s=300, every_s=1.0,
                          what="the counting job's first result")
            started = time.perf_counter()
            measured_from = time.time() + warm_up_s
            first_measured = rate * warm_up_s
            cpu_at_start = 0.0
            for number, voter in enumerate(voters[1:], start=1):
                due = started + number / rate
                while (pause := due - time.perf_counter()) > 0:
                    time.sleep(min(pause, 0.01))  # pacing the steady arrival rate, not synchronisation
                if number == first_measured:
                    cpu_at_start = counting.cpu_seconds
                producer.produce(voters_topic, key=voter.voter_id, value=voter.to_message())
                producer.poll(0)
            producer.flush(30)
            waiting.until(lambda: results.votes_counted(election) >= total, timeout_s=600, every_s=1.0,
                          what=f"all {total:,} votes counted")
            counting_cpu = counting.cpu_seconds - cpu_at_start
            shown = results.history(election)
            results.check_totals(election)
            names = [f"e2e_latency_ms_{name}{suffix}" for name in ("p50", "p95", "p99")]
            figures = dict(zip(names, results.latency_percentiles(election, shown, measured_from), strict=True))
            figures |= dict(zip((f"vote_published_ms_p50{suffix}", f"vote_published_ms_p95{suffix}"),
                                results.publish_delays(election, measured_from), strict=True))
            figures[f"counting_cpu_s_per_1000_votes{suffix}"] = counting_cpu * 1000 / (rate * seconds)
            figures[f"result_messages_per_vote{suffix}"] = results.result_messages(election) / total
            return figures, after_warm_up(counting_batches(election, stages), rate * warm_up_s)


def after_warm_up(batches: list[batch_progress.Batch], warm_up_rows: int) -> list[batch_progress.Batch]:
    """The batches after the first ``warm_up_rows`` rows (the first vote and the warm-up's votes)."""
    counted = 0
    for number, batch in enumerate(batches):
        if counted >= warm_up_rows:
            return batches[number:]
        counted += batch.rows
    return []


def whole_election(base: Settings, voters: int, workers: int, stages: Stages
                   ) -> tuple[float, list[batch_progress.Batch], dict[str, float], dict[str, float]]:
    """``election_s``: from an empty election to exact final totals for ``voters``, every stage running at once;
    the counting query's batches; the CPU seconds each stage (and the local Kafka nodes and PostgreSQL) took
    meanwhile, by name; and what the election left on disk, per voter (``footprint``)."""
    with elections.throwaway(base, "bench_election") as election, ExitStack() as running:
        services_before = services_cpu_seconds(base)
        started = time.perf_counter()
        voting = [running.enter_context(stages.start(election, f"voting-{worker}", "voting.py", log="voting"))
                  for worker in range(workers)]
        counting = running.enter_context(stages.start(election, "spark", "spark_streaming.py", log="spark"))
        seeding = seed(election, voters, stages)
        waiting.until(lambda: results.votes_counted(election) >= voters, timeout_s=STAGE_TIMEOUT_S, every_s=1.0,
                      what="exact final totals")
        elapsed = time.perf_counter() - started
        cpu = {"seeding": seeding.cpu_seconds, "voting": sum(stage.cpu_seconds for stage in voting),
               "counting": counting.cpu_seconds}
        cpu |= {name: seconds - services_before[name] for name, seconds in services_cpu_seconds(base).items()
                if name in services_before}
        results.check_totals(election)
        return elapsed, counting_batches(election, stages), cpu, footprint.per_voter(election, voters)
