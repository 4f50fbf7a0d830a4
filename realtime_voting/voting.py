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

Pacing, for an election to watch (``make demo``): ``--rate`` caps the votes cast per second, handed out in steps
of a tenth of a second so that they arrive evenly, not batch by batch; ``--turnout`` is the share of voters who
vote. Who stays home depends on the voter ID and ``--seed`` alone (``stays_home``), not on the order of the
messages, so a replay, another process or ``make demo`` (which prints voters left for the ballot page) agree.
A voter who stays home has no vote stored and can vote on the ballot page.

Bad input never stops the stage: a message that is not JSON, has no usable ``voter_id`` or names a voter who
is not registered goes to ``dead_letter_topic`` with its original bytes and a reason, and creates no vote.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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


def stays_home(voter_id: str, turnout: float, salt: int) -> bool:
    """Whether this voter casts no vote at this turnout (the share of voters who vote), decided by the voter ID
    and the salt alone: the same voters stay home whatever the order, the batch or the process."""
    if turnout >= 1:
        return False
    digest = hashlib.blake2b(f"{salt}:{voter_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 >= turnout


class Pacer:
    """A cap of ``rate`` votes per second (0: none), a token bucket refilled continuously and holding a tenth of a
    second's votes at most: votes are cast evenly, and a pause (no voters for a while) earns no burst after it."""

    STEP_S = 0.1

    def __init__(self, rate: float, clock=time.monotonic) -> None:
        if rate < 0:
            raise ValueError(f"--rate {rate} is below 0 (0 means no cap)")
        self.rate = rate
        self.clock = clock
        self.capacity = max(1.0, rate * self.STEP_S)
        self.allowance = 1.0
        self.updated = clock()

    def votes_allowed(self, most: int) -> int:
        """How many votes, up to ``most``, may be cast now (0: wait ``seconds_to_wait()`` first)."""
        if not self.rate:
            return most
        now = self.clock()
        self.allowance = min(self.capacity, self.allowance + (now - self.updated) * self.rate)
        self.updated = now
        return max(0, min(most, int(self.allowance + 1e-9)))  # + 1e-9: a wait of seconds_to_wait() is enough

    def spend(self, votes: int) -> None:
        if self.rate:
            self.allowance -= votes

    def seconds_to_wait(self) -> float:
        return max(0.0, (1.0 - self.allowance) / self.rate) if self.rate else 0.0


@dataclass
class Progress:
    votes_cast: int = 0
    already_voted: int = 0
    stayed_home: int = 0
    rejected: int = 0
    started: float = 0.0
    last_report: float = 0.0
    reported_total: int = 0

    def report(self, now: float, *, force: bool = False) -> None:
        if not force and now - self.last_report < PROGRESS_EVERY_S:
            return
        total = self.votes_cast + self.already_voted + self.stayed_home + self.rejected
        rate = (total - self.reported_total) / max(now - self.last_report, 1e-9)
        logger.info("votes cast %d, already voted %d, stayed home %d, rejected %d, %.0f messages/s",
                    self.votes_cast, self.already_voted, self.stayed_home, self.rejected, rate)
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
                 seed: int | None = None, rate: float = 0.0, turnout: float = 1.0) -> None:
        if not 0 <= turnout <= 1:
            raise ValueError(f"--turnout {turnout} is not a share between 0 and 1")
        self.settings = settings
        self.stop = stop
        self.batch_size = batch_size
        self.weights_spec = chooser_weights
        self.rng = random.Random(seed)
        self.pacer = Pacer(rate)
        self.turnout = turnout
        self.turnout_salt = seed if seed is not None else self.rng.getrandbits(64)
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
                allowed = self.pacer.votes_allowed(self.batch_size)
                messages = self.consumer.consume(num_messages=allowed, timeout=0.5) if allowed else []
                now = time.monotonic()
                batch = self.prepare(messages) if messages else None
                if batch is not None:
                    self.pacer.spend(sum(ballot.candidate_id is not None for ballot in batch.ballots))
                finished = self._finish(storing) if storing else True
                storing = None
                if not finished:
                    break  # stopping mid-retry: offsets stay unstored and the batch is replayed on restart
                if batch is not None:
                    last_message_at = now
                    storing = (batch, ballot_box_thread.submit(self._store, batch))
                elif not allowed:
                    self.stop.wait(self.pacer.seconds_to_wait())  # pacing (--rate), not synchronisation
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
        batch.ballots = [Ballot(voter_id, None if stays_home(voter_id, self.turnout, self.turnout_salt) else choice)
                         for voter_id, choice in zip(voter_ids, self.chooser.choose(len(voter_ids)), strict=True)]
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
            elif result.stayed_home:
                self.progress.stayed_home += 1
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
    parser.add_argument("--seed", type=int, default=None,
                        help="seed the candidate choice and who stays home (reproducible runs)")
    parser.add_argument("--rate", type=float, default=None, metavar="VOTES_PER_S",
                        help="cast at most this many votes per second, evenly (default: no cap, or VOTING_RATE)")
    parser.add_argument("--turnout", type=float, default=None, metavar="FRACTION",
                        help="the share of voters who vote; the others stay home, free to vote on the ballot page "
                             "(default 1, or VOTING_TURNOUT)")
    args = parser.parse_args(argv)

    started = start_long_running()
    if started is None:
        return 1
    settings, stop = started
    weights = args.weights if args.weights is not None else settings.voting_weights
    rate = args.rate if args.rate is not None else settings.voting_rate
    turnout = args.turnout if args.turnout is not None else settings.voting_turnout
    try:
        stage = VotingStage(settings, weights, stop, args.batch_size, args.seed, rate, turnout)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        stage.run(args.exit_on_idle)
    finally:
        stage.close()
    return 0
