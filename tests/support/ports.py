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
