"""The local stack's servers together: PostgreSQL and the Kafka nodes, started in the order the pipeline needs them,
stopped in reverse."""

from __future__ import annotations

from realtime_voting.core.settings import Settings
from realtime_voting.running.local_stack.broker import KafkaCluster
from realtime_voting.running.local_stack.postgres import PostgresServer
from realtime_voting.services import kafka_io, kafka_security


class LocalStack:
    """PostgreSQL, then the Kafka nodes (and with ``SASL_SSL`` the stages' users and ACLs)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.postgres = PostgresServer(settings)
        self.kafka = KafkaCluster(settings)

    def up(self) -> list[str]:
        lines = [self.postgres.start(), *self.kafka.start()]
        if self.settings.kafka_secured:
            lines.append(grant(self.settings))
        return lines

    def down(self) -> list[str]:
        return [*self.kafka.stop(), self.postgres.stop()]

    def report(self) -> tuple[list[str], bool]:
        """``make status``: a line for each server, then, while Kafka runs, its partitions short of copies; and
        whether every server runs."""
        postgres, kafka = self.postgres.status(), self.kafka.status()
        lines = [str(status) for status in (postgres, *kafka)]
        if any(status.running for status in kafka):
            lines.append(self.kafka.replication_line())
        return lines, all(status.running for status in (postgres, *kafka))


def grant(settings: Settings) -> str:
    """The stages' users and ACLs for the election of ``settings`` (``kafka_security.grant``), as a status line."""
    if not settings.kafka_secured:
        return "Kafka runs without authentication (KAFKA_SECURITY_PROTOCOL=PLAINTEXT): no users or ACLs to grant"
    count = kafka_security.grant(settings)
    users = ", ".join(settings.kafka_credentials(stage)[0] for stage in kafka_io.STAGES)
    return f"Kafka users {users}: {count} ACLs for the election {settings.kafka_topic_prefix or '(no prefix)'!r}"
