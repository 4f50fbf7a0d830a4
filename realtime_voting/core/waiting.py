"""Waiting for a condition with a deadline: the one polling loop of the project.

The stages wait for their services, the local stack for its servers, the tests and the bench for results.
Each polls a condition at an interval until it holds or a deadline passes; none sleeps for a guessed time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class TimedOut(TimeoutError):
    """The condition did not hold before the deadline; the message says what was awaited and for how long."""


def until(condition: Callable[[], T], *, timeout_s: float, what: str, every_s: float = 0.2,
          explain: Callable[[], str] | None = None, stop: threading.Event | None = None) -> T:
    """Poll ``condition`` every ``every_s`` until it returns a true value, and return that value.

    Raises ``TimedOut("<what> within N s", plus ``explain()`` when given)`` once ``timeout_s`` has passed. With
    ``stop``, the wait between polls ends early when it is set, and ``until`` then returns the falsy value the
    condition last gave (a stage asked to stop gives up waiting).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise TimedOut(f"{what} within {timeout_s:g}s{detail}")
        if stop is None:
            time.sleep(every_s)  # the polling interval, bounded by the deadline
        elif stop.wait(every_s):
            return value
