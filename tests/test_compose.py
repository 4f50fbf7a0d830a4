"""``make compose-up`` for real: the whole system in containers, scaled, hurt, and counted exactly once.

From nothing (the engine, Compose and the base image are installed or made by ``make compose-up`` itself), it
starts the compose stack as its own project on free ports, with no ``.env`` (an empty env file: the compose file's
own defaults, which .env.example shows), so Kafka is three nodes and secured (``SASL_SSL``: every stage through TLS
as its own user, with ACLs). It scales voting to 3 and the Spark workers to 2, seeds 20,000 voters through the
``seed`` service, checks on the Spark master that the counting job has executors on both workers, SIGKILLs one
worker and kills the Kafka container that leads a partition of votes_topic while votes flow, checks that votes keep
being stored with that node down, then waits until the results on the ``aggregated_*`` topics equal the ``votes``
table and the dashboard shows every vote. A vote forged from the host through the published ports, without the
voting stage's credentials, is refused and never counted. ``docker compose stop`` and ``make compose-down
ARGS=-v`` remove it all but the image. Every step has a deadline; when one fails, the services' last log lines are
printed.

The run is the secured one, compose's default, because it takes every path the PLAINTEXT one does (the same
services, images and code) and more: the CA shared on its volume, the users made by ``kafka-grant``, Spark's
executors on the workers logging in. PLAINTEXT's compose file is checked statically (tests/test_docker_compose.py),
and the PLAINTEXT clients run against a real broker in every other integration test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from realtime_voting.core import topics, waiting
from realtime_voting.core.schemas import Vote
from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.services import kafka_io
from realtime_voting.services.db import query
from realtime_voting.web import dashboard_data
from tests.support.browser import chromium_page, metric_value, open_when_served
from tests.support.ports import free_ports
from tests.support.tools import tool_missing

pytestmark = [pytest.mark.compose, pytest.mark.browser]

VOTERS = 20_000
PROJECT = "realtime-voting-test"
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
SERVICES = (*KAFKA_NODES, "postgres", "spark-master", "spark-worker", "spark-job", "kafka-grant", "seed", "voting",
            "dashboard")


class ComposeStack:
    """One compose project of this test's own, driven through the Makefile and ``docker compose``."""

    def __init__(self) -> None:
        kafka_1, kafka_2, kafka_3, postgres, dashboard, spark_ui = free_ports(6)
        self.folder = Path(tempfile.mkdtemp(prefix="compose-test-"))
        # No .env: an empty env file stands for a fresh clone's missing one (a developer's .env stays unread).
        self.env_file = self.folder / "empty.env"
        self.env_file.touch()
        self.environment = {
            **os.environ,
            # A project of its own (its containers, volumes and image), beside a user's `realtime-voting`.
            "COMPOSE_PROJECT_NAME": PROJECT,
            "KAFKA_PUBLISHED_PORT": str(kafka_1), "KAFKA_2_PUBLISHED_PORT": str(kafka_2),
            "KAFKA_3_PUBLISHED_PORT": str(kafka_3), "POSTGRES_PUBLISHED_PORT": str(postgres),
            "DASHBOARD_PUBLISHED_PORT": str(dashboard), "SPARK_UI_PUBLISHED_PORT": str(spark_ui),
            # Votes paced (200 a second per replica) so that the faults land while they flow, and every voter votes.
            "VOTING_RATE": "200",
            "VOTING_TURNOUT": "1",
        }
        # This test's own view from the host, through the published ports: as the dashboard's user, trusting the
        # CA that the nodes publish (copied out of a container by trust_the_nodes_ca).
        self.ca_file = self.folder / "ca.pem"
        self.settings = replace(Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}),
                                kafka_bootstrap_servers=f"localhost:{kafka_1},localhost:{kafka_2},localhost:{kafka_3}",
                                postgres_port=postgres, kafka_ssl_ca_location=str(self.ca_file))
        self.dashboard_url = f"http://localhost:{dashboard}"
        self.spark_ui_url = f"http://localhost:{spark_ui}"

    def make(self, target: str, *args: str, timeout_s: float) -> None:
        self.run(["make", target, f"COMPOSE_ENV_FILE=--env-file {self.env_file}", *args], timeout_s=timeout_s)

    def compose(self, *args: str, timeout_s: float = 300) -> str:
        return self.run(["docker", "compose", "--env-file", str(self.env_file), *args], timeout_s=timeout_s)

    def run(self, command: list[str], timeout_s: float) -> str:
        try:
            result = processes.run_program(command, env=self.environment, timeout_s=timeout_s)
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"`{' '.join(command)}` did not finish within {timeout_s:.0f}s\n{self.logs()}"
                        f"\n{error.stdout or ''}{error.stderr or ''}")
        if result.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` exited {result.returncode}:\n{result.stdout[-3000:]}"
                        f"{result.stderr[-3000:]}\n{self.logs()}")
        return result.stdout

    def logs(self, lines: int = 25) -> str:
        """The last log lines of every service, for a failure's message."""
        result = processes.run_program(["docker", "compose", "--env-file", str(self.env_file), "logs", "--no-color",
                                        "--tail", str(lines), *SERVICES], env=self.environment, timeout_s=60)
        return f"--- last {lines} log lines of each service ---\n{result.stdout[-12000:]}"

    def trust_the_nodes_ca(self) -> None:
        """Copy the CA certificate that the Kafka nodes published on the kafka-ca volume, as docs/docker.md says."""
        self.compose("cp", "kafka-1:/app/.local/kafka-ca/ca.pem", str(self.ca_file))

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "--quiet", service).split()

    def wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        waiting.until(condition, timeout_s=timeout_s, what=what, every_s=2, explain=self.logs)


def docker_and_compose_answer() -> bool:
    """Whether a Docker engine runs and Compose v2 is there (else ``make compose-up`` provides them)."""
    return shutil.which("docker") is not None and all(
        processes.run_program(command, timeout_s=60).returncode == 0
        for command in (["docker", "info"], ["docker", "compose", "version"]))


@pytest.fixture(scope="module")
def stack() -> Iterator[ComposeStack]:
    if os.geteuid() != 0 and shutil.which("docker") is None:
        tool_missing("no Docker here, and only root can install it (make compose-up)")
    compose = ComposeStack()
    if docker_and_compose_answer():
        compose.compose("down", "--volumes", "--remove-orphans", timeout_s=300)  # what an interrupted run left
    try:
        started = time.monotonic()
        compose.make("compose-up", timeout_s=1800)
        print(f"make compose-up took {time.monotonic() - started:.0f}s")
        compose.trust_the_nodes_ca()
        yield compose
    finally:
        compose.compose("stop", timeout_s=300)
        compose.make("compose-down", "ARGS=-v", timeout_s=300)
        shutil.rmtree(compose.folder, ignore_errors=True)


def spark_master_state(stack: ComposeStack) -> dict:
    with urllib.request.urlopen(f"{stack.spark_ui_url}/json/", timeout=5) as response:  # noqa: S310 - http on 127.0.0.1 at the stack's own port
        return json.load(response)


def counting_job_runs_on_both_workers(stack: ComposeStack) -> bool:
    state = spark_master_state(stack)
    workers = [worker for worker in state["workers"] if worker["state"] == "ALIVE"]
    return ([app["name"] for app in state["activeapps"]] == ["realtime-voting-counting"] and len(workers) == 2
            and all(worker["coresused"] > 0 for worker in workers))


def votes_cast(stack: ComposeStack) -> int:
    try:
        return query(stack.settings, "SELECT count(*) FROM votes")[0][0]
    except psycopg2.Error:  # PostgreSQL restarting, or the tables not made yet
        return 0


def totals_match_the_votes_table(stack: ComposeStack, reader: dashboard_data.ResultsReader) -> bool:
    results = reader.snapshot()
    per_candidate = {row.candidate_id: row.total_votes for row in results.rows(topics.VOTES_PER_CANDIDATE)}
    per_state = {row.state: row.total_votes for row in results.rows(topics.TURNOUT_BY_LOCATION)}
    return (per_candidate == dict(query(stack.settings, "SELECT candidate_id, count(*) FROM votes GROUP BY 1"))
            and per_state == dict(query(stack.settings, "SELECT address_state, count(*) FROM votes "
                                                        "JOIN voters USING (voter_id) GROUP BY 1")))


def leader_of_a_votes_partition(stack: ComposeStack) -> str:
    """The compose service of the node that leads partition 0 of votes_topic (asked as the admin: the dashboard's
    user may not even see votes_topic)."""
    votes_topic = stack.settings.topic(topics.VOTES)
    metadata = kafka_io.admin_client(stack.settings, kafka_io.ADMIN).list_topics(votes_topic, timeout=30)
    return f"kafka-{metadata.topics[votes_topic].partitions[0].leader}"


def votes_topic_end(stack: ComposeStack) -> int:
    """The sum of votes_topic's end offsets: every message written to it, counted or not (asked as the admin)."""
    votes_topic = stack.settings.topic(topics.VOTES)
    consumer = Consumer(kafka_io.consumer_config(stack.settings, kafka_io.ADMIN, f"compose-test-{uuid.uuid4()}"))
    try:
        partitions = consumer.list_topics(votes_topic, timeout=30).topics[votes_topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(votes_topic, number), timeout=30)[1]
                   for number in partitions)
    finally:
        consumer.close()


def forge_a_vote(settings: Settings, principal: str) -> str:
    """Write a well-formed vote to votes_topic as ``principal``, not the voting stage; the delivery's error."""
    forged = Vote("forged-voter", "forged-candidate", datetime.now(UTC), "Nowhere", "other", None)
    errors: list[str] = []
    producer = Producer(kafka_io.producer_config(settings, principal, **{
        "delivery.report.only.error": False, "message.timeout.ms": 15000, "log_level": 3,  # not every refusal
        "on_delivery": lambda error, _message: errors.append(str(error))}))
    producer.produce(settings.topic(topics.VOTES), key=forged.voter_id, value=forged.to_message())
    producer.flush(30)
    return errors[0] if errors else "no delivery report"


# The whole run, `make compose-up` from nothing included: pyproject.toml's 600 s per test is too short cold.
@pytest.mark.timeout(1800)
def test_the_compose_stack_scaled_and_hurt_counts_every_vote_exactly_once(stack):
    running = {name: stack.containers(name) for name in (*KAFKA_NODES, "postgres", "spark-master")}
    with pytest.raises(kafka_io.KafkaUnavailable):  # the published ports ask who is there, with no .env too
        kafka_io.wait_for_kafka(replace(stack.settings, kafka_security_protocol="PLAINTEXT"), kafka_io.DASHBOARD,
                                timeout_s=5)
    stack.compose("up", "-d", "--wait", "--scale", "voting=3", "--scale", "spark-worker=2", timeout_s=600)
    assert len(stack.containers("voting")) == 3
    assert {name: stack.containers(name) for name in running} == running, "scaling recreated running services"
    stack.wait_until(lambda: counting_job_runs_on_both_workers(stack), 180,
                     "the counting job having executors on both Spark workers")

    # --no-deps: Kafka and PostgreSQL run already, and Compose may otherwise recreate them.
    stack.compose("run", "--rm", "--no-deps", "seed", "python", "main.py", "--voters", str(VOTERS),
                  "--source", "offline")
    assert query(stack.settings, "SELECT count(*) FROM voters") == [(VOTERS,)]
    stack.wait_until(lambda: votes_cast(stack) >= 3000, 180, "the first 3,000 votes cast")

    # Faults while votes flow: one worker (and its executor) killed outright, and the Kafka node that leads a
    # partition of votes_topic killed (not restarted): the other two have every vote, and go on without it.
    stack.run(["docker", "kill", "--signal", "KILL", stack.containers("spark-worker")[0]], timeout_s=60)
    lost = leader_of_a_votes_partition(stack)
    stack.run(["docker", "kill", "--signal", "KILL", *stack.containers(lost)], timeout_s=60)
    at_loss = votes_cast(stack)
    assert at_loss < VOTERS - 2000, "the faults came near the last vote: they tested nothing"
    stack.wait_until(lambda: votes_cast(stack) > at_loss + 1000, 120, f"votes stored with {lost} down")
    assert not stack.compose("ps", "--quiet", "--status", "running", lost).split(), f"{lost} came back by itself"

    stack.wait_until(lambda: votes_cast(stack) == VOTERS, 600, f"all {VOTERS:,} voters voting")
    assert query(stack.settings, "SELECT count(*) FROM voters LEFT JOIN votes USING (voter_id) "
                                 "WHERE votes.voter_id IS NULL") == [(0,)]
    reader = dashboard_data.ResultsReader(stack.settings)  # from the host, through the published ports
    try:
        stack.wait_until(lambda: totals_match_the_votes_table(stack, reader), 600,
                         "the aggregated_* totals equal to the votes table")

        # A vote forged from the host, through the published ports, by a client that is not the voting stage:
        # without credentials the nodes do not let it in, and as another stage's user the ACLs refuse the write.
        written = votes_topic_end(stack)
        anonymous = forge_a_vote(replace(stack.settings, kafka_security_protocol="PLAINTEXT"), kafka_io.DASHBOARD)
        as_the_dashboard = forge_a_vote(stack.settings, kafka_io.DASHBOARD)
        assert "timed out" in anonymous.lower(), anonymous
        assert "TOPIC_AUTHORIZATION_FAILED" in as_the_dashboard, as_the_dashboard
        assert votes_topic_end(stack) == written, "a forged vote reached votes_topic"
        assert totals_match_the_votes_table(stack, reader)
    finally:
        reader.close()

    with chromium_page() as page:
        open_when_served(page, stack.dashboard_url, lambda: True)
        stack.wait_until(lambda: metric_value(page, "Votes cast") == f"{VOTERS:,}", 120,
                         "the dashboard showing every vote cast")
