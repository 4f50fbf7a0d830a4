"""Elections of their own on shared services: a PostgreSQL schema and a topic prefix, removed afterwards.

The tests and the bench run many elections side by side on one Kafka and one PostgreSQL. An election is
``Settings`` with its own ``postgres_schema`` and ``kafka_topic_prefix`` (and so its own consumer group and
counting checkpoints, and with ``KAFKA_SECURITY_PROTOCOL=SASL_SSL`` its own ACLs); ``throwaway`` makes one and
removes every trace of it on exit. ``create_topics`` and ``delete_topics`` make and delete an election's topics
(``main.py`` and ``main.py --reset`` too).
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from confluent_kafka.admin import AdminClient
from psycopg2 import sql

from realtime_voting.core import topics
from realtime_voting.core.settings import Settings
from realtime_voting.services import db, kafka_io, kafka_security

logger = logging.getLogger(__name__)


def create_topics(settings: Settings, principal: str = kafka_io.SEEDING) -> list[str]:
    """Create every topic of the election that does not exist yet; return the names created."""
    partitions = settings.kafka_topic_partitions
    created = kafka_io.create_topics(
        settings, principal, [settings.topic(name) for name in (topics.VOTERS, topics.VOTES, topics.DEAD_LETTERS)],
        partitions=partitions)
    created += kafka_io.create_topics(
        settings, principal, [settings.topic(name) for name in topics.AGGREGATED], partitions=partitions,
        config=topics.COMPACTED)
    return created


def delete_topics(settings: Settings, principal: str, timeout_s: float = 30.0) -> list[str]:
    """Delete the election's topics and the voting consumer group; return the topic names deleted."""
    admin: AdminClient = kafka_io.admin_client(settings, principal)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    doomed = [name for name in topics.all_topics(settings) if name in existing]
    for future in admin.delete_topics(doomed, operation_timeout=timeout_s).values() if doomed else []:
        future.result()
    group = settings.topic(topics.VOTING_GROUP)
    for future in admin.delete_consumer_groups([group], request_timeout=timeout_s).values():
        # exception(), not result(): a raised error's traceback would hold this frame, and with it the admin
        # client, in a reference cycle that outlives the call (the client then logs every refused reconnection).
        error = future.exception()
        if error is not None:  # a group that never existed is the common case
            logger.debug("consumer group %s not deleted: %s", group, error)
    return doomed


def new(base: Settings, label: str) -> Settings:
    """A fresh, empty election on ``base``'s services: schema and topic prefix ``<label>_<random>``."""
    tag = f"{label}_{uuid.uuid4().hex[:8]}"
    db.query(base, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(tag)))
    election = replace(base, postgres_schema=tag, kafka_topic_prefix=f"{tag}-")
    if election.kafka_secured:
        kafka_security.grant(election)
    return election


def remove(election: Settings) -> None:
    """Delete the election's topics, consumer group, ACLs, counting checkpoints and PostgreSQL schema."""
    delete_topics(election, kafka_io.ADMIN)
    if election.kafka_secured:
        kafka_security.revoke(election)
    shutil.rmtree(Path(topics.checkpoint_root(election)), ignore_errors=True)
    db.query(election, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(election.postgres_schema)))


@contextmanager
def throwaway(base: Settings, label: str) -> Iterator[Settings]:
    """``new(base, label)`` for the ``with`` block, ``remove``d after it, also when the block fails."""
    election = new(base, label)
    try:
        yield election
    finally:
        remove(election)
