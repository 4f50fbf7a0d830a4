"""Both servers of the local stack together: started in the order the pipeline needs them, stopped in reverse."""

from __future__ import annotations

from realtime_voting.core.settings import Settings
from realtime_voting.running.local_stack.broker import KafkaBroker
from realtime_voting.running.local_stack.postgres import PostgresServer
from realtime_voting.running.local_stack.service import LocalService, ServiceStatus
from realtime_voting.services import kafka_io, kafka_security


class LocalStack:
    """PostgreSQL, then Kafka (and with ``SASL_SSL`` the stages' users and ACLs)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: list[LocalService] = [PostgresServer(settings), KafkaBroker(settings)]

    def up(self) -> list[str]:
        lines = [service.start() for service in self.services]
        if self.settings.kafka_secured:
            lines.append(grant(self.settings))
        return lines

    def down(self) -> list[str]:
        return [service.stop() for service in reversed(self.services)]

    def status(self) -> list[ServiceStatus]:
        return [service.status() for service in self.services]


def grant(settings: Settings) -> str:
    """The stages' users and ACLs for the election of ``settings`` (``kafka_security.grant``), as a status line."""
    if not settings.kafka_secured:
        return "Kafka runs without authentication (KAFKA_SECURITY_PROTOCOL=PLAINTEXT): no users or ACLs to grant"
    count = kafka_security.grant(settings)
    users = ", ".join(settings.kafka_credentials(stage)[0] for stage in kafka_io.STAGES)
    return f"Kafka users {users}: {count} ACLs for the election {settings.kafka_topic_prefix or '(no prefix)'!r}"
