"""The pipeline's stages run as a user runs them (``realtime_voting.running.processes``), with an election's settings as
their environment; each helper fails the test, with the stage's output, when the stage does not succeed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from realtime_voting.core.settings import Settings
from realtime_voting.running import processes


def succeeded(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{' '.join(result.args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def seed(election: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``main.py`` with the offline generator: the tables, topics, candidates and voters of ``election``."""
    return succeeded(processes.run(election, "main.py", "--source", "offline", *args))


def vote(election: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``voting.py`` until every voter published so far has had their turn (``--until-end``)."""
    return succeeded(processes.run(election, "voting.py", "--until-end", *args))


def count(election: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``spark_streaming.py`` over every vote there is now, then exit."""
    return succeeded(processes.run(election, "spark_streaming.py", "--available-now", *args))


def last_lines(log: Path, count: int = 40) -> str:
    """The end of a stage's log, for a failure's message."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else ["(no log)"]
    return f"--- the last lines of {log} ---\n" + "\n".join(lines[-count:])
