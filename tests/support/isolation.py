"""What a test makes on the shared stack is its own, and is removed after it, also when it fails: so tests never
depend on each other's leftovers, and a run against a user's services (``TEST_USE_RUNNING_SERVICES``) leaves
nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from realtime_voting.core.settings import Settings
from realtime_voting.services import elections, kafka_io


@pytest.fixture
def election(stack_settings: Settings) -> Iterator[Settings]:
    """Settings for an election of this test's own: its own PostgreSQL schema and topics (by prefix), removed
    afterwards with its consumer group and counting checkpoints."""
    with elections.throwaway(stack_settings, "test") as own:
        yield own


@pytest.fixture
def new_topic(stack_settings: Settings) -> Iterator[Callable[..., str]]:
    """Create topics of this test's own: ``new_topic("votes", partitions=3)`` -> ``test-votes-1a2b3c4d``; they
    are deleted afterwards."""
    created: list[str] = []

    def create(base: str, *, partitions: int = 1) -> str:
        name = f"test-{base}-{uuid.uuid4().hex[:8]}"
        created.append(name)
        kafka_io.create_topics(stack_settings, kafka_io.ADMIN, [name], partitions=partitions)
        return name

    yield create
    if created:
        # The admin client is kept until the futures resolve: its end would fail them.
        admin = kafka_io.admin_client(stack_settings, kafka_io.ADMIN)
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result()
