"""Who may do what on Kafka: one principal per stage, and the ACLs each needs for an election, in one table.

With ``KAFKA_SECURITY_PROTOCOL=SASL_SSL`` the broker (``local_stack``, and the compose ``kafka`` service) accepts
clients over TLS only, with a password, and KRaft's ``StandardAuthorizer`` allows nothing that no ACL allows:

- ``admin`` is the broker's own account (``KAFKA_ADMIN_USER``), a super user checked by the broker itself (SASL
  PLAIN over TLS), so that it exists before any other: the broker uses it to talk to its controller, and ``grant``
  uses it to make the stages' users and ACLs.
- ``seeding`` (``main.py``) makes and resets the election's topics and writes ``voters_topic``.
- ``voting`` (``voting.py``, and the ballot page, which casts votes through the same ballot box) reads
  ``voters_topic`` in its group and writes ``votes_topic`` and the dead letters.
- ``counting`` (``spark_streaming.py``) reads ``votes_topic`` and writes the ``aggregated_*`` topics and the dead
  letters.
- ``dashboard`` (the web app's results) reads the ``aggregated_*`` topics.

The stages' users are SCRAM users (``KAFKA_SASL_MECHANISM``), made by ``grant`` from their ``KAFKA_<STAGE>_USER``
and ``KAFKA_<STAGE>_PASSWORD``. So a client that can reach the broker but holds no stage's password cannot move
a count: a vote on ``votes_topic`` can only come from the voting stage, which checked the voter in PostgreSQL.

ACLs name an election's topics and groups literally (its ``KAFKA_TOPIC_PREFIX`` included), so ``grant`` runs once
per election: ``make up`` for the election of its settings, the compose ``kafka-grant`` service, and
``elections.new`` for the tests' and the bench's; ``python -m realtime_voting.running.local_stack grant`` for another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from realtime_voting.core import topics
from realtime_voting.core.settings import Settings
from realtime_voting.services import kafka_io
from realtime_voting.services.kafka_io import ADMIN, COUNTING, DASHBOARD, SEEDING, STAGES, VOTING

logger = logging.getLogger(__name__)

SCRAM_ITERATIONS = 8192  # Kafka's own default for SCRAM-SHA-512 credentials made with kafka-configs
SCRAM_MECHANISMS = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256, "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}

READS = (AclOperation.READ, AclOperation.DESCRIBE)
WRITES = (AclOperation.WRITE, AclOperation.DESCRIBE)


@dataclass(frozen=True)
class Grant:
    """Some operations of one principal on one resource (a topic or a group, named in full or by prefix)."""

    principal: str
    resource: ResourceType
    name: str
    operations: tuple[AclOperation, ...]
    pattern: ResourcePatternType = ResourcePatternType.LITERAL


def election_grants(settings: Settings) -> list[Grant]:
    """What each stage may do in the election of ``settings`` (its topic prefix), and nothing more."""
    topic = settings.topic
    topic_grants = [
        # main.py makes the election's topics (and deletes them with --reset), then writes the voters.
        *(Grant(SEEDING, ResourceType.TOPIC, name, (AclOperation.CREATE, AclOperation.DELETE, AclOperation.DESCRIBE))
          for name in topics.all_topics(settings)),
        Grant(SEEDING, ResourceType.TOPIC, topic(topics.VOTERS), (AclOperation.WRITE,)),
        Grant(VOTING, ResourceType.TOPIC, topic(topics.VOTERS), READS),
        Grant(VOTING, ResourceType.TOPIC, topic(topics.VOTES), WRITES),
        Grant(VOTING, ResourceType.TOPIC, topic(topics.DEAD_LETTERS), WRITES),
        Grant(COUNTING, ResourceType.TOPIC, topic(topics.VOTES), READS),
        Grant(COUNTING, ResourceType.TOPIC, topic(topics.DEAD_LETTERS), WRITES),
        *(Grant(COUNTING, ResourceType.TOPIC, topic(name), WRITES) for name in topics.AGGREGATED),
        *(Grant(DASHBOARD, ResourceType.TOPIC, topic(name), READS) for name in topics.AGGREGATED),
    ]
    # The counting job's and the dashboard's groups end in a random part: PREFIXED ACLs.
    group_grants = [
        Grant(SEEDING, ResourceType.GROUP, topic(topics.VOTING_GROUP), (AclOperation.DELETE,)),  # main.py --reset
        Grant(VOTING, ResourceType.GROUP, topic(topics.VOTING_GROUP), (AclOperation.READ,)),
        Grant(COUNTING, ResourceType.GROUP, topic(topics.COUNTING_GROUP_PREFIX), (AclOperation.READ,),
              ResourcePatternType.PREFIXED),
        Grant(DASHBOARD, ResourceType.GROUP, topic(topics.DASHBOARD_GROUP_PREFIX), (AclOperation.READ,),
              ResourcePatternType.PREFIXED),
    ]
    return topic_grants + group_grants


def acl_bindings(settings: Settings) -> list[AclBinding]:
    """``election_grants`` as Kafka ACLs: one ALLOW binding per operation, for the principal's user, from any host."""
    return [
        AclBinding(grant.resource, grant.name, grant.pattern, f"User:{settings.kafka_credentials(grant.principal)[0]}",
                   "*", operation, AclPermissionType.ALLOW)
        for grant in election_grants(settings) for operation in grant.operations
    ]


def grant(settings: Settings, *, timeout_s: float = 30.0) -> int:
    """Make (or update) each stage's SCRAM user and the election's ACLs, as the admin; return the ACL count.

    Idempotent: an existing user gets its password from the settings again, an existing ACL stays as it is.
    """
    mechanism = SCRAM_MECHANISMS.get(settings.kafka_sasl_mechanism.upper())
    if mechanism is None:
        raise ValueError(f"KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism!r} is not one of "
                         f"{', '.join(SCRAM_MECHANISMS)}")
    admin = kafka_io.admin_client(settings, ADMIN)
    upserts = [
        UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, SCRAM_ITERATIONS), password.encode())
        for user, password in dict(settings.kafka_credentials(stage) for stage in STAGES).items()
    ]
    _all_done(admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s), "making the stages' users")
    bindings = acl_bindings(settings)
    _all_done(admin.create_acls(bindings, request_timeout=timeout_s), "creating the election's ACLs")
    logger.info("granted %d ACLs to %s for the election %r", len(bindings),
                ", ".join(settings.kafka_credentials(stage)[0] for stage in STAGES),
                settings.kafka_topic_prefix or "(no prefix)")
    return len(bindings)


def revoke(settings: Settings, *, timeout_s: float = 30.0) -> None:
    """Delete the election's ACLs (the stages' users stay: other elections share them)."""
    admin = kafka_io.admin_client(settings, ADMIN)
    filters = [AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type, binding.principal,
                                binding.host, binding.operation, binding.permission_type)
               for binding in acl_bindings(settings)]
    _all_done(admin.delete_acls(filters, request_timeout=timeout_s), "deleting the election's ACLs")


def _all_done(futures: dict, doing: str) -> None:
    for future in futures.values():
        error = future.exception()  # not result(): a raised traceback would keep the admin client alive
        if error is not None:
            detail = error.args[0] if isinstance(error, KafkaException) and error.args else error
            raise RuntimeError(f"{doing} failed: {detail}")
