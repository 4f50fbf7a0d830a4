"""What every command shares: logging configured once, one stop event set by Ctrl-C or SIGTERM, and the wait for
Kafka and PostgreSQL at start (``--wait-for-services``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from realtime_voting.core.settings import Settings
from realtime_voting.services import db, kafka_io

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Long enough for `make up` started a moment before (or a compose service restarting) to answer.
SERVICE_WAIT_S = 30.0


def service_wait_option() -> argparse.ArgumentParser:
    """The ``--wait-for-services SECONDS`` option of every stage, as a parent parser (``parents=[...]``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--wait-for-services", type=float, default=SERVICE_WAIT_S, metavar="SECONDS",
                        help="how long to wait for Kafka, then for PostgreSQL, at start before giving up "
                             f"(default {SERVICE_WAIT_S:g})")
    return parser


def configure_logging(level: int = logging.INFO) -> None:
    """Configure the root logger once, at an entry point; library modules only call ``getLogger(__name__)``."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    # librdkafka and py4j are chatty at INFO; their warnings still show.
    for noisy in ("py4j", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def install_stop_event() -> threading.Event:
    """Return an event that SIGINT and SIGTERM set, for every loop to check; a second signal exits at once."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        logging.getLogger(__name__).info("%s received: finishing the work in hand, then stopping",
                                         signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


def services_ready(settings: Settings, principal: str, timeout_s: float = SERVICE_WAIT_S) -> bool:
    """Wait for Kafka (to answer ``principal``) and PostgreSQL; if either stays unreachable, say which, where and
    which variables say so (one line on stderr), and return False."""
    try:
        kafka_io.wait_for_kafka(settings, principal, timeout_s=timeout_s)
        db.wait_for_postgres(settings, timeout_s=timeout_s)
    except (kafka_io.KafkaUnavailable, db.PostgresUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return False
    return True


def start_long_running(principal: str, timeout_s: float = SERVICE_WAIT_S) -> tuple[Settings, threading.Event] | None:
    """What every long-running command does first: logging, settings, the stop event, and waiting for Kafka
    and PostgreSQL. ``None`` (after saying what is unreachable) when they do not answer in time."""
    configure_logging()
    settings = Settings.from_env()
    stop = install_stop_event()
    return (settings, stop) if services_ready(settings, principal, timeout_s) else None
