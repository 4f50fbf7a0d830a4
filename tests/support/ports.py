"""Free TCP ports, for stacks and servers of a test's own and for addresses where nothing listens."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on right now (held open together so that they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port_series(count: int, step: int) -> int:
    """A port p such that p, p + step, ... (``count`` ports) are all free: where a local cluster's nodes put their
    controllers (``KAFKA_CONTROLLER_PORT`` + 100 (n - 1))."""
    for _ in range(100):
        first = free_ports(1)[0]
        if first + step * (count - 1) < 65536 and all(_is_free(first + step * index) for index in range(count)):
            return first
    raise RuntimeError(f"no {count} free ports {step} apart")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
