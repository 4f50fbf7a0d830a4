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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from psycopg2 import sql

from realtime_voting import db
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
