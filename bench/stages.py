"""The pipeline's scripts run as processes for the bench, each sampled for its peak resident memory.

Starting and stopping them is ``realtime_voting.processes``' job, as for ``make demo`` and the tests; this adds
what only the bench wants: one folder of logs for a run, and the peak memory of every stage's Python process.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import psutil

from bench import BenchFailed
from realtime_voting import processes
from realtime_voting.settings import Settings

SAMPLE_EVERY_S = 0.2


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

    def run(self, election: Settings, name: str, *argv: str, log: str, timeout_s: float) -> None:
        """``start`` and wait for a successful exit (``BenchFailed`` otherwise)."""
        with self.start(election, name, *argv, log=log) as stage:
            stage.wait(timeout_s)

    def largest_peak_mb(self) -> float:
        return max(self.peak_rss.values(), default=0) / 2**20


class Stage:
    """One running stage; stopped (``processes.stop``) on leaving a ``with`` block if it is still running."""

    def __init__(self, name: str, process: subprocess.Popen, log: Path, peak_rss: dict[str, int]) -> None:
        self.name, self.process, self.log = name, process, log
        self._peak_rss = peak_rss
        threading.Thread(target=self._sample, name=f"rss-{name}", daemon=True).start()

    def _sample(self) -> None:
        try:
            process = psutil.Process(self.process.pid)
            while self.process.poll() is None:
                self._peak_rss[self.name] = max(self._peak_rss.get(self.name, 0), process.memory_info().rss)
                time.sleep(SAMPLE_EVERY_S)  # the sampling interval of the memory figure
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
