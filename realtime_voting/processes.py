"""The pipeline's scripts run as child processes with a given ``Settings`` as their environment.

``make demo``, the bench and the tests start ``main.py``, ``voting.py``, ``spark_streaming.py`` and the web
app the way a user does; this is the one place that knows how (the interpreter, the working directory, the
environment) and how to stop one in order.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from realtime_voting.settings import REPO_ROOT, Settings

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 60.0


def environment(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``settings`` (and ``extra``) in place of the pipeline's variables."""
    return {**os.environ, **settings.as_environment(), **(extra or {})}


def command(*argv: str) -> list[str]:
    """``python <argv>`` with this interpreter: a script (``voting.py``) or ``-m module``."""
    return [sys.executable, *argv]


def start(settings: Settings, *argv: str, log: Path | None = None, env: dict[str, str] | None = None,
          own_session: bool = False) -> subprocess.Popen:
    """Start ``python <argv>`` in the repository with ``settings`` as its environment.

    Its output goes to ``log`` (appended) when given, else to text pipes the caller reads. ``own_session``: a
    Ctrl-C in the terminal reaches the caller only, which stops its children in order with ``stop``.
    """
    popen = functools.partial(subprocess.Popen, command(*argv), cwd=REPO_ROOT, env=environment(settings, env),
                              stdin=subprocess.DEVNULL, start_new_session=own_session)
    if log is None:
        return popen(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with log.open("ab") as log_file:  # the child has its own copy of the descriptor
        return popen(stdout=log_file, stderr=subprocess.STDOUT)


def run(settings: Settings, *argv: str, timeout_s: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python <argv>`` to its end with ``settings`` as its environment; its output is captured as text."""
    return subprocess.run(command(*argv), cwd=REPO_ROOT, env=environment(settings, env), capture_output=True,  # noqa: S603 - this interpreter and the project's own scripts
                          text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)


def stop(name: str, process: subprocess.Popen, *, timeout_s: float = STOP_TIMEOUT_S,
         how: signal.Signals = signal.SIGTERM) -> int:
    """Ask a stage to stop (SIGTERM to the stage itself, which stops its own children such as Spark's JVM in
    order), and kill its whole process group if it has not exited within ``timeout_s``. Returns its exit code."""
    if process.poll() is None:
        process.send_signal(how)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %.0fs; killing it", name, timeout_s)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
            process.wait()
    return process.returncode
