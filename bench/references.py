"""The physical references the figures are compared with, measured on the same machine and services:
PostgreSQL's COPY of voters rows, and Kafka's own producer benchmark for messages of a voter message's size."""

from __future__ import annotations

import re
import time

from bench import BenchFailed
from realtime_voting.core import topics
from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.seeding import people
from realtime_voting.services import db, elections, kafka_io

COPY_BATCH = 10_000


def copy_rate(base: Settings, rows: int) -> float:
    """``reference_copy_rows_per_s``: voters rows stored per second through ``db.insert_voters`` (COPY)."""
    with elections.throwaway(base, "bench_copy") as election, db.connected(election) as connection:
        db.create_schema(connection, election.postgres_schema)
        voters = [people.voter_from_randomuser(person) for person in people.OfflineSource(1).people(rows)]
        started = time.perf_counter()
        for start in range(0, rows, COPY_BATCH):
            db.insert_voters(connection, voters[start:start + COPY_BATCH])
        return rows / (time.perf_counter() - started)


def producer_rate(base: Settings, records: int) -> float:
    """``reference_producer_msgs_per_s``: the broker's own ``ProducerPerformance`` (from its jars), ``records``
    records of a voter message's size."""
    record_size = len(people.voter_from_randomuser(next(people.OfflineSource(1).people(1))).to_message())
    with elections.throwaway(base, "bench_producer") as election:
        elections.create_topics(election)
        # As main.py's user, with its security settings when Kafka asks for them (KAFKA_SECURITY_PROTOCOL).
        client_properties = [f"{name}={value}" for name, value in
                             kafka_io.java_client_properties(election, kafka_io.SEEDING).items()]
        finished = processes.run_program(
            ["java", "-Xmx512m", "-cp", f"{base.jars_dir / 'kafka'}/*", "org.apache.kafka.tools.ProducerPerformance",
             "--topic", election.topic(topics.VOTERS), "--num-records", str(records),
             "--record-size", str(record_size), "--throughput", "-1",
             "--producer-props", *client_properties, "linger.ms=5"],
            timeout_s=600)
    rates = re.findall(r"([\d.]+) records/sec", finished.stdout)
    if finished.returncode != 0 or not rates:
        raise BenchFailed(f"ProducerPerformance exited with {finished.returncode} and printed no rate:\n"
                          f"{(finished.stdout + finished.stderr)[-2000:]}")
    return float(rates[-1])
