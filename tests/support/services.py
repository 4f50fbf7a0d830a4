"""The services of a test session: one real local stack, on free ports, started by the project's own code; a
three-node Kafka cluster beside it for the tests that take nodes down; and the markers a test gets from the
fixtures it uses.

The stack lives in ``.local/test-stack`` and listens on ports picked at start, so ``make test`` never touches
services a user is running on the default ports. Set ``TEST_USE_RUNNING_SERVICES=1`` to run the integration
tests against the services the usual environment variables point at instead.
"""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace

import pytest

from realtime_voting.core.settings import LOCAL_NODE_PORT_STEP, REPO_ROOT, Settings
from realtime_voting.running.local_stack import KafkaCluster, LocalStack
from tests.support.ports import free_port_series, free_ports

TEST_STATE_DIR = REPO_ROOT / ".local" / "test-stack"
TEST_CLUSTER_DIR = REPO_ROOT / ".local" / "test-cluster"
CLUSTER_NODES = 3

# A test that uses one of these fixtures, directly or through another fixture, gets the marker (pyproject.toml
# declares them): `make test-fast` leaves out the integration tests whichever fixture brought the stack in.
MARKER_OF_FIXTURE = {
    "stack_settings": pytest.mark.integration,
    "spark": pytest.mark.spark,
    "cluster_settings": pytest.mark.cluster,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in MARKER_OF_FIXTURE.items():
            if fixture in item.fixturenames:
                item.add_marker(marker)


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
        # A Kafka client caught in a reference cycle (a failed future's traceback holds the frame that holds the
        # client) is freed by the garbage collector only: free it while its broker runs, or it logs "Connection
        # refused" until the interpreter exits.
        gc.collect()
        stack.down()


@pytest.fixture(scope="session")
def cluster_settings(stack_settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a three-node Kafka cluster of the session's own (every topic on all three nodes,
    ``min.insync.replicas`` 2), started by the project's ``KafkaCluster`` under ``.local/test-cluster``, and at the
    session's PostgreSQL. Always its own, also with ``TEST_USE_RUNNING_SERVICES``: the tests that use it kill
    its nodes."""
    settings = replace(
        stack_settings,
        kafka_nodes=CLUSTER_NODES,
        kafka_replication_factor=CLUSTER_NODES,
        kafka_bootstrap_servers=",".join(f"localhost:{port}" for port in free_ports(CLUSTER_NODES)),
        kafka_controller_port=free_port_series(CLUSTER_NODES, LOCAL_NODE_PORT_STEP),
        state_dir=TEST_CLUSTER_DIR,
    )
    cluster = KafkaCluster(settings)
    cluster.stop()
    shutil.rmtree(TEST_CLUSTER_DIR, ignore_errors=True)
    cluster.start()
    try:
        yield settings
    finally:
        gc.collect()  # as above
        cluster.stop()
