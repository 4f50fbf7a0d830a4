"""Kafka with KAFKA_SECURITY_PROTOCOL=SASL_SSL, on a stack of its own (the project's LocalStack, on free ports):
who cannot connect, who cannot write, and a whole election counted through the secured broker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from realtime_voting.core import topics
from realtime_voting.core.settings import Settings
from realtime_voting.running.local_stack import LocalStack, certificates
from realtime_voting.services import elections, kafka_io
from tests.support.ports import free_ports
from tests.support.stages import count, seed, vote
from tests.support.tallies import assert_totals_equal_the_tables, latest

pytestmark = [pytest.mark.integration, pytest.mark.spark]  # a secured stack of its own, and the counting job


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[Settings]:
    kafka_port, controller_port, postgres_port = free_ports(3)
    settings = replace(Settings.from_env({"LOCAL_STATE_DIR": str(tmp_path_factory.mktemp("secured") / "stack")}),
                       kafka_bootstrap_servers=f"localhost:{kafka_port}", kafka_controller_port=controller_port,
                       postgres_port=postgres_port, kafka_security_protocol="SASL_SSL")
    stack = LocalStack(settings)
    try:
        lines = stack.up()
        assert any("SASL_SSL with ACLs" in line for line in lines), lines
        yield settings
    finally:
        stack.down()


@pytest.fixture
def secured_election(secured) -> Iterator[Settings]:
    with elections.throwaway(secured, "secured") as election:  # its own ACLs, granted and revoked
        yield election


def test_a_client_without_credentials_is_refused(secured):
    # TLS with the right CA, but no SASL: the broker's listeners take no client that does not log in.
    admin = AdminClient({"bootstrap.servers": secured.kafka_bootstrap_servers, "security.protocol": "ssl",
                         "ssl.ca.location": secured.kafka_ssl_ca_location, "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_a_wrong_password_is_refused_and_the_error_names_the_settings(secured):
    impostor = replace(secured, kafka_voting_password="guessed")  # noqa: S106 - a wrong password, on purpose
    with pytest.raises(kafka_io.KafkaUnavailable, match="refused 'voting'.*KAFKA_SECURITY_PROTOCOL"):
        kafka_io.wait_for_kafka(impostor, kafka_io.VOTING, timeout_s=5)


def test_a_client_that_does_not_trust_the_ca_cannot_connect(secured, tmp_path: Path):
    stranger = certificates.ensure_authority(tmp_path / "another-ca")
    distrustful = replace(secured, kafka_ssl_ca_location=str(stranger.certificate_file))
    with pytest.raises(kafka_io.KafkaUnavailable, match="refused"):
        kafka_io.wait_for_kafka(distrustful, kafka_io.VOTING, timeout_s=5)


def test_the_dashboards_user_cannot_write_votes_but_the_voting_user_can(secured_election):
    election = secured_election
    elections.create_topics(election, kafka_io.SEEDING)
    forged = [(b"x'); DROP TABLE votes; --", b'{"voter_id": "x"}', None)]
    dashboard = Producer(kafka_io.producer_config(election, kafka_io.DASHBOARD, **{"message.timeout.ms": 10000}))
    with pytest.raises(kafka_io.PublishFailed, match="TOPIC_AUTHORIZATION_FAILED|authoriz"):
        kafka_io.produce_all(dashboard, election.topic(topics.VOTES), forged, timeout_s=15)
    # The counting job's user may write results, not votes: only the voting stage casts a vote.
    counting = Producer(kafka_io.producer_config(election, kafka_io.COUNTING, **{"message.timeout.ms": 10000}))
    with pytest.raises(kafka_io.PublishFailed, match="TOPIC_AUTHORIZATION_FAILED|authoriz"):
        kafka_io.produce_all(counting, election.topic(topics.VOTES), forged, timeout_s=15)
    voting = Producer(kafka_io.producer_config(election, kafka_io.VOTING))
    assert kafka_io.produce_all(voting, election.topic(topics.DEAD_LETTERS), forged, timeout_s=15) == 1


def test_a_whole_election_through_the_secured_broker_gives_the_totals_of_the_votes_table(secured_election):
    election = secured_election
    seed(election, "--voters", "500")
    vote(election)
    count(election)
    assert_totals_equal_the_tables(election)
    assert sum(result.total_votes for result in latest(election, topics.VOTES_PER_CANDIDATE).values()) == 500
    # The dashboard's user reads the results with the group its ACLs allow.
    results = kafka_io.read_to_end(election, election.topic(topics.VOTES_PER_CANDIDATE), principal=kafka_io.DASHBOARD,
                                   group_prefix=election.topic(topics.DASHBOARD_GROUP_PREFIX))
    assert results
