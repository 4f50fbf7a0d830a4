"""``python -m realtime_voting.running.local_stack up|down|status|grant|serve|ready``: the local stack's command line.

``make up`` / ``make down`` / ``make status`` call ``up``, ``down`` and ``status``. ``serve kafka|postgres`` runs one
server in the foreground, listening on every interface and logging to the console, as a container does
(``docker-compose.yaml``): the same server, configured by the same code. ``ready kafka|postgres`` exits 0 when it
accepts connections (the containers' healthchecks). ``grant`` makes the stages' Kafka users and ACLs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from realtime_voting.core import waiting
from realtime_voting.core.settings import Settings
from realtime_voting.running.local_stack.broker import EXTERNAL_PORT, KafkaBroker
from realtime_voting.running.local_stack.postgres import PostgresServer
from realtime_voting.running.local_stack.service import StackError
from realtime_voting.running.local_stack.stack import LocalStack, grant
from realtime_voting.services import db, kafka_io
from realtime_voting.services.cli import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime_voting.running.local_stack",
                                     description="The local stack: a real Kafka broker and PostgreSQL server.")
    parser.add_argument("command", choices=["up", "down", "status", "serve", "ready", "grant"],
                        help="grant: the stages' Kafka users and the ACLs of the election of KAFKA_TOPIC_PREFIX "
                             "(with KAFKA_SECURITY_PROTOCOL=SASL_SSL; `up` grants them too)")
    parser.add_argument("service", nargs="?", choices=["kafka", "postgres"], help="with serve and ready")
    parser.add_argument("--node", type=int, default=1,
                        help="serve kafka and ready kafka: which of the KAFKA_NODES nodes (from 1)")
    parser.add_argument("--external", metavar="HOST:PORT",
                        help=f"serve kafka: the address clients outside its network reach port {EXTERNAL_PORT} at")
    parser.add_argument("--publish-ca", metavar="FILE", type=Path,
                        help="serve kafka with SASL_SSL: copy the CA's certificate (not its key) to FILE, "
                             "a folder the clients share")
    args = parser.parse_args(argv)
    if (args.command in ("serve", "ready")) != (args.service is not None):
        parser.error("serve and ready take a service (kafka or postgres), the other commands none")
    configure_logging()
    settings = Settings.from_env()
    stack = LocalStack(settings)
    try:
        if args.command == "ready":
            service = KafkaBroker(settings, args.node) if args.service == "kafka" else PostgresServer(settings)
            return 0 if service.is_ready() else 1
        if args.command == "serve" and args.service == "kafka":
            node = KafkaBroker(settings, args.node)
            node.serve(args.external or node.address, args.publish_ca)
        if args.command == "serve":
            PostgresServer(settings).serve()
        if args.command == "grant":
            kafka_io.wait_for_kafka(settings, kafka_io.ADMIN)
            print(grant(settings))
            return 0
        if args.command == "status":
            lines, all_running = stack.report()
            print("\n".join(lines))
            return 0 if all_running else 3
        for line in stack.up() if args.command == "up" else stack.down():
            print(line)
    except (StackError, db.PostgresUnavailable, kafka_io.KafkaUnavailable, waiting.TimedOut, ValueError,
            RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
