import dataclasses
import re
from pathlib import Path

import pytest

from realtime_voting.core import topics
from realtime_voting.core.settings import SETTINGS_DOC, Settings, document_with_table, settings_table, variables


def test_defaults_match_the_reference_connection_string():
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.postgres_dsn == "host=localhost port=5432 dbname=voting user=postgres"
    assert settings.postgres_password == "postgres"  # noqa: S105 - the documented default of the local stack, asserted
    assert settings.spark_master == "local[*]"


def test_tls_to_postgres_defaults_to_libpqs_own_behaviour():
    settings = Settings.from_env({})
    assert (settings.postgres_sslmode, settings.postgres_sslrootcert) == ("prefer", "")
    # libpq's word for the system's CAs stays a word: it is not a path to resolve.
    assert Settings.from_env({"POSTGRES_SSLROOTCERT": "system"}).postgres_sslrootcert == "system"


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


def test_topic_names_carry_the_prefix():
    assert Settings.from_env({"KAFKA_TOPIC_PREFIX": "poll7-"}).topic(topics.VOTES) == "poll7-votes_topic"


def test_dashboard_read_only_reads_true_and_false_and_rejects_anything_else():
    assert Settings.from_env({}).dashboard_read_only is False
    assert Settings.from_env({"DASHBOARD_READ_ONLY": "true"}).dashboard_read_only is True
    assert Settings.from_env({"DASHBOARD_READ_ONLY": " Yes "}).dashboard_read_only is True
    assert Settings.from_env({"DASHBOARD_READ_ONLY": "0"}).dashboard_read_only is False
    with pytest.raises(ValueError, match="DASHBOARD_READ_ONLY='maybe' is not true or false"):
        Settings.from_env({"DASHBOARD_READ_ONLY": "maybe"})
    read_only = Settings.from_env({"DASHBOARD_READ_ONLY": "on"})
    assert Settings.from_env(read_only.as_environment()) == read_only


# --- The one declaration, and what is held to it ---------------------------------------------------------------

def a_value_unlike(default: object, kind: str, folder: Path) -> object:
    """A value of the setting's kind that is not its default, to show that every setting travels."""
    if kind == "bool":
        return not default
    if kind in ("int", "float"):
        return default + 7
    if kind.startswith("Path"):
        return folder
    return f"{default}-changed"


def test_every_field_is_declared_with_a_variable_of_its_own_and_a_description():
    declared = [field.metadata for field in dataclasses.fields(Settings)]
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]+", entry["env"]) and entry["doc"] for entry in declared)
    assert len(variables()) == len(declared), "two settings read the same variable"


def test_docs_settings_md_has_the_table_that_the_declaration_makes():
    document = SETTINGS_DOC.read_text()
    assert document == document_with_table(document), (
        "docs/settings.md's table is not realtime_voting/core/settings.py's declaration: run `make docs`")


def test_the_table_has_a_row_per_variable_with_its_default_and_description():
    table = settings_table()
    assert len(table.splitlines()) == 2 + len(variables())
    assert "| `POSTGRES_PORT` | `5432` | the PostgreSQL server's port |" in table
    assert "| `SPARK_CHECKPOINT_DIR` | `.local/checkpoints` |" in table  # a path: relative to the repository
    assert "| `KAFKA_HOME` | unset |" in table and "| `KAFKA_TOPIC_PREFIX` | empty |" in table
    assert "| `DASHBOARD_READ_ONLY` | `false` |" in table


def test_every_setting_survives_a_round_trip_through_the_environment(tmp_path):
    changed = Settings.from_env({})
    for field in dataclasses.fields(Settings):
        value = a_value_unlike(getattr(changed, field.name), str(field.type), (tmp_path / field.name).resolve())
        changed = dataclasses.replace(changed, **{field.name: value})
    assert all(getattr(changed, field.name) != field.default for field in dataclasses.fields(Settings))
    assert Settings.from_env(changed.as_environment()) == changed


def test_defaults_survive_a_round_trip_through_the_environment():
    defaults = Settings.from_env({})
    assert defaults.kafka_home is None and defaults.as_environment()["KAFKA_HOME"] == ""
    assert Settings.from_env(defaults.as_environment()) == defaults


def test_checkpoints_live_in_the_local_state_dir_unless_set_apart(tmp_path):
    in_state_dir = Settings.from_env({"LOCAL_STATE_DIR": str(tmp_path)})
    assert in_state_dir.state_dir == tmp_path.resolve()
    assert in_state_dir.spark_checkpoint_dir == str(tmp_path.resolve() / "checkpoints")
    apart = Settings.from_env({"LOCAL_STATE_DIR": str(tmp_path), "SPARK_CHECKPOINT_DIR": "/shared/checkpoints"})
    assert apart.spark_checkpoint_dir == "/shared/checkpoints"


def test_folders_are_resolved_and_a_rate_that_is_not_a_number_is_rejected_with_its_name(tmp_path):
    assert Settings.from_env({"JARS_DIR": str(tmp_path / "a" / "..")}).jars_dir == tmp_path.resolve()
    with pytest.raises(ValueError, match=r"VOTING_RATE='fast' is not a number"):
        Settings.from_env({"VOTING_RATE": "fast"})


def test_three_kafka_nodes_get_an_address_each_and_three_copies_of_every_partition():
    three = Settings.from_env({"KAFKA_NODES": "3"})
    assert three.kafka_bootstrap_servers == "localhost:9092,localhost:9192,localhost:9292"
    assert (three.kafka_replication_factor, three.kafka_min_insync_replicas) == (3, 2)
    one = Settings.from_env({})
    assert (one.kafka_bootstrap_servers, one.kafka_replication_factor, one.kafka_min_insync_replicas) == (
        "localhost:9092", 1, 1)
    # Set ones win: a user's own cluster, or fewer copies on purpose.
    chosen = Settings.from_env({"KAFKA_NODES": "3", "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2,c:3",
                                "KAFKA_REPLICATION_FACTOR": "2"})
    assert (chosen.kafka_bootstrap_servers, chosen.kafka_replication_factor, chosen.kafka_min_insync_replicas) == (
        "a:1,b:2,c:3", 2, 1)
