"""What the local stack's servers share: the checks before a start, their pid and status, and errors naming a log.

Each server (``KafkaBroker``, ``PostgresServer``) is a ``LocalService``: it says how to start, stop and ask
itself; the lifecycle around that is here, once. A server starts only on this machine and on free ports, and says
which setting to change when it cannot; its status line is its name, state, address, pid, how clients reach it
and its log.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from realtime_voting.core.settings import Settings

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class StackError(RuntimeError):
    """A service could not be started or stopped; the message names its log file."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    address: str
    detail: str

    def __str__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"{self.name:<10} {state:<8} {self.address:<22} {self.detail}"


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]"), int(port)


def port_is_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        # When the process is our own child (tests start the stack in-process), an exited broker stays a
        # zombie until reaped, and a zombie still answers kill(pid, 0).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_in(path: Path) -> int | None:
    """The pid on the first line of a pid file (``kafka.pid``, PostgreSQL's ``postmaster.pid``), None unless that
    process is alive."""
    try:
        pid = int(path.read_text().split("\n", 1)[0].strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log yet)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class LocalService(ABC):
    """A server of the local stack, under ``settings.state_dir``."""

    name: str  # as `make status` and `serve`/`ready` name it
    title: str  # as a sentence names it

    def __init__(self, settings: Settings, log_file: Path) -> None:
        self.settings = settings
        self.log_file = log_file

    @property
    @abstractmethod
    def address(self) -> str:
        """host:port, as clients reach it."""

    @abstractmethod
    def pid(self) -> int | None:
        """The server's pid while it runs."""

    @abstractmethod
    def is_running(self) -> bool:
        ...

    @abstractmethod
    def is_ready(self) -> bool:
        """Whether it accepts a client's connection now."""

    @abstractmethod
    def how_clients_connect(self) -> str:
        """The security a client meets (PLAINTEXT, SASL_SSL, TLS with which CA), for the status line."""

    @abstractmethod
    def start(self) -> str:
        """Start it in the background unless it runs already (idempotent); a line saying what happened."""

    @abstractmethod
    def stop(self) -> str:
        """Stop it cleanly, keeping its data; a line saying what happened."""

    def status(self) -> ServiceStatus:
        if not self.is_running():
            return ServiceStatus(self.name, False, self.address, f"log {self.log_file}")
        return ServiceStatus(self.name, True, self.address,
                             f"pid {self.pid()}, {self.how_clients_connect()}, log {self.log_file}")

    def check_startable(self, host: str, host_setting: str, ports: dict[int, str]) -> None:
        """``StackError`` unless ``host`` is this machine and each port (-> the setting that chooses it) is free."""
        if host not in LOCAL_HOSTS:
            raise StackError(
                f"{host_setting} names {host}, which is not this machine: `make up` only starts a local "
                f"{self.title}; with one of your own, skip `make up`")
        for port, setting in ports.items():
            if port_is_open(host, port):
                raise StackError(
                    f"port {port} on {host} is taken by another process, so the local {self.title} cannot start. "
                    f"Stop that process, or choose another port with {setting}")
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)

    def failed(self, what: str, *logs: Path) -> StackError:
        """An error saying what failed, with the last lines of the service's logs."""
        logs = logs or (self.log_file,)
        return StackError(f"{what}. See {' and '.join(map(str, logs))}; last lines:\n"
                          + "\n".join(tail(log) for log in logs))
