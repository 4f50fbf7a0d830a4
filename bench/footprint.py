"""What an election leaves on disk, per voter: each topic's messages, the ``votes`` and ``voters`` tables with their
indexes, and the counting job's state. The arithmetic of docs/scaling.md starts from these.

Measured at the end of the whole-election phase, on the local stack the bench runs against (the Kafka nodes' log
folders are read on this machine): a topic's bytes are those of its partitions' ``.log`` segment files (the
messages and their batch headers, not the sparse preallocated indexes), one copy's worth (divided by the topic's
replication factor); a table's are PostgreSQL's own ``pg_table_size`` and ``pg_indexes_size``; the counting job's
are the files of its checkpoint's ``state`` folder (RocksDB's SST files and their changelogs, older versions that
Spark keeps included).
"""

from __future__ import annotations

from pathlib import Path

from realtime_voting.core import topics
from realtime_voting.core.settings import Settings
from realtime_voting.running.local_stack import KafkaCluster
from realtime_voting.services import db


def topic_bytes(election: Settings) -> dict[str, int]:
    """One copy's bytes of each of the election's topics, by its name without the prefix."""
    totals: dict[str, int] = {}
    for node in KafkaCluster(election).nodes:
        for name in topics.all_topics(election):
            for partition in node.data_dir.glob(f"{name}-*"):
                if partition.name.rpartition("-")[0] == name:
                    bare = name.removeprefix(election.kafka_topic_prefix)
                    totals[bare] = totals.get(bare, 0) + sum(file.stat().st_size for file in partition.glob("*.log"))
    return {name: size // election.kafka_replication_factor for name, size in totals.items()}


TABLE_SIZES = """
    SELECT pg_table_size(c.oid), pg_indexes_size(c.oid) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s"""


def table_bytes(election: Settings) -> dict[str, int]:
    """The ``votes`` and ``voters`` tables' bytes (TOAST included) and their indexes', by ``<table>`` and
    ``<table>_indexes``."""
    sizes = {}
    for table in ("votes", "voters"):
        [(data, indexes)] = db.query(election, TABLE_SIZES, (election.postgres_schema, table))
        sizes[table], sizes[f"{table}_indexes"] = data, indexes
    return sizes


def state_bytes(election: Settings) -> int:
    """The bytes of the counting job's checkpointed state (every query's ``state`` folder)."""
    root = Path(topics.checkpoint_root(election))
    return sum(file.stat().st_size for folder in root.glob("**/state") for file in folder.rglob("*") if file.is_file())


def per_voter(election: Settings, voters: int) -> dict[str, float]:
    """Every figure of this module, in bytes per voter, named ``bytes_per_voter_<what>``."""
    sizes = {f"topic_{name}": size for name, size in topic_bytes(election).items()}
    sizes |= {f"table_{name}": size for name, size in table_bytes(election).items()}
    sizes["counting_state"] = state_bytes(election)
    return {f"bytes_per_voter_{name}": size / voters for name, size in sizes.items()}
