"""Kafka client configuration and administration, in one place (confluent-kafka / librdkafka).

Every producer, consumer and admin client of the pipeline gets its configuration from the functions here, so a
setting such as idempotence is decided once and never repeated at a call site. That includes who the client is:
each takes the principal it acts as (``kafka_security``: ``seeding``, ``voting``, ...), whose user and password
``client_security`` adds when ``KAFKA_SECURITY_PROTOCOL=SASL_SSL``; ``java_client_properties`` says the same to
the JVM's clients (Spark's Kafka source and sink, Kafka's own tools).
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from realtime_voting.core import waiting
from realtime_voting.core.schemas import Rejection
from realtime_voting.core.settings import Settings

logger = logging.getLogger(__name__)


class KafkaUnavailable(RuntimeError):
    """The broker did not answer in time; the message says where, and which variable says so."""


# Who a client is (what each may do: kafka_security). The admin is the broker's own account, checked by the broker
# against its configuration: hence PLAIN (over TLS), not SCRAM.
ADMIN = "admin"
SEEDING = "seeding"
VOTING = "voting"
COUNTING = "counting"
DASHBOARD = "dashboard"
STAGES = (SEEDING, VOTING, COUNTING, DASHBOARD)
ADMIN_MECHANISM = "PLAIN"


def client_security(settings: Settings, principal: str) -> dict[str, object]:
    """librdkafka's settings for connecting as ``principal``: none with ``PLAINTEXT``; with ``SASL_SSL`` its user
    and password, and the CA whose certificate the broker's must be signed by (and name the broker's host)."""
    if not settings.kafka_secured:
        return {}
    user, password, mechanism = _login(settings, principal)
    return {
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": settings.kafka_ssl_ca_location,
        # librdkafka's default since 2.0, spelled out because it is what makes TLS worth having.
        "ssl.endpoint.identification.algorithm": "https",
    }


def java_client_properties(settings: Settings, principal: str) -> dict[str, str]:
    """The same as ``client_security``, with the bootstrap servers, for a Java Kafka client (Spark's ``kafka.*``
    options, a tool's ``--producer.config``)."""
    properties = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    if not settings.kafka_secured:
        return properties
    user, password, mechanism = _login(settings, principal)
    module = ("org.apache.kafka.common.security.plain.PlainLoginModule" if mechanism == ADMIN_MECHANISM
              else "org.apache.kafka.common.security.scram.ScramLoginModule")
    return properties | {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism,
        "sasl.jaas.config": f"{module} required username={jaas_quoted(user)} password={jaas_quoted(password)};",
        # The CA as a PEM file, as librdkafka reads it: no Java trust store to make.
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": settings.kafka_ssl_ca_location,
    }


def _login(settings: Settings, principal: str) -> tuple[str, str, str]:
    """``principal``'s user, password and SASL mechanism: the admin's PLAIN, the stages' SCRAM."""
    user, password = settings.kafka_credentials(principal)
    return user, password, ADMIN_MECHANISM if principal == ADMIN else settings.kafka_sasl_mechanism


def jaas_quoted(value: str) -> str:
    """A JAAS option value in double quotes (a password may hold quotes, backslashes or semicolons)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def admin_client(settings: Settings, principal: str, **overrides: object) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers,
                        **client_security(settings, principal), **overrides})


def partition_count(settings: Settings, principal: str, topic: str, *, timeout_s: float = 10.0) -> int | None:
    """How many partitions ``topic`` (a full name) has, or None if it does not exist yet."""
    metadata = admin_client(settings, principal).list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        return None
    return len(metadata.partitions)


def under_replicated_partitions(settings: Settings, *, timeout_s: float = 5.0) -> list[tuple[str, int]]:
    """Every partition (topic, number) of which fewer copies are in sync than there are replicas, Kafka's internal
    topics too: after a node's loss, those it held; once it is back and caught up, none."""
    try:
        cluster = admin_client(settings, ADMIN).list_topics(timeout=timeout_s)
    except KafkaException as error:
        raise KafkaUnavailable(f"Kafka at {settings.kafka_bootstrap_servers} did not answer ({error})") from None
    return sorted((topic.topic, partition.id) for topic in cluster.topics.values()
                  for partition in topic.partitions.values() if len(partition.isrs) < len(partition.replicas))


def producer_config(settings: Settings, principal: str, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        **client_security(settings, principal),
        # Retries never reorder or duplicate a message within a partition (librdkafka's default is off).
        "enable.idempotence": True,
        # Small batching delay: far higher throughput for a few milliseconds of latency.
        "linger.ms": 5,
        # Delivery reports for failed messages only: produce_all needs the failures, and the flush that returns
        # with nothing in flight says the rest were acknowledged. A report per message cost 12 µs of Python each.
        "delivery.report.only.error": True,
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, principal: str, group_id: str, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        **client_security(settings, principal),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        # Offsets are stored by the code after the work they protect has succeeded, never before.
        "enable.auto.offset.store": False,
        # Only messages of committed transactions (librdkafka's default, spelled out because it matters).
        "isolation.level": "read_committed",
        # A member that dies without leaving (SIGKILL) keeps its partitions until this runs out: 10 s
        # instead of the default 45 s lets a restarted or surviving process take over quickly.
        "session.timeout.ms": 10000,
    }
    config.update(overrides)
    return config


def wait_for_kafka(settings: Settings, principal: str, *, timeout_s: float = 30.0, hint: str = "") -> None:
    """Return once the broker answers ``principal``'s metadata request; raise ``KafkaUnavailable`` after
    ``timeout_s`` (also when it refuses the credentials or the CA: the message says which)."""
    deadline = time.monotonic() + timeout_s
    admin: AdminClient | None = None
    last_error = "connection refused"
    refused: list[str] = []  # a refused password or certificate is reported here only: list_topics just times out

    def on_error(error: KafkaError) -> None:
        if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED):
            refused[:] = [error.str()]

    def answers() -> bool:
        nonlocal admin, last_error
        # A plain TCP check first: librdkafka would log every refused connection while the broker starts.
        if not any(_accepts_connections(address) for address in settings.kafka_bootstrap_servers.split(",")):
            last_error = "connection refused"
            return False
        if admin is None:  # one client for every try (`admin or ...` would not do: an empty client is falsy)
            admin = admin_client(settings, principal, error_cb=on_error)
        try:
            admin.list_topics(timeout=max(0.5, min(deadline - time.monotonic(), 2.0)))
            return True
        except KafkaException as error:
            last_error = str(error)
            admin.poll(0)  # serves error_cb, which says whether the broker refused the credentials or the CA
            return False

    try:
        waiting.until(answers, timeout_s=timeout_s, what=f"Kafka at {settings.kafka_bootstrap_servers}")
    except waiting.TimedOut:
        if refused:
            user = settings.kafka_credentials(principal)[0]
            raise KafkaUnavailable(
                f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) refused {user!r} over "
                f"{settings.kafka_security_protocol} ({refused[0]}): check KAFKA_SECURITY_PROTOCOL, the user's "
                f"password and KAFKA_SSL_CA_LOCATION ({settings.kafka_ssl_ca_location})"
            ) from None
        raise KafkaUnavailable(
            f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) is not reachable ({last_error}). "
            f"{hint or 'Is `make up` running? See `make status`.'}"
        ) from None


def _accepts_connections(address: str) -> bool:
    host, _, port = address.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def create_topics(
    settings: Settings,
    principal: str,
    names: Iterable[str],
    *,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet, with ``KAFKA_REPLICATION_FACTOR`` copies of each partition of which
    ``min.insync.replicas`` must have each write (``Settings.kafka_min_insync_replicas``); return the names created.
    Existing topics are left as they are."""
    admin = admin_client(settings, principal)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [name for name in names if name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=settings.kafka_replication_factor,
                  config={"min.insync.replicas": str(settings.kafka_min_insync_replicas), **(config or {})})
         for name in wanted],
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


class PublishFailed(RuntimeError):
    """Some messages were not acknowledged by the broker; none of the batch may be treated as published."""


KeyedMessage = tuple[bytes | str | None, bytes, list[tuple[str, bytes]] | None]


# produce_all serves the (failures') delivery reports every POLL_EVERY messages, and whenever the local queue is full.
POLL_EVERY = 1000


def produce_all(producer: Producer, topic: str, messages: Iterable[KeyedMessage], *, timeout_s: float = 60.0) -> int:
    """Produce ``(key, value, headers)`` messages and wait until the broker has acknowledged every one.

    Returns how many were produced; raises ``PublishFailed`` if any delivery failed or timed out, so that
    the caller does not commit the input offsets that these messages answer for.
    """
    failures: list[str] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(f"{message.topic()}[{message.partition()}]: {error}")

    produced = 0
    for key, value, headers in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries drain it, then try again
                producer.poll(0.1)
        produced += 1
        if produced % POLL_EVERY == 0:
            producer.poll(0)  # serve delivery reports as they come; a poll after every message cost 23 µs each
    remaining = producer.flush(timeout_s)
    if remaining or failures:
        detail = "; ".join(failures[:3]) or f"{remaining} still in flight after {timeout_s:.0f}s"
        raise PublishFailed(
            f"{len(failures) or remaining} of {produced} messages to {topic} were not delivered: {detail}"
        )
    return produced


def dead_letter(message: Message, *, stage: str, reason: str) -> KeyedMessage:
    """The dead letter for a rejected message: its original key and bytes, and ``dlq.*`` headers saying why."""
    rejection = Rejection(stage=stage, reason=reason, source_topic=message.topic() or "",
                          source_partition=message.partition(), source_offset=message.offset())
    return message.key(), message.value() or b"", rejection.headers()


# A topic created a moment ago may not have its partition leaders yet: these errors mean "ask again".
_NOT_READY_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT}


def read_to_end(settings: Settings, topic: str, *, timeout_s: float = 60.0, principal: str = ADMIN,
                group_prefix: str = "reader-") -> list[Message]:
    """Every message in ``topic`` (a full name) at the moment of the call: each partition from its start to the
    end it had then, in partition order. Reads outside any consumer group and commits nothing. As the admin
    unless told (the tests, the bench); another principal also needs a ``group_prefix`` its ACLs allow.

    Raises ``waiting.TimedOut`` if the topic cannot be read to that end within ``timeout_s``.
    """
    consumer = Consumer(consumer_config(settings, principal, f"{group_prefix}{uuid.uuid4().hex[:8]}",
                                        **{"enable.auto.commit": False}))
    deadline = time.monotonic() + timeout_s
    try:
        ends = waiting.until(lambda: partition_ends(consumer, topic), timeout_s=timeout_s,
                             what=f"the partitions of {topic} at {settings.kafka_bootstrap_servers}")
        consumer.assign([TopicPartition(topic, number, OFFSET_BEGINNING) for number in ends])
        messages: list[Message] = []
        positions = dict.fromkeys(ends, 0)
        while any(positions[number] < end for number, end in ends.items()):
            if time.monotonic() > deadline:
                raise waiting.TimedOut(f"{topic} read to its end within {timeout_s:g}s "
                                       f"(at {positions} of {ends})")
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            messages.append(message)
            positions[message.partition()] = message.offset() + 1
        return messages
    finally:
        consumer.close()


def partition_ends(consumer: Consumer, topic: str) -> dict[int, int] | None:
    """The end offset of each partition of ``topic``, or None while its partitions have no leader yet."""
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        if not partitions:
            return None
        return {number: consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=10)[1]
                for number in partitions}
    except KafkaException as error:
        if error.args[0].retriable() or error.args[0].code() in _NOT_READY_YET:
            return None
        raise
