"""The seeding stage (``main.py``): the election's tables and topics, its candidates and its voters.

1. Creates the tables ``candidates``, ``voters`` and ``votes`` and every topic of the pipeline, if missing.
2. Registers candidates up to ``--candidates`` (one per party in turn) and voters up to ``--voters``, from
   the RandomUser API when it is reachable or the offline generator otherwise (``--source``).
3. Publishes each newly registered voter to ``voters_topic`` keyed by ``voter_id``, batch by batch, and
   waits for the broker to acknowledge every message before it exits.

Running it again tops the election up to the requested sizes and duplicates no one. Voters registered by
an earlier run that was interrupted before publishing them can be published again with ``--republish``:
re-publishing is harmless, because a voter can only ever vote once (see ``realtime_voting.voting.ballot_box``).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import psycopg2.extensions
from confluent_kafka import Producer
from tqdm import tqdm

from realtime_voting.core import topics
from realtime_voting.core.overlapped import StoredBehind
from realtime_voting.core.schemas import PARTIES, Voter
from realtime_voting.core.settings import Settings
from realtime_voting.core.topics import checkpoint_root
from realtime_voting.seeding import people
from realtime_voting.services import db, elections, kafka_io
from realtime_voting.services.cli import configure_logging, service_wait_option, services_ready

logger = logging.getLogger(__name__)


def batched(iterable, size: int) -> Iterator[list]:
    iterator = iter(iterable)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__.split("\n")[0],
                                     parents=[service_wait_option()])
    parser.add_argument("--voters", type=int, default=1000, help="voters the election has (default 1000)")
    parser.add_argument("--candidates", type=int, default=3, help="candidates standing (default 3)")
    parser.add_argument("--parties", default=",".join(PARTIES),
                        help="comma-separated party names; candidates are assigned to them in turn")
    parser.add_argument("--source", choices=["auto", "randomuser", "offline"], default="auto",
                        help="where people come from (default auto: RandomUser if reachable, else offline)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the offline generator (default 42)")
    parser.add_argument("--batch-size", type=int, default=5000, help="voters registered and published per batch")
    parser.add_argument("--republish", action="store_true",
                        help="publish again every registered voter who has not voted yet")
    parser.add_argument("--reset", action="store_true",
                        help="drop the election's tables and topics first (asks for confirmation)")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    args = parser.parse_args(argv)
    if args.voters < 0 or args.candidates < 0 or args.batch_size < 1:
        parser.error("--voters and --candidates must be 0 or more, --batch-size at least 1")
    args.parties = [party.strip() for party in args.parties.split(",") if party.strip()]
    if not args.parties:
        parser.error("--parties needs at least one party name")
    return args


def confirm_reset(settings: Settings, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    where = f"{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}"
    question = (f"This deletes every candidate, voter and vote in {where} and the election's topics on "
                f"{settings.kafka_bootstrap_servers}. Type 'yes' to go on: ")
    if not sys.stdin.isatty():
        print("error: --reset needs confirmation; pass --yes when there is no terminal", file=sys.stderr)
        return False
    return input(question).strip().lower() == "yes"


class Seeder:
    """Seeds one election through one PostgreSQL connection and one producer, which its caller owns and closes."""

    def __init__(self, settings: Settings, args: argparse.Namespace,
                 connection: psycopg2.extensions.connection, producer: Producer) -> None:
        self.settings = settings
        self.args = args
        self.connection = connection
        self.producer = producer
        self.voters_topic = settings.topic(topics.VOTERS)
        self._source: people.PeopleSource | None = None

    def source(self) -> people.PeopleSource:
        """The people source, chosen (and announced) the first time someone is needed."""
        if self._source is None:
            # A top-up must not draw the people the first run drew: the offline stream continues from a seed
            # derived from --seed and the election's size, so runs stay reproducible without repeating anyone.
            size = db.count_rows(self.connection, "voters") * 7919 + db.count_rows(self.connection, "candidates")
            seed = self.args.seed if size == 0 else self.args.seed * 1_000_003 + size
            self._source, why = people.choose_source(self.args.source, self.settings.randomuser_url, seed)
            print(f"People come from the {why}.")
        return self._source

    def reset(self) -> None:
        db.drop_schema(self.connection)
        deleted = elections.delete_topics(self.settings, kafka_io.SEEDING)
        # The counting job's checkpoints describe the deleted topics; a fresh election needs fresh ones.
        checkpoints = Path(checkpoint_root(self.settings))
        if checkpoints.is_dir():
            shutil.rmtree(checkpoints)
        print(f"Reset: dropped the tables {', '.join(db.ELECTION_TABLES)}, {len(deleted)} topic(s) "
              f"and the counting job's checkpoints.")

    def prepare(self) -> None:
        db.create_schema(self.connection, self.settings.postgres_schema)
        created = elections.create_topics(self.settings)
        if created:
            print(f"Created {len(created)} topic(s) with {self.settings.kafka_topic_partitions} partition(s) each.")

    def seed_candidates(self) -> int:
        existing = db.count_rows(self.connection, "candidates")
        wanted = self.args.candidates - existing
        if wanted <= 0:
            return 0
        candidates = []
        for number in range(existing, self.args.candidates):
            # As the reference does: alternate genders, and parties in turn.
            gender = "female" if number % 2 == 1 else "male"
            [person] = self.source().people(1, gender=gender)
            party = self.args.parties[number % len(self.args.parties)]
            candidates.append(people.candidate_from_randomuser(person, party))
        return db.insert_candidates(self.connection, candidates)

    def seed_voters(self) -> int:
        existing = db.count_rows(self.connection, "voters")
        wanted = self.args.voters - existing
        if wanted <= 0:
            return 0
        registered = batches_with_known_people = 0
        giving_up = False
        # Storing a batch (PostgreSQL's work: psycopg2 lets go of the GIL meanwhile) overlaps with drawing the
        # next one and publishing the one before. A voter is still published only after it is stored.
        with (tqdm(total=wanted, unit="voter", desc="Registering and publishing voters") as bar,
              StoredBehind(partial(db.insert_voters, self.connection), thread_name="register") as registrar):
            while True:
                in_flight = len(registrar.being_stored or [])
                still_wanted = 0 if giving_up else wanted - registered - in_flight
                drawn = self.draw(min(self.args.batch_size, still_wanted)) if still_wanted > 0 else []
                batch, new_voters = registrar.hand_over(drawn or None) or ([], [])
                if new_voters:
                    self.publish(new_voters)
                    registered += len(new_voters)
                    bar.update(len(new_voters))
                # A source may hand out someone already registered; they are skipped and replaced, within reason.
                batches_with_known_people += len(new_voters) < len(batch)
                giving_up = giving_up or batches_with_known_people > 10
                if registrar.being_stored is None:
                    break
        if giving_up:
            logger.warning("the source keeps returning registered people: stopped at %d new voters", registered)
        return registered

    def draw(self, count: int) -> list[Voter]:
        return [people.voter_from_randomuser(person) for person in self.source().people(count)]

    def republish(self) -> int:
        published = 0
        # A connection of its own: the server-side cursor holds a transaction of its own.
        with db.connected(self.settings) as connection:
            for batch in batched(db.fetch_voters_without_vote(connection), self.args.batch_size):
                published += self.publish(batch)
        return published

    def publish(self, voters: list[Voter]) -> int:
        return kafka_io.produce_all(self.producer, self.voters_topic,
                                    ((voter.voter_id, voter.to_message(), None) for voter in voters))

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    settings = Settings.from_env()
    if not services_ready(settings, kafka_io.SEEDING, args.wait_for_services):
        return 1
    if args.reset and not confirm_reset(settings, args.yes):
        print("Nothing was reset.", file=sys.stderr)
        return 1

    started = time.monotonic()
    with db.connected(settings) as connection:
        producer = Producer(kafka_io.producer_config(settings, kafka_io.SEEDING))
        seeder = Seeder(settings, args, connection, producer)
        try:
            if args.reset:
                seeder.reset()
            seeder.prepare()
            new_candidates = seeder.seed_candidates()
            new_voters = seeder.seed_voters()
            republished = seeder.republish() if args.republish else 0
        except people.SourceUnavailable as error:
            print(f"error: {error}. Use --source offline or --source auto.", file=sys.stderr)
            return 1
        except kafka_io.PublishFailed as error:
            print(f"error: {error}. Run main.py again with --republish once Kafka is back.", file=sys.stderr)
            return 1
        finally:
            producer.flush(30)  # every voter is acknowledged already (produce_all); this is only the tidy-up
        candidates, voters = db.count_rows(connection, "candidates"), db.count_rows(connection, "voters")
    elapsed = time.monotonic() - started
    print(f"Election ready in {elapsed:.1f}s: {candidates} candidates ({new_candidates} new), "
          f"{voters} voters ({new_voters} new, published to {seeder.voters_topic})"
          + (f", {republished} voters re-published" if args.republish else "") + ".")
    return 0
