"""How the local Kafka nodes are configured, one or three: pure functions of the settings (no broker started;
``test_broker_loss.py`` runs the three)."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime_voting.core.settings import Settings
from realtime_voting.running.local_stack.broker import KafkaBroker, StackError, broker_properties, cluster_id

CLIENTS = {"CLIENTS": ("localhost:9092", "localhost:9092")}


def test_one_node_is_its_own_controller_on_loopback_and_keeps_one_copy():
    properties = broker_properties(Settings.from_env({}), 1, CLIENTS, Path("/data"), {})
    assert properties["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert "controller.quorum.voters" not in properties
    assert properties["listeners"] == "CLIENTS://localhost:9092,CONTROLLER://127.0.0.1:9093"
    assert (properties["default.replication.factor"], properties["min.insync.replicas"]) == ("1", "1")
    assert properties["offsets.topic.replication.factor"] == "1"


def test_three_nodes_form_one_quorum_and_keep_three_copies_of_everything_two_in_sync():
    settings = Settings.from_env({"KAFKA_NODES": "3"})
    second = KafkaBroker(settings, 2)
    assert (second.name, second.address, second.controller_port) == ("kafka-2", "localhost:9192", 9193)
    properties = broker_properties(settings, 2, {"CLIENTS": (second.address, second.address)}, Path("/d"), {})
    assert properties["node.id"] == "2"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
    assert properties["listeners"].endswith("CONTROLLER://127.0.0.1:9193")
    for name in ("default.replication.factor", "offsets.topic.replication.factor",
                 "transaction.state.log.replication.factor", "share.coordinator.state.topic.replication.factor"):
        assert properties[name] == "3", name
    for name in ("min.insync.replicas", "transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr"):
        assert properties[name] == "2", name


def test_served_nodes_listen_for_the_other_controllers_on_every_interface_over_tls_when_secured():
    settings = Settings.from_env({"KAFKA_NODES": "3", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                  "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:19092,kafka-2:19092,kafka-3:19092"})
    properties = broker_properties(settings, 3, {"CLIENTS": ("0.0.0.0:19092", "kafka-3:19092")}, Path("/d"),
                                   {"sasl.mechanism.controller.protocol": "PLAIN"}, served=True)
    assert properties["controller.quorum.voters"] == "1@kafka-1:9093,2@kafka-2:9193,3@kafka-3:9293"
    assert properties["listeners"].endswith("CONTROLLER://0.0.0.0:9293")
    assert "CONTROLLER:SASL_SSL" in properties["listener.security.protocol.map"]


def test_nodes_formatted_apart_agree_on_their_cluster_id():
    quorum = "kafka-1:9093,kafka-2:9193,kafka-3:9293"
    assert cluster_id(quorum) == cluster_id(quorum) != cluster_id("127.0.0.1:9093,127.0.0.1:9193,127.0.0.1:9293")
    assert len(cluster_id(quorum)) == 22 and not cluster_id(quorum).startswith("-")


def test_more_nodes_than_addresses_is_refused_naming_both_settings():
    settings = Settings.from_env({"KAFKA_NODES": "3", "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092"})
    with pytest.raises(StackError, match="KAFKA_NODES=3 needs one address per node in KAFKA_BOOTSTRAP_SERVERS"):
        KafkaBroker(settings, 1)
