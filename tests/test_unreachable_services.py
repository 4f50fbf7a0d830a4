"""A stage started while Kafka or PostgreSQL cannot be reached gives up soon, with one line that names the address
and the variables that chose it, so that a user knows what to change.

Each stage runs as a user runs it, pointed at a free port where nothing listens, and waits one second
(``--wait-for-services``) instead of the default 30: a stage that ignored the option would outlast the timeout.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest

from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from tests.support.ports import free_ports

STAGES = ["main.py", "voting.py", "spark_streaming.py"]
WAIT_S = 1
# The interpreter's start and the imports (pyspark's among them) on a busy machine, and the one-second wait.
EXIT_WITHIN_S = 20


def gives_up(settings: Settings, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` waiting ``WAIT_S`` for its services; it must exit non-zero within ``EXIT_WITHIN_S``."""
    result = processes.run(settings, script, "--wait-for-services", str(WAIT_S), timeout_s=EXIT_WITHIN_S)
    assert result.returncode != 0, f"{script} exited 0 without its services:\n{result.stderr[-3000:]}"
    return result


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line saying what is unreachable."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, f"expected one error line, got {lines}:\n{result.stderr[-3000:]}"
    return lines[0]


@pytest.mark.parametrize("script", STAGES)
def test_a_stage_without_a_broker_names_the_address_and_kafka_bootstrap_servers(script):
    kafka_port, postgres_port = free_ports(2)
    nowhere = replace(Settings.from_env({}), kafka_bootstrap_servers=f"localhost:{kafka_port}",
                      postgres_port=postgres_port)
    line = error_line(gives_up(nowhere, script))
    assert f"Kafka at localhost:{kafka_port} (KAFKA_BOOTSTRAP_SERVERS) is not reachable" in line


@pytest.mark.parametrize("script", STAGES)
def test_a_stage_without_postgresql_names_the_address_and_postgres_host_and_port(stack_settings, script):
    [postgres_port] = free_ports(1)
    no_postgresql = replace(stack_settings, postgres_host="localhost", postgres_port=postgres_port)
    line = error_line(gives_up(no_postgresql, script))
    assert f"PostgreSQL at localhost:{postgres_port} (POSTGRES_HOST/POSTGRES_PORT)" in line
    assert "is not reachable" in line
