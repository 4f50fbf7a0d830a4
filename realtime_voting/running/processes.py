"""Child processes: the one place that starts, runs and stops them.

``make demo``, the bench and the tests start ``main.py``, ``voting.py``, ``spark_streaming.py`` and the web app the
way a user does (``start``, ``run``, or ``running`` as a ``with`` block that always stops the stage): this interpreter,
the repository as working directory, an election's ``Settings`` as the environment. Other programs (the broker's
JVM, PostgreSQL's ``pg_ctl``, ``make``, ``docker``) go through ``start_program`` and ``run_program``. ``stop`` asks a
process to stop and kills its process group when it does not.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from realtime_voting.core.settings import REPO_ROOT, Settings

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 60.0


def environment(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``settings`` (and ``extra``) in place of the pipeline's variables."""
    return {**os.environ, **settings.as_environment(), **(extra or {})}


def command(*argv: str) -> list[str]:
    """``python <argv>`` with this interpreter: a script (``voting.py``) or ``-m module``."""
    return [sys.executable, *argv]


def start_program(program: Sequence[str], *, log: Path | None = None, env: Mapping[str, str] | None = None,
                  own_session: bool = False, cwd: Path = REPO_ROOT) -> subprocess.Popen:
    """Start ``program`` (its arguments included) with ``env`` (default: this process's environment).

    Its output goes to ``log`` (appended) when given, else to text pipes the caller reads. ``own_session``: a Ctrl-C
    in the terminal reaches the caller only (which stops its children in order with ``stop``), and the child
    outlives its caller (the local stack's servers outlive ``make up``).
    """
    popen = functools.partial(subprocess.Popen, list(program), cwd=cwd, env=None if env is None else dict(env),  # noqa: S603 - the project's own programs, with its own arguments
                              stdin=subprocess.DEVNULL, start_new_session=own_session)
    if log is None:
        return popen(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as log_file:  # the child has its own copy of the descriptor
        return popen(stdout=log_file, stderr=subprocess.STDOUT)


def run_program(program: Sequence[str], *, timeout_s: float | None = 300, env: Mapping[str, str] | None = None,
                cwd: Path = REPO_ROOT, **options: Any) -> subprocess.CompletedProcess[str]:  # noqa: ANN401 - subprocess.run's own options (user, group)
    """Run ``program`` to its end; its output is captured as text. Never raises for an exit code: the caller
    reads ``returncode`` and says what failed."""
    return subprocess.run(list(program), cwd=cwd, env=None if env is None else dict(env), capture_output=True,  # noqa: S603 - the project's own programs, with its own arguments
                          text=True, timeout=timeout_s, stdin=subprocess.DEVNULL, check=False, **options)


def start(settings: Settings, *argv: str, log: Path | None = None, env: Mapping[str, str] | None = None,
          own_session: bool = False) -> subprocess.Popen:
    """Start ``python <argv>`` in the repository with ``settings`` as its environment (see ``start_program``)."""
    return start_program(command(*argv), log=log, env=environment(settings, env), own_session=own_session)


def run(settings: Settings, *argv: str, timeout_s: float = 300,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python <argv>`` to its end with ``settings`` as its environment; its output is captured as text."""
    return run_program(command(*argv), timeout_s=timeout_s, env=environment(settings, env))


@contextmanager
def running(settings: Settings, *argv: str, log: Path | None = None, env: Mapping[str, str] | None = None,
            timeout_s: float = STOP_TIMEOUT_S) -> Iterator[subprocess.Popen]:
    """``start`` as a ``with`` block: the stage is stopped (``stop``) when the block ends, however it ends; one
    that has exited already is only reaped. Its exit code is then the process's ``returncode``."""
    process = start(settings, *argv, log=log, env=env)
    try:
        yield process
    finally:
        stop(" ".join(argv[:3]), process, timeout_s=timeout_s)


def stop(name: str, process: subprocess.Popen, *, timeout_s: float = STOP_TIMEOUT_S,
         how: signal.Signals = signal.SIGTERM) -> int:
    """Ask a stage to stop (SIGTERM to the stage itself, which stops its own children such as Spark's JVM in
    order), and kill its whole process group if it has not exited within ``timeout_s``. Returns its exit code.
    A stage that has exited already is only reaped."""
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
