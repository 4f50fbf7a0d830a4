"""`make bench`: the pipeline measured end to end, beside the physical references of the same machine.

Runs against the stack the usual settings point at (`make bench` starts the local one first). Every phase
works in an election of its own (its own topic prefix and PostgreSQL schema), removed afterwards.

Figures (the table, then one JSON line last):
- seed_voters_per_s   main.py --source offline: voters generated, stored and published per second
- vote_per_s          voting.py: votes consumed, stored and published per second (1 process, then --workers)
- spark_rows_per_s    spark_streaming.py --available-now over the whole backlog (the slowest query's rate)
- e2e_latency_ms_p50/p95  from a vote's voting_time to the moment its candidate's total includes it, with the
                      job running continuously and voters arriving at --rate per second for --seconds
- election_s          from an empty election to exact final totals for --voters, every stage running at once
- references          the broker's own producer throughput (ProducerPerformance) for messages of the voter
                      message's size, and PostgreSQL's COPY rate for the voters rows

It checks its own result (the final totals equal the votes table) and exits non-zero if they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from realtime_voting import db, kafka_io, people, topics  # noqa: E402
from realtime_voting.cli import configure_logging, services_ready  # noqa: E402
from realtime_voting.settings import Settings  # noqa: E402


class BenchFailed(RuntimeError):
    pass


# --- Elections of the benchmark's own ---

def new_election(base: Settings, name: str) -> Settings:
    tag = f"bench_{name}_{uuid.uuid4().hex[:6]}"
    with db.connect(base) as connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(tag)))
    return replace(base, postgres_schema=tag, kafka_topic_prefix=f"{tag}-")


def drop_election(election: Settings) -> None:
    topics.delete_election_topics(election)
    connection = db.connect(election)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(election.postgres_schema)))
    finally:
        connection.close()


def scalar(election: Settings, statement: str) -> int:
    connection = db.connect(election)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchone()[0]
    finally:
        connection.close()


# --- Processes, with their peak memory ---

class Stage:
    """A top-level script run as a process, sampled for its peak resident memory (the Python process itself)."""

    peak_rss: dict[str, int] = {}

    def __init__(self, election: Settings, name: str, *argv: str, log: Path) -> None:
        self.name = name
        self.log = log.open("ab")
        self.process = subprocess.Popen([sys.executable, *argv], cwd=REPO_ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT, env={**os.environ, **election.as_environment()})
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        try:
            process = psutil.Process(self.process.pid)
            while self.process.poll() is None:
                rss = process.memory_info().rss
                Stage.peak_rss[self.name] = max(Stage.peak_rss.get(self.name, 0), rss)
                time.sleep(0.2)  # sampling interval
        except psutil.NoSuchProcess:
            pass

    def wait(self, timeout_s: float) -> int:
        code = self.process.wait(timeout=timeout_s)
        self.log.close()
        if code != 0:
            raise BenchFailed(f"{self.name} exited with {code}: see {self.log.name}")
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self.log.close()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise BenchFailed(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)  # polling interval of the condition, bounded by the deadline


# --- Results on the topics ---

def latest_totals(election: Settings, topic: str) -> dict[str, int]:
    return {key: value["total_votes"] for key, (value, _) in read_results(election, topic).items()}


def read_results(election: Settings, topic: str, history: list | None = None) -> dict[str, tuple[dict, float]]:
    """Latest (value, broker timestamp in s) per key; every message into ``history`` when given."""
    name = election.topic(topic)
    consumer = Consumer(kafka_io.consumer_config(election, f"bench-reader-{uuid.uuid4().hex[:8]}"))
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        ends = {number: consumer.get_watermark_offsets(TopicPartition(name, number), timeout=10)[1]
                for number in partitions}
        consumer.assign([TopicPartition(name, number, OFFSET_BEGINNING) for number in partitions])
        positions = {number: 0 for number in partitions}
        latest: dict[str, tuple[dict, float]] = {}
        deadline = time.monotonic() + 120
        while any(positions[number] < ends[number] for number in partitions) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            value = json.loads(message.value())
            stamp = message.timestamp()[1] / 1000
            latest[message.key().decode()] = (value, stamp)
            if history is not None:
                history.append((value, stamp))
            positions[message.partition()] = message.offset() + 1
        return latest
    finally:
        consumer.close()


def check_totals(election: Settings) -> None:
    expected = dict(_rows(election, "SELECT candidate_id, count(*) FROM votes GROUP BY 1"))
    got = latest_totals(election, "aggregated_votes_per_candidate")
    if got != expected:
        raise BenchFailed(f"the counted totals {got} differ from the votes table {expected}")


def _rows(election: Settings, statement: str) -> list[tuple]:
    connection = db.connect(election)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall()
    finally:
        connection.close()


# --- The phases ---

def reference_copy_rate(base: Settings, rows: int) -> float:
    election = new_election(base, "copy")
    try:
        connection = db.connect(election)
        db.create_schema(connection, election.postgres_schema)
        source = people.OfflineSource(1)
        voters = [people.voter_from_randomuser(person) for person in source.people(rows)]
        started = time.perf_counter()
        for start in range(0, rows, 10_000):
            db.insert_voters(connection, voters[start:start + 10_000])
        elapsed = time.perf_counter() - started
        connection.close()
        return rows / elapsed
    finally:
        drop_election(election)


def reference_producer_rate(base: Settings, records: int, record_size: int) -> float:
    election = new_election(base, "producer")
    try:
        topics.create_election_topics(election)
        classpath = f"{base.jars_dir / 'kafka'}/*"
        output = subprocess.run(
            ["java", "-Xmx512m", "-cp", classpath, "org.apache.kafka.tools.ProducerPerformance",
             "--topic", election.topic(topics.VOTERS), "--num-records", str(records),
             "--record-size", str(record_size), "--throughput", "-1",
             "--producer-props", f"bootstrap.servers={base.kafka_bootstrap_servers}", "linger.ms=5"],
            capture_output=True, text=True, timeout=600, check=True,
        ).stdout
        match = re.findall(r"([\d.]+) records/sec", output)
        if not match:
            raise BenchFailed(f"ProducerPerformance printed no rate:\n{output[-2000:]}")
        return float(match[-1])
    finally:
        drop_election(election)


def seed_rate(election: Settings, voters: int, logs: Path) -> float:
    started = time.perf_counter()
    Stage(election, "seed", "main.py", "--source", "offline", "--voters", str(voters), "--batch-size", "5000",
          log=logs / "seed.log").wait(timeout_s=3600)
    return voters / (time.perf_counter() - started)


def vote_rate(election: Settings, voters: int, workers: int, logs: Path) -> float:
    started = time.perf_counter()
    stages = [Stage(election, f"voting-{worker}", "voting.py", "--exit-on-idle", "2", log=logs / "voting.log")
              for worker in range(workers)]
    wait_for(lambda: scalar(election, "SELECT count(*) FROM votes") >= voters, 3600, "every vote")
    elapsed = time.perf_counter() - started
    for stage in stages:
        stage.wait(timeout_s=120)
    return voters / elapsed


def spark_rate(election: Settings, logs: Path) -> float:
    log = logs / "spark.log"
    before = log.read_text().count("\n") if log.exists() else 0
    Stage(election, "spark", "spark_streaming.py", "--available-now", log=log).wait(timeout_s=3600)
    lines = log.read_text().splitlines()[before:]
    rates = {}
    for query in ("tallies", "dead_letters"):
        batches = [re.search(r" batch \d+: (\d+) rows, [\d.]+ rows/s, (\d+) ms", line)
                   for line in lines if f"{election.kafka_topic_prefix}{query} batch" in line]
        rows = sum(int(match.group(1)) for match in batches if match)
        millis = sum(int(match.group(2)) for match in batches if match)
        rates[query] = rows / (millis / 1000) if millis else 0.0
    check_totals(election)
    return min(rates.values())


def e2e_latency(base: Settings, rate: int, seconds: int, warm_up_s: int, logs: Path) -> tuple[float, float]:
    """Latency percentiles of the votes of ``seconds`` at ``rate``, after ``warm_up_s`` at the same rate.

    The warm-up lets the JVM compile the job's code paths (its first micro-batches take seconds): the figure
    is that of a job that has been running, as it is during an election.
    """
    election = new_election(base, "latency")
    stages = []
    try:
        Stage(election, "seed", "main.py", "--source", "offline", "--voters", "0", log=logs / "seed.log").wait(600)
        connection = db.connect(election)
        total = rate * (warm_up_s + seconds)
        voters = [people.voter_from_randomuser(p) for p in people.OfflineSource(5).people(total)]
        for start in range(0, total, 10_000):
            db.insert_voters(connection, voters[start:start + 10_000])
        connection.close()
        stages.append(Stage(election, "voting", "voting.py", "--batch-size", "200", log=logs / "voting.log"))
        stages.append(Stage(election, "spark", "spark_streaming.py", log=logs / "spark.log"))
        # The job is ready once it has counted a first vote; wait for that before the clock starts.
        producer = Producer(kafka_io.producer_config(election))
        voters_topic = election.topic(topics.VOTERS)
        producer.produce(voters_topic, key=voters[0].voter_id, value=voters[0].to_message())
        producer.flush(10)
        wait_for(lambda: sum(latest_totals(election, "aggregated_votes_per_candidate").values()) >= 1, 300,
                 "the counting job's first result", interval_s=1.0)
        started = time.perf_counter()
        measured_from = time.time() + warm_up_s
        for number, voter in enumerate(voters[1:], start=1):
            due = started + number / rate
            while (pause := due - time.perf_counter()) > 0:
                time.sleep(min(pause, 0.01))  # pacing the steady arrival rate, not synchronisation
            producer.produce(voters_topic, key=voter.voter_id, value=voter.to_message())
            producer.poll(0)
        producer.flush(30)
        wait_for(lambda: sum(latest_totals(election, "aggregated_votes_per_candidate").values()) >= total, 600,
                 "every vote to be counted", interval_s=1.0)
        history: list = []
        read_results(election, "aggregated_votes_per_candidate", history)
        check_totals(election)
        return latency_percentiles(election, history, measured_from)
    finally:
        for stage in stages:
            stage.stop()
        drop_election(election)


def latency_percentiles(election: Settings, history: list[tuple[dict, float]],
                        measured_from: float) -> tuple[float, float]:
    """For each candidate, the k-th vote (by voting_time) is counted when a result first shows total >= k.

    Only the votes cast from ``measured_from`` (epoch seconds) on are measured; all of them are ranked.
    """
    votes = _rows(election, "SELECT candidate_id, extract(epoch FROM voting_time) FROM votes "
                            "ORDER BY candidate_id, voting_time")
    shown: dict[str, list[tuple[int, float]]] = {}
    for value, stamp in history:
        shown.setdefault(value["candidate_id"], []).append((value["total_votes"], stamp))
    latencies = []
    rank: dict[str, int] = {}
    for candidate_id, cast_at in votes:
        rank[candidate_id] = rank.get(candidate_id, 0) + 1
        counted_at = min((stamp for total, stamp in shown.get(candidate_id, []) if total >= rank[candidate_id]),
                         default=None)
        if counted_at is not None and float(cast_at) >= measured_from:
            latencies.append((counted_at - float(cast_at)) * 1000)
    quantiles = statistics.quantiles(latencies, n=100)
    return quantiles[49], quantiles[94]


def whole_election(base: Settings, voters: int, workers: int, logs: Path) -> float:
    election = new_election(base, "election")
    stages = []
    try:
        started = time.perf_counter()
        stages += [Stage(election, f"voting-{worker}", "voting.py", log=logs / "voting.log")
                   for worker in range(workers)]
        stages.append(Stage(election, "spark", "spark_streaming.py", log=logs / "spark.log"))
        Stage(election, "seed", "main.py", "--source", "offline", "--voters", str(voters), "--batch-size", "5000",
              log=logs / "seed.log").wait(timeout_s=3600)
        wait_for(lambda: sum(latest_totals(election, "aggregated_votes_per_candidate").values()) >= voters, 3600,
                 "exact final totals", interval_s=1.0)
        elapsed = time.perf_counter() - started
        check_totals(election)
        return elapsed
    finally:
        for stage in stages:
            stage.stop()
        drop_election(election)


def main() -> int:
    parser = argparse.ArgumentParser(description="Measure the pipeline end to end (see bench/README.md).")
    parser.add_argument("--voters", type=int, default=1_000_000, help="election size (default 1,000,000)")
    parser.add_argument("--rate", type=int, default=1000, help="votes per second for the latency phase")
    parser.add_argument("--seconds", type=int, default=60, help="length of the latency phase")
    parser.add_argument("--warm-up", type=int, default=15,
                        help="seconds of votes at the same rate before the latency phase measures")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="voting.py processes, 2nd run")
    args = parser.parse_args()
    configure_logging()
    base = Settings.from_env()
    if not services_ready(base):
        return 1
    logs = base.logs_dir / f"bench-{datetime.now():%Y%m%d-%H%M%S}"
    logs.mkdir(parents=True, exist_ok=True)
    figures: dict[str, float] = {}

    def phase(name: str) -> None:
        print(f"[bench] {name}...", flush=True)

    try:
        phase("references")
        figures["reference_copy_rows_per_s"] = reference_copy_rate(base, min(args.voters, 200_000))
        sample = people.voter_from_randomuser(next(people.OfflineSource(1).people(1))).to_message()
        figures["reference_producer_msgs_per_s"] = reference_producer_rate(base, min(args.voters, 500_000),
                                                                           len(sample))
        phase(f"seeding {args.voters:,} voters")
        backlog = new_election(base, "backlog")
        try:
            figures["seed_voters_per_s"] = seed_rate(backlog, args.voters, logs)
            phase("voting with 1 process")
            figures["vote_per_s"] = vote_rate(backlog, args.voters, 1, logs)
            phase("counting the backlog with Spark (--available-now)")
            figures["spark_rows_per_s"] = spark_rate(backlog, logs)
        finally:
            drop_election(backlog)
        if args.workers > 1:
            phase(f"voting with {args.workers} processes")
            parallel = new_election(base, "parallel")
            try:
                Stage(parallel, "seed", "main.py", "--source", "offline", "--voters", str(args.voters),
                      "--batch-size", "5000", log=logs / "seed.log").wait(timeout_s=3600)
                figures[f"vote_per_s_{args.workers}_workers"] = vote_rate(parallel, args.voters, args.workers, logs)
            finally:
                drop_election(parallel)
        phase(f"latency at {args.rate:,} votes/s for {args.seconds}s, after {args.warm_up}s of warm-up")
        figures["e2e_latency_ms_p50"], figures["e2e_latency_ms_p95"] = e2e_latency(
            base, args.rate, args.seconds, args.warm_up, logs)
        phase(f"a whole election of {args.voters:,} voters, every stage at once")
        figures["election_s"] = whole_election(base, args.voters, args.workers, logs)
    except BenchFailed as error:
        print(f"bench FAILED: {error}", file=sys.stderr)
        return 1
    figures["peak_rss_mb"] = max(Stage.peak_rss.values()) / 2**20
    print_table(figures, args)
    print(json.dumps({key: round(value, 1) for key, value in figures.items()}))
    return 0


def print_table(figures: dict[str, float], args: argparse.Namespace) -> None:
    copy_rate, producer_rate = figures["reference_copy_rows_per_s"], figures["reference_producer_msgs_per_s"]
    rows = [
        ("reference: PostgreSQL COPY, voters rows/s", figures["reference_copy_rows_per_s"], ""),
        ("reference: Kafka ProducerPerformance, msgs/s", figures["reference_producer_msgs_per_s"], ""),
        ("seed_voters_per_s", figures["seed_voters_per_s"],
         f"{figures['seed_voters_per_s'] / min(copy_rate, producer_rate):.0%} of the slower reference"),
        ("vote_per_s (1 process)", figures["vote_per_s"], f"{figures['vote_per_s'] / copy_rate:.0%} of COPY"),
    ]
    for key, value in figures.items():
        if key.startswith("vote_per_s_"):
            rows.append((key, value, f"{value / copy_rate:.0%} of COPY"))
    rows += [
        ("spark_rows_per_s", figures["spark_rows_per_s"], f"{figures['spark_rows_per_s'] / producer_rate:.0%} of "
                                                          "the producer reference"),
        ("e2e_latency_ms_p50", figures["e2e_latency_ms_p50"], f"at {args.rate:,} votes/s"),
        ("e2e_latency_ms_p95", figures["e2e_latency_ms_p95"], f"at {args.rate:,} votes/s"),
        ("election_s", figures["election_s"], f"{args.voters:,} voters"),
        ("peak_rss_mb (largest Python process)", figures["peak_rss_mb"], ""),
    ]
    print()
    print(f"{'figure':<48} {'value':>12}  note")
    for name, value, note in rows:
        print(f"{name:<48} {value:>12,.1f}  {note}")
    print()


if __name__ == "__main__":
    raise SystemExit(main())
