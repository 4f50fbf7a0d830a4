import pytest

from realtime_voting.settings import Settings


def test_defaults_match_the_reference_connection_string():
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.postgres_dsn == "host=localhost port=5432 dbname=voting user=postgres"
    assert settings.postgres_password == "postgres"
    assert settings.spark_master == "local[*]"


def test_every_documented_variable_overrides_its_default():
    settings = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": "broker:29092",
        "POSTGRES_HOST": "db",
        "POSTGRES_PORT": "6543",
        "POSTGRES_DB": "election",
        "POSTGRES_USER": "teller",
        "POSTGRES_PASSWORD": "s3cret",
        "SPARK_MASTER": "spark://spark-master:7077",
    })
    assert settings.kafka_bootstrap_servers == "broker:29092"
    assert (settings.postgres_host, settings.postgres_port) == ("db", 6543)
    assert settings.postgres_db == "election"
    assert (settings.postgres_user, settings.postgres_password) == ("teller", "s3cret")
    assert settings.spark_master == "spark://spark-master:7077"


def test_empty_variables_keep_the_defaults():
    assert Settings.from_env({"POSTGRES_PORT": "", "POSTGRES_DB": ""}) == Settings.from_env({})


def test_a_port_that_is_not_a_number_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="POSTGRES_PORT='fivefour'"):
        Settings.from_env({"POSTGRES_PORT": "fivefour"})


def test_the_password_is_kept_out_of_repr():
    assert "s3cret" not in repr(Settings.from_env({"POSTGRES_PASSWORD": "s3cret"}))


def test_settings_survive_a_round_trip_through_the_environment():
    settings = Settings.from_env({"POSTGRES_SCHEMA": "election_2", "KAFKA_TOPIC_PREFIX": "t-", "POSTGRES_PORT": "6000"})
    assert Settings.from_env(settings.as_environment()) == settings


def test_topic_names_carry_the_prefix():
    assert Settings.from_env({"KAFKA_TOPIC_PREFIX": "poll7-"}).topic("votes_topic") == "poll7-votes_topic"


def test_dashboard_read_only_reads_true_and_false_and_rejects_anything_else():
    assert Settings.from_env({}).dashboard_read_only is False
    assert Settings.from_env({"DASHBOARD_READ_ONLY": "true"}).dashboard_read_only is True
    assert Settings.from_env({"DASHBOARD_READ_ONLY": " Yes "}).dashboard_read_only is True
    assert Settings.from_env({"DASHBOARD_READ_ONLY": "0"}).dashboard_read_only is False
    with pytest.raises(ValueError, match="DASHBOARD_READ_ONLY='maybe' is not true or false"):
        Settings.from_env({"DASHBOARD_READ_ONLY": "maybe"})
    read_only = Settings.from_env({"DASHBOARD_READ_ONLY": "on"})
    assert Settings.from_env(read_only.as_environment()) == read_only
