"""Shared fixtures: one real local stack per test session, on free ports, started by the project's own code.

The stack lives in ``.local/test-stack`` and listens on ports picked at start, so ``make test`` never touches
services a user is running on the default ports. Set ``TEST_USE_RUNNING_SERVICES=1`` to run the integration
tests against the services the usual environment variables point at instead.
Each test gets its own topics and its own PostgreSQL schema, so no test depends on another's leftovers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from psycopg2 import sql

from realtime_voting import db, kafka_io, topics
from realtime_voting.local_stack import LocalStack
from realtime_voting.settings import REPO_ROOT, Settings

TEST_STATE_DIR = REPO_ROOT / ".local" / "test-stack"


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on right now (held open together so that they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the local stack, through whichever fixture, is an integration test (`make test-fast`
    leaves those out)."""
    for item in items:
        if "stack_settings" in item.fixturenames:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings pointing at a freshly started local stack (or at the user's services, see the module doc)."""
    if os.environ.get("TEST_USE_RUNNING_SERVICES") == "1":
        yield Settings.from_env()
        return
    kafka_port, controller_port, postgres_port = free_ports(3)
    settings = replace(
        Settings.from_env({}),
        kafka_bootstrap_servers=f"localhost:{kafka_port}",
        kafka_controller_port=controller_port,
        postgres_port=postgres_port,
        state_dir=TEST_STATE_DIR,
    )
    stack = LocalStack(settings)
    stack.down()  # a previous run that was killed may have left it running
    shutil.rmtree(TEST_STATE_DIR, ignore_errors=True)
    stack.up()
    try:
        yield settings
    finally:
        stack.down()


@pytest.fixture
def topic_name() -> Callable[[str], str]:
    """Make topic names unique to this test: ``topic_name("votes")`` -> ``test-votes-1a2b3c4d``."""
    suffix = uuid.uuid4().hex[:8]
    return lambda base: f"test-{base}-{suffix}"


@pytest.fixture
def pg_schema(stack_settings: Settings) -> Iterator[str]:
    """A PostgreSQL schema of this test's own, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with db.connect(stack_settings) as connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        connection = db.connect(stack_settings)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        finally:
            connection.close()


@pytest.fixture
def election(stack_settings: Settings, pg_schema: str) -> Iterator[Settings]:
    """Settings for an election of this test's own: its own topics (by prefix) and its own schema.

    Its topics are deleted afterwards, so that tests run against a user's broker (``TEST_USE_RUNNING_SERVICES``)
    leave nothing behind.
    """
    settings = replace(stack_settings, kafka_topic_prefix=f"test-{uuid.uuid4().hex[:8]}-", postgres_schema=pg_schema)
    yield settings
    topics.delete_election_topics(settings)


def until(condition: Callable[[], bool], timeout_s: float, what: str, *, every_s: float = 0.5,
          explain: Callable[[], str] = str) -> None:
    """Poll ``condition`` until it holds; at the deadline, fail with "``what`` within N s" and ``explain()``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout_s:.0f}s\n{explain()}")
        time.sleep(every_s)  # polling interval of the condition, bounded by the deadline


def run_script(settings: Settings, script: str, *args: str, timeout_s: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one of the top-level scripts the way a user does, with ``settings`` in its environment."""
    return subprocess.run(
        [sys.executable, script, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s,
        env={**os.environ, **settings.as_environment(), **(env or {})}, stdin=subprocess.DEVNULL,
    )


NOT_READY_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                 KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT}


def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Message]:
    """Every message in ``topic`` now: reads each partition from the start up to its current end."""
    consumer = Consumer(kafka_io.consumer_config(settings, f"test-reader-{uuid.uuid4().hex[:8]}"))
    deadline = time.monotonic() + timeout_s
    try:
        while True:  # a topic created a moment ago may not have its partition leaders yet
            try:
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                ends = {number: consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=10)[1]
                        for number in partitions}
                break
            except KafkaException as error:
                transient = error.args[0].retriable() or error.args[0].code() in NOT_READY_YET
                if not transient or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # retry interval, bounded by the deadline
        consumer.assign([TopicPartition(topic, number, OFFSET_BEGINNING) for number in partitions])
        messages: list[Message] = []
        positions = {number: 0 for number in partitions}
        while any(positions[number] < ends[number] for number in partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end within {timeout_s}s"
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            messages.append(message)
            positions[message.partition()] = message.offset() + 1
        return messages
    finally:
        consumer.close()


def query(settings: Settings, statement: str, params: tuple = ()) -> list[tuple]:
    connection = db.connect(settings)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall()
    finally:
        connection.close()
