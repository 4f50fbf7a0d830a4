"""Kafka client configuration and administration, in one place (confluent-kafka / librdkafka).

Every producer and consumer of the pipeline gets its configuration from the functions here, so a setting
such as idempotence is decided once and never repeated at a call site.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from realtime_voting.settings import Settings

logger = logging.getLogger(__name__)


class KafkaUnavailable(RuntimeError):
    """The broker did not answer in time; the message says where it was looked for."""


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})


def producer_config(settings: Settings, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        # Retries never reorder or duplicate a message within a partition (librdkafka's default is off).
        "enable.idempotence": True,
        # Small batching delay: far higher throughput for a few milliseconds of latency.
        "linger.ms": 5,
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        # Offsets are stored by the code after the work they protect has succeeded, never before.
        "enable.auto.offset.store": False,
        # Only messages of committed transactions (librdkafka's default, spelled out because it matters).
        "isolation.level": "read_committed",
    }
    config.update(overrides)
    return config


def wait_for_kafka(settings: Settings, *, timeout_s: float = 30.0, hint: str = "") -> None:
    """Return once the broker answers a metadata request; raise ``KafkaUnavailable`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    admin = None
    while True:
        # A plain TCP check first: librdkafka would log every refused connection while the broker starts.
        if not any(_accepts_connections(address) for address in settings.kafka_bootstrap_servers.split(",")):
            last_error = "connection refused"
        else:
            admin = admin or admin_client(settings)
            try:
                admin.list_topics(timeout=max(0.5, min(deadline - time.monotonic(), 2.0)))
                return
            except KafkaException as error:
                last_error = str(error)
        if time.monotonic() >= deadline:
            raise KafkaUnavailable(
                f"Kafka at {settings.kafka_bootstrap_servers} is not reachable ({last_error}). "
                f"{hint or 'Is `make up` running? See `make status`.'}"
            )
        time.sleep(0.2)  # a retry interval, not synchronisation: the loop ends on success or the deadline


def _accepts_connections(address: str) -> bool:
    host, _, port = address.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def create_topics(
    settings: Settings,
    names: Iterable[str],
    *,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Existing topics are left as they are."""
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [name for name in names if name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {}) for name in wanted],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another process won the race: fine
                raise
    logger.info("created topics %s", ", ".join(sorted(created)))
    return created
