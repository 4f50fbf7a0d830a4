"""``make demo``: every stage of the pipeline at once, each with its output in ``.local/logs/<stage>.log``.

``make demo`` has already run ``make up`` (Kafka and PostgreSQL). This starts the stages in pipeline order,
prints where everything is, and waits; Ctrl-C (or SIGTERM) stops every stage it started, the local stack
keeps running (``make down`` stops it). A stage whose module is not built yet is listed and skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from realtime_voting.cli import start_long_running
from realtime_voting.settings import REPO_ROOT

logger = logging.getLogger(__name__)

DASHBOARD_PORT = 8501
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # the package module that implements it; the stage is skipped while it does not exist
    argv: tuple[str, ...]
    runs_until_stopped: bool = True  # False for a stage that does its work and exits (seeding)


STAGES = (
    Stage("seed", "realtime_voting.seeding", ("main.py",), runs_until_stopped=False),
    Stage("voting", "realtime_voting.voting", ("voting.py",)),
    Stage("spark", "realtime_voting.streaming", ("spark_streaming.py",)),
    Stage("dashboard", "realtime_voting.dashboard", (
        "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
        "--server.port", str(DASHBOARD_PORT), "--browser.gatherUsageStats", "false",
    )),
)


def is_built(stage: Stage) -> bool:
    return importlib.util.find_spec(stage.module) is not None


def start(stage: Stage, logs_dir: Path) -> subprocess.Popen[bytes]:
    log_path = logs_dir / f"{stage.name}.log"
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *stage.argv], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
        )


def stop(name: str, process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # SIGTERM to the stage itself, not its process group: the stage stops its own children (Spark's JVM) in order.
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop within %.0fs; killing it", name, STOP_TIMEOUT_S)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m realtime_voting.demo", description=__doc__.split("\n")[0]).parse_args(argv)
    started = start_long_running(timeout_s=10)
    if started is None:
        return 1
    settings, stop_requested = started
    settings.logs_dir.mkdir(parents=True, exist_ok=True)

    running: dict[str, subprocess.Popen[bytes]] = {}
    skipped = [stage.name for stage in STAGES if not is_built(stage)]
    for stage in STAGES:
        if stage.name not in skipped:
            running[stage.name] = start(stage, settings.logs_dir)

    print(f"\nThe election is running. Kafka: {settings.kafka_bootstrap_servers}   "
          f"PostgreSQL: {settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}")
    for name, process in running.items():
        print(f"  {name:<10} pid {process.pid:<8} log {settings.logs_dir / (name + '.log')}")
    if "dashboard" in running:
        print(f"  Dashboard: http://localhost:{DASHBOARD_PORT}")
    if skipped:
        print(f"  Not built yet, skipped: {', '.join(skipped)}")
    print("Ctrl-C stops the stages (the local stack keeps running; `make down` stops it).\n")

    long_running = {stage.name for stage in STAGES if stage.runs_until_stopped}
    reported: set[str] = set()
    exit_code = 0
    try:
        while not stop_requested.wait(1.0):
            for name, process in running.items():
                returncode = process.poll()
                if returncode is None or name in reported:
                    continue
                reported.add(name)
                if returncode == 0 and name not in long_running:
                    logger.info("%s finished", name)
                else:
                    exit_code = 1
                    logger.error("%s exited with code %s: see %s", name, returncode, settings.logs_dir / f"{name}.log")
            if running and all(process.poll() is not None for process in running.values()):
                break
    finally:
        for name in reversed(list(running)):
            stop(name, running[name])
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
