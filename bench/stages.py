"""The pipeline's scripts run as processes for the bench, each sampled for its peak resident memory and its CPU.

Starting and stopping them is ``realtime_voting.running.processes``' job, as for ``make demo`` and the tests; this adds
what only the bench wants: one folder of logs for a run, the peak memory of every stage's Python process, and
the CPU time of every stage with its children (the counting job's JVM is a child of ``spark_streaming.py``) and of
the local stack's Kafka nodes and PostgreSQL.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import psutil

from bench import BenchFailed
from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.running.local_stack import KafkaCluster, PostgresServer

SAMPLE_EVERY_S = 0.2


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU seconds of ``process`` and of its descendants, those that ended included (a process's
    ``children_*`` times are those of the children it has waited for, such as PostgreSQL's ended backends)."""
    total = 0.0
    for member in (process, *process.children(recursive=True)):
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue  # it ended after the listing; its parent counts it once it has waited for it
        total += times.user + times.system + times.children_user + times.children_system
    return total


def services_cpu_seconds(settings: Settings) -> dict[str, float]:
    """CPU seconds so far of the local stack's Kafka nodes (together, as ``kafka``) and PostgreSQL (``make up``);
    only those running here (a stack in containers or elsewhere is not measured)."""
    pids = {"kafka": [node.pid() for node in KafkaCluster(settings).nodes],
            "postgres": [PostgresServer(settings).pid()]}
    seconds = {}
    for name, members in pids.items():
        try:
            if all(members):
                seconds[name] = sum(cpu_seconds(psutil.Process(pid)) for pid in members)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return seconds


class Stages:
    """Starts stages with their output in ``logs/<log>.log`` and keeps the peak resident memory of each."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.peak_rss: dict[str, int] = {}  # stage name -> bytes

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, election: Settings, name: str, *argv: str, log: str) -> Stage:
        """``python <argv>`` with ``election`` as its settings, its output appended to ``log(log)``."""
        return Stage(name, processes.start(election, *argv, log=self.log(log)), self.log(log), self.peak_rss)

    def run(self, election: Settings, name: str, *argv: str, log: str, timeout_s: float) -> Stage:
        """``start`` and wait for a successful exit (``BenchFailed`` otherwise); the stage, ended."""
        with self.start(election, name, *argv, log=log) as stage:
            stage.wait(timeout_s)
        return stage

    def largest_peak_mb(self) -> float:
        return max(self.peak_rss.values(), default=0) / 2**20


class Stage:
    """One running stage; stopped (``processes.stop``) on leaving a ``with`` block if it is still running.

    ``cpu_seconds`` is its CPU time with its children's as last sampled (every ``SAMPLE_EVERY_S``).
    """

    def __init__(self, name: str, process: subprocess.Popen, log: Path, peak_rss: dict[str, int]) -> None:
        self.name, self.process, self.log = name, process, log
        self.cpu_seconds = 0.0
        self._peak_rss = peak_rss
        threading.Thread(target=self._sample, name=f"rss-{name}", daemon=True).start()

    def _sample(self) -> None:
        try:
            process = psutil.Process(self.process.pid)
            while self.process.poll() is None:
                self._peak_rss[self.name] = max(self._peak_rss.get(self.name, 0), process.memory_info().rss)
                self.cpu_seconds = max(self.cpu_seconds, cpu_seconds(process))
                time.sleep(SAMPLE_EVERY_S)  # the sampling interval of the memory and CPU figures
        except psutil.NoSuchProcess:
            pass  # it ended between two samples

    def wait(self, timeout_s: float) -> None:
        """Wait for the stage to exit; ``BenchFailed`` if it fails or is still running after ``timeout_s``."""
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise BenchFailed(f"{self.name} did not finish within {timeout_s:.0f}s: see {self.log}") from None
        if code != 0:
            raise BenchFailed(f"{self.name} exited with {code}: see {self.log}")

    def stop(self) -> None:
        processes.stop(self.name, self.process)

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
