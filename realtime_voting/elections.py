"""Elections of their own on shared services: a PostgreSQL schema and a topic prefix, removed afterwards.

The tests and the bench run many elections side by side on one Kafka and one PostgreSQL. An election is
``Settings`` with its own ``postgres_schema`` and ``kafka_topic_prefix`` (and so its own consumer group and
counting checkpoints, and with ``KAFKA_SECURITY_PROTOCOL=SASL_SSL`` its own ACLs); ``throwaway`` makes one and
removes every trace of it on exit.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from psycopg2 import sql

from realtime_voting import db, kafka_io, kafka_security, topics
from realtime_voting.settings import Settings

logger = logging.getLogger(__name__)


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
    topics.delete_election_topics(election, kafka_io.ADMIN)
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
