"""The voting stage (``voting.py``): every voter on ``voters_topic`` casts one vote, stored and published once.

Reads ``voters_topic`` in the consumer group ``voting-group`` (run several processes to share the topic's
partitions), picks a candidate for each voter (uniformly at random, or by ``--weights``), and hands the
ballots to the ballot box (``realtime_voting.ballot_box``), which stores them in ``votes`` and publishes them
to ``votes_topic``.

Exactly once, whatever happens (SIGKILL at any instant, the broker or PostgreSQL restarting, a voter
published twice):

- The ``votes`` primary key on ``voter_id`` is the arbiter: a voter's first stored vote is their vote.
- The consumer's offsets are stored only after the batch's votes are committed to PostgreSQL *and*
  acknowledged by the broker (``enable.auto.offset.store=False``, ``store_offsets`` at the end of a batch;
  the background auto-commit then commits what was stored). A crash replays at most the batches whose offsets
  were not committed, and a replayed voter finds their stored vote and republishes that same vote.
- Kafka transactions are not needed for this: the database, not Kafka, decides what the vote is, and the
  output is idempotent by key. The counting stage deduplicates ``votes_topic`` by ``voter_id``.

Bad input never stops the stage: a message that is not JSON, has no usable ``voter_id`` or names a voter who
is not registered goes to ``dead_letter_topic`` with its original bytes and a reason, and creates no vote.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from realtime_voting import db, kafka_io, topics
from realtime_voting.ballot_box import Ballot, BallotBox, StoredBatch
from realtime_voting.cli import start_long_running
from realtime_voting.schemas import Candidate, InvalidMessage, voter_id_of
from realtime_voting.settings import Settings

logger = logging.getLogger(__name__)

STAGE = "voting"
PROGRESS_EVERY_S = 5.0
RETRY_PAUSE_S = 1.0


class CandidateChooser:
    """Picks a candidate for each voter: uniformly at random, or with weights (``"Savior Party=3"``)."""

    def __init__(self, candidates: Sequence[Candidate], weights_spec: str = "", rng: random.Random | None = None):
        if not candidates:
            raise ValueError("there are no candidates to vote for")
        self.candidate_ids = [candidate.candidate_id for candidate in candidates]
        self.weights = parse_weights(weights_spec, candidates)
        self.rng = rng or random.Random()

    def choose(self, count: int) -> list[str]:
        return self.rng.choices(self.candidate_ids, weights=self.weights, k=count)


def parse_weights(spec: str, candidates: Sequence[Candidate]) -> list[float]:
    """Weights from ``"name=weight,..."`` where a name is a candidate's id, name or party; others weigh 1."""
    weights = [1.0] * len(candidates)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, separator, raw_weight = item.rpartition("=")
        try:
            weight = float(raw_weight)
        except ValueError:
            weight = -1.0
        if not separator or not name.strip() or weight < 0:
            raise ValueError(f"--weights item {item!r} is not NAME=WEIGHT with a weight of 0 or more")
        key = name.strip().casefold()
        matches = [index for index, candidate in enumerate(candidates)
                   if key in {candidate.candidate_id.casefold(), candidate.candidate_name.casefold(),
                              candidate.party_affiliation.casefold()}]
        if not matches:
            known = ", ".join(f"{c.candidate_name} ({c.party_affiliation})" for c in candidates)
            raise ValueError(f"--weights names {name.strip()!r}, which is no candidate or party; candidates: {known}")
        for index in matches:
            weights[index] = weight
    if not any(weights):
        raise ValueError("--weights gives every candidate a weight of 0")
    return weights


@dataclass
class Progress:
    votes_cast: int = 0
    already_voted: int = 0
    rejected: int = 0
    started: float = 0.0
    last_report: float = 0.0
    reported_total: int = 0

    def report(self, now: float, *, force: bool = False) -> None:
        if not force and now - self.last_report < PROGRESS_EVERY_S:
            return
        total = self.votes_cast + self.already_voted + self.rejected
        rate = (total - self.reported_total) / max(now - self.last_report, 1e-9)
        logger.info("votes cast %d, already voted %d, rejected %d, %.0f messages/s",
                    self.votes_cast, self.already_voted, self.rejected, rate)
        self.last_report, self.reported_total = now, total


@dataclass
class Batch:
    """Consumed messages on their way through the stage: the ballots made of them, and the dead letters."""

    messages: list[Message]
    sources: list[Message] = field(default_factory=list)  # the message of each ballot, in ballot order
    ballots: list[Ballot] = field(default_factory=list)
    dead_letters: list[kafka_io.KeyedMessage] = field(default_factory=list)


class VotingStage:
    """The consume -> cast -> store-offsets loop, with retries that never skip a message."""

    def __init__(self, settings: Settings, chooser_weights: str, stop: threading.Event, batch_size: int,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.stop = stop
        self.batch_size = batch_size
        self.weights_spec = chooser_weights
        self.rng = rng or random.Random()
        self.dead_letter_topic = settings.topic(topics.DEAD_LETTERS)
        self.connection = db.connect(settings)
        self.producer = Producer(kafka_io.producer_config(settings))
        self.consumer = Consumer(kafka_io.consumer_config(settings, settings.topic(topics.VOTING_GROUP)))
        self.ballot_box: BallotBox  # built once the election's candidates exist
        self.chooser = self._wait_for_candidates()
        self.progress = Progress(started=time.monotonic(), last_report=time.monotonic())

    def _wait_for_candidates(self) -> CandidateChooser | None:
        """Wait (until stopped) for main.py to create the tables and seed candidates, then build the chooser."""
        announced = False
        while not self.stop.is_set():
            try:
                candidates = db.fetch_candidates(self.connection)
            except psycopg2.errors.UndefinedTable:
                candidates = []
            if candidates:
                self.ballot_box = BallotBox(self.settings, self.connection, self.producer)
                return CandidateChooser(candidates, self.weights_spec, self.rng)
            if not announced:
                logger.info("no candidates yet: waiting for `python main.py` to seed the election")
                announced = True
            self.stop.wait(1.0)
        return None

    def run(self, exit_on_idle_s: float | None) -> None:
        if self.chooser is None:
            return
        # --exit-on-idle counts from the moment partitions are assigned: joining the group takes a moment.
        last_message_at = float("inf")

        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            nonlocal last_message_at
            last_message_at = min(last_message_at, time.monotonic())

        self.consumer.subscribe([self.settings.topic(topics.VOTERS)], on_assign=on_assign)
        logger.info("voting: reading %s as %s", self.settings.topic(topics.VOTERS),
                    self.settings.topic(topics.VOTING_GROUP))
        # A batch is stored by the ballot-box thread (PostgreSQL's work: psycopg2 lets go of the GIL) while this
        # thread reads and prepares the next one and publishes the one before. Each batch is still stored,
        # then published, then its offsets stored, in the order the batches were read.
        storing: tuple[Batch, Future[StoredBatch | None]] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ballot-box") as ballot_box_thread:
            while not self.stop.is_set():
                messages = self.consumer.consume(num_messages=self.batch_size, timeout=0.5)
                now = time.monotonic()
                batch = self.prepare(messages) if messages else None
                finished = self._finish(storing) if storing else True
                storing = None
                if not finished:
                    break  # stopping mid-retry: offsets stay unstored and the batch is replayed on restart
                if batch is not None:
                    last_message_at = now
                    storing = (batch, ballot_box_thread.submit(self._store, batch))
                elif exit_on_idle_s is not None and now - last_message_at >= exit_on_idle_s:
                    logger.info("no new voter for %.0fs: exiting (--exit-on-idle)", exit_on_idle_s)
                    break
                self.progress.report(time.monotonic())
            if storing:
                self._finish(storing)  # the batch read last, unless stopping mid-retry
        self.progress.report(time.monotonic(), force=True)

    def prepare(self, messages: list[Message]) -> Batch:
        """Messages -> a ballot for each voter named, and a dead letter for each message naming none."""
        batch = Batch(messages)
        voter_ids: list[str] = []
        for message in messages:
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    logger.warning("consumer error on %s: %s", message.topic(), message.error())
                continue
            try:
                voter_id = voter_id_of(message.value())
            except InvalidMessage as error:
                batch.dead_letters.append(kafka_io.dead_letter(message, stage=STAGE, reason=str(error)))
                continue
            voter_ids.append(voter_id)
            batch.sources.append(message)
        batch.ballots = [Ballot(voter_id, candidate_id) for voter_id, candidate_id
                         in zip(voter_ids, self.chooser.choose(len(voter_ids)), strict=True)]
        return batch

    def _store(self, batch: Batch) -> StoredBatch | None:
        """The ballot-box thread's part: store the batch's votes (retrying); None if asked to stop."""
        return self._retry(lambda: self.ballot_box.store(batch.ballots))

    def _finish(self, storing: tuple[Batch, Future[StoredBatch | None]]) -> bool:
        """Wait for a batch to be stored, publish its votes and dead letters, store its offsets.

        False if asked to stop before it was done (its offsets are not stored, so it is replayed on restart).
        """
        batch, future = storing
        stored = future.result()
        if stored is None or self._retry(lambda: self.ballot_box.publish(stored)) is None:
            return False
        dead_letters = list(batch.dead_letters)
        for result, message in zip(stored.results, batch.sources, strict=True):
            if result.rejection:
                dead_letters.append(kafka_io.dead_letter(message, stage=STAGE, reason=result.rejection))
            elif result.already_voted:
                self.progress.already_voted += 1
            else:
                self.progress.votes_cast += 1
        if dead_letters:
            if self._retry(lambda: kafka_io.produce_all(self.producer, self.dead_letter_topic, dead_letters)) is None:
                return False
            self.progress.rejected += len(dead_letters)
            logger.warning("rejected %d message(s) to %s, e.g. %s", len(dead_letters), self.dead_letter_topic,
                           dict(dead_letters[0][2])["dlq.reason"].decode())
        self._store_offsets(batch.messages)
        return True

    def _retry(self, action):
        """Run ``action`` until it succeeds; reconnect to PostgreSQL on the way. ``None`` if asked to stop."""
        attempt = 0
        while True:
            try:
                return action()
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
                attempt += 1
                logger.warning("PostgreSQL failed (%s); retrying the batch (attempt %d)", str(error).strip(), attempt)
                self._reconnect()
            except kafka_io.PublishFailed as error:
                attempt += 1
                logger.warning("%s; retrying the batch (attempt %d)", error, attempt)
            if self.stop.wait(RETRY_PAUSE_S):
                return None

    def _reconnect(self) -> None:
        with contextlib.suppress(psycopg2.Error):
            self.connection.close()
        while not self.stop.is_set():
            try:
                self.connection = db.connect(self.settings)
                self.ballot_box.connection = self.connection
                return
            except psycopg2.OperationalError:
                self.stop.wait(RETRY_PAUSE_S)

    def _store_offsets(self, messages: list[Message]) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error() is None:
                key = (message.topic(), message.partition())
                next_offsets[key] = max(next_offsets.get(key, 0), message.offset() + 1)
        try:
            self.consumer.store_offsets(offsets=[TopicPartition(topic, partition, offset)
                                                 for (topic, partition), offset in next_offsets.items()])
        except KafkaException as error:
            # After a rebalance the partition may belong to another process, which replays these messages;
            # replaying is harmless (see the module docstring), so this is not an error.
            logger.info("offsets not stored (%s): another member will replay them", error)

    def close(self) -> None:
        try:
            self.producer.flush(30)
        finally:
            self.consumer.close()  # commits the stored offsets and leaves the group at once
            self.connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voting.py", description=__doc__.split("\n")[0])
    parser.add_argument("--exit-on-idle", type=float, metavar="SECONDS",
                        help="exit after this many seconds without a new voter (for scripts and tests)")
    parser.add_argument("--weights", default=None, metavar="NAME=WEIGHT,...",
                        help='make some candidates likelier, e.g. "Savior Party=3" (names, parties or ids; '
                             "default: uniform, or VOTING_WEIGHTS)")
    parser.add_argument("--batch-size", type=int, default=5000, help="voters consumed and stored per batch")
    parser.add_argument("--seed", type=int, default=None, help="seed the candidate choice (reproducible runs)")
    args = parser.parse_args(argv)

    started = start_long_running()
    if started is None:
        return 1
    settings, stop = started
    weights = args.weights if args.weights is not None else settings.voting_weights
    try:
        stage = VotingStage(settings, weights, stop, args.batch_size, random.Random(args.seed))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        stage.run(args.exit_on_idle)
    finally:
        stage.close()
    return 0
