"""The voting stage (``voting.py``): every voter on ``voters_topic`` casts one vote, stored and published once.

Reads ``voters_topic`` in the consumer group ``voting-group`` (run several processes to share the topic's
partitions), picks a candidate for each voter (uniformly at random, or by ``--weights``), and hands the
ballots to the ballot box (``realtime_voting.voting.ballot_box``), which stores them in ``votes`` and publishes them
to ``votes_topic``.

Exactly once, whatever happens (SIGKILL at any instant, the broker or PostgreSQL restarting, a voter
published twice):

- The ``votes`` primary key on ``voter_id`` is the arbiter: a voter's first stored vote is their vote.
- The consumer's offsets are committed only after the batch's votes are committed to PostgreSQL *and*
  acknowledged by the broker: at the end of each batch, synchronously, for the partitions this process holds
  then (``FinishedOffsets``; no background auto-commit, which would lag up to 5 s behind). A crash, a broker
  restart or a rebalance replays at most the batches in hand (read but not finished), and a replayed voter
  finds their stored vote and republishes that same vote.
- Kafka transactions are not needed for this: the database, not Kafka, decides what the vote is, and the
  output is idempotent by key. The counting stage deduplicates ``votes_topic`` by ``voter_id``.

Pacing, for an election to watch (``make demo``): ``--rate`` caps the votes cast per second, handed out in steps
of a tenth of a second so that they arrive evenly, not batch by batch; ``--turnout`` is the share of voters who
vote. Who stays home depends on the voter ID and ``--seed`` alone (``stays_home``), not on the order of the
messages, so a replay, another process or ``make demo`` (which prints voters left for the ballot page) agree.
A voter who stays home has no vote stored and can vote on the ballot page.

It runs until Ctrl-C or SIGTERM. ``--until-end`` stops it once the group has finished every voter published
before it started (the group's committed offsets reach the ends it saw then: with several processes, each stops
when all of them are done), which is how the tests and the bench know voting has finished; ``--exit-on-idle N``
stops it after N seconds without a new voter.

The loop, batch by batch, as small steps (``VotingStage._vote``): consume voters; ``prepare_batch`` turns them
into ballots and dead letters; the ballot-box thread stores the ballots (``BallotBox.store``) and publishes the
stored votes at once (``BallotBox.publish``), while the loop reads the next batch, then publishes the batch's dead
letters and commits its offsets (``next_offsets``, ``FinishedOffsets``). While PostgreSQL or the broker is down
the batch in hand is retried, never skipped, after a pause of 0.5 s doubling to 10 s (``Backoff``), reconnecting
to PostgreSQL; each failed attempt is logged.
The consumer, the producer and the connection are closed on every way out, Ctrl-C and SIGTERM included.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg2
import psycopg2.extensions
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from realtime_voting.core import topics, waiting
from realtime_voting.core.overlapped import StoredBehind
from realtime_voting.core.schemas import Candidate, InvalidMessage, Rejection, voter_id_of
from realtime_voting.core.settings import Settings
from realtime_voting.services import db, kafka_io
from realtime_voting.services.cli import service_wait_option, start_long_running
from realtime_voting.voting.ballot_box import Ballot, BallotBox, CastResult, StoredBatch

logger = logging.getLogger(__name__)

STAGE = "voting"
PROGRESS_EVERY_S = 5.0
T = TypeVar("T")


class BadOption(ValueError):
    """An option of voting.py (or its VOTING_* setting) that cannot be used; the message names it."""


class CandidateChooser:
    """Picks a candidate for each voter: uniformly at random, or with weights (``"Savior Party=3"``)."""

    def __init__(self, candidates: Sequence[Candidate], weights_spec: str = "", rng: random.Random | None = None):
        if not candidates:
            raise ValueError("there are no candidates to vote for")
        self.candidate_ids = [candidate.candidate_id for candidate in candidates]
        self.weights = parse_weights(weights_spec, candidates)
        self.rng = rng or random.Random()  # noqa: S311 - simulated voters' choices, not a secret

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
            raise BadOption(f"--weights item {item!r} is not NAME=WEIGHT with a weight of 0 or more")
        key = name.strip().casefold()
        matches = [index for index, candidate in enumerate(candidates)
                   if key in {candidate.candidate_id.casefold(), candidate.candidate_name.casefold(),
                              candidate.party_affiliation.casefold()}]
        if not matches:
            known = ", ".join(f"{c.candidate_name} ({c.party_affiliation})" for c in candidates)
            raise BadOption(f"--weights names {name.strip()!r}, which is no candidate or party; candidates: {known}")
        for index in matches:
            weights[index] = weight
    if not any(weights):
        raise BadOption("--weights gives every candidate a weight of 0")
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
            raise BadOption(f"--rate {rate} is below 0 (0 means no cap)")
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

    def count(self, results: Sequence[CastResult], *, rejected: int) -> None:
        """Count a finished batch: its ballots' results, and its dead letters (rejected ballots and messages)."""
        for result in results:
            if result.rejection:
                continue  # among the dead letters
            if result.stayed_home:
                self.stayed_home += 1
            elif result.already_voted:
                self.already_voted += 1
            else:
                self.votes_cast += 1
        self.rejected += rejected

    def report(self, now: float, *, force: bool = False) -> None:
        if not force and now - self.last_report < PROGRESS_EVERY_S:
            return
        total = self.votes_cast + self.already_voted + self.stayed_home + self.rejected
        rate = (total - self.reported_total) / max(now - self.last_report, 1e-9)
        logger.info("votes cast %d, already voted %d, stayed home %d, rejected %d, %.0f messages/s",
                    self.votes_cast, self.already_voted, self.stayed_home, self.rejected, rate)
        self.last_report, self.reported_total = now, total


# --- The steps of a batch, as plain functions: consumed messages in, ballots, dead letters and offsets out. ---

@dataclass
class Batch:
    """Consumed messages on their way through the stage: the ballots made of them, and the dead letters."""

    messages: list[Message]
    sources: list[Message] = field(default_factory=list)  # the message of each ballot, in ballot order
    ballots: list[Ballot] = field(default_factory=list)
    dead_letters: list[kafka_io.KeyedMessage] = field(default_factory=list)

    @property
    def votes_to_cast(self) -> int:
        """The ballots with a candidate: what ``--rate`` counts (voters who stay home cost nothing)."""
        return sum(ballot.candidate_id is not None for ballot in self.ballots)


def prepare_batch(messages: Sequence[Message], chooser: CandidateChooser, turnout: float, salt: int) -> Batch:
    """Messages -> a ballot for each voter named (no candidate for one who stays home, see ``stays_home``) and a
    dead letter for each message naming none. Broker events among the messages (errors) make neither."""
    batch = Batch(list(messages))
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
    batch.ballots = [Ballot(voter_id, None if stays_home(voter_id, turnout, salt) else choice)
                     for voter_id, choice in zip(voter_ids, chooser.choose(len(voter_ids)), strict=True)]
    return batch


def dead_letters_of(batch: Batch, stored: StoredBatch) -> list[kafka_io.KeyedMessage]:
    """The batch's dead letters: its messages that name no voter, then its ballots the ballot box rejected."""
    return batch.dead_letters + [kafka_io.dead_letter(message, stage=STAGE, reason=result.rejection)
                                 for result, message in zip(stored.results, batch.sources, strict=True)
                                 if result.rejection]


def next_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    """The offsets to store once ``messages`` are done: the one after the last message, per partition."""
    after_last: dict[tuple[str, int], int] = {}
    for message in messages:
        if message.error() is None:
            key = (message.topic(), message.partition())
            after_last[key] = max(after_last.get(key, 0), message.offset() + 1)
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in after_last.items()]


class FinishedOffsets:
    """The offsets of the finished batches that the group has not committed yet: per partition, the one after the
    last finished message.

    They are committed for the partitions this consumer holds at that moment, the rule librdkafka applies to
    stored offsets too. A partition it no longer holds (a rebalance gave it to another member, or the session
    ran out while the broker was away) is dropped: its next holder, maybe this consumer again, starts from the
    group's last commit and replays the batches after it, which is harmless (a replayed voter republishes their
    stored vote). A commit that failed leaves its offsets here, to go with the next batch's.
    """

    def __init__(self) -> None:
        self.uncommitted: dict[tuple[str, int], int] = {}

    def __bool__(self) -> bool:
        return bool(self.uncommitted)

    def finished(self, offsets: Iterable[TopicPartition]) -> None:
        for offset in offsets:
            self.uncommitted[(offset.topic, offset.partition)] = offset.offset

    def to_commit(self, held: Iterable[TopicPartition]) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """(the offsets to commit: those of the partitions ``held``; the others, dropped from here)."""
        held_keys = {(partition.topic, partition.partition) for partition in held}
        to_commit, dropped = [], []
        for (topic, partition), offset in list(self.uncommitted.items()):
            if (topic, partition) in held_keys:
                to_commit.append(TopicPartition(topic, partition, offset))
            else:
                dropped.append(TopicPartition(topic, partition, offset))
                del self.uncommitted[(topic, partition)]
        return to_commit, dropped

    def committed(self, results: Iterable[TopicPartition]) -> None:
        """Forget what the coordinator committed (a partition's error in ``results`` keeps its offset here)."""
        for result in results:
            key = (result.topic, result.partition)
            if result.error is None and self.uncommitted.get(key) == result.offset:
                del self.uncommitted[key]


def partitions_named(offsets: Iterable[TopicPartition]) -> str:
    """``voters_topic[0] at 42, voters_topic[2] at 7``, for the log."""
    return ", ".join(f"{offset.topic}[{offset.partition}] at {offset.offset}" for offset in offsets)


# --- Retrying while PostgreSQL or the broker is down. ---

class Backoff:
    """The pauses between the attempts at one piece of work: ``FIRST_S``, doubling, ``MOST_S`` at most.

    Each piece of work gets a new ``Backoff``, so a success starts the next failure's pauses from ``FIRST_S``.
    """

    FIRST_S = 0.5
    MOST_S = 10.0

    def __init__(self) -> None:
        self.failures = 0

    def next_pause_s(self) -> float:
        self.failures += 1
        return min(self.MOST_S, self.FIRST_S * 2 ** (self.failures - 1))


POSTGRES_DOWN = (psycopg2.OperationalError, psycopg2.InterfaceError)  # connection lost, refused or closed


def retry(action: Callable[[], T], stop: threading.Event, *,
          after_postgres_failure: Callable[[], None] = lambda: None) -> T | None:
    """``action()``'s value, trying again (with a ``Backoff``, each attempt logged) as long as PostgreSQL or the
    broker fails it; ``None`` if ``stop`` is set meanwhile. Any other error is a bug and is raised.

    The batch in hand is retried as it is, never skipped: its offsets are not committed until it succeeds.
    """
    backoff = Backoff()
    while True:
        try:
            return action()
        except POSTGRES_DOWN as error:
            failure = f"PostgreSQL failed ({db.first_line(error)})"
            after_postgres_failure()
        except kafka_io.PublishFailed as error:
            failure = str(error)
        pause_s = backoff.next_pause_s()
        logger.warning("%s; retrying the batch in %.1fs (attempt %d failed)", failure, pause_s, backoff.failures)
        if stop.wait(pause_s):
            return None


# --- The clients, and the loop. ---

@dataclass
class Clients:
    """The stage's consumer, producer and PostgreSQL connection; the connection is replaced when it breaks."""

    settings: Settings
    consumer: Consumer
    producer: Producer
    connection: psycopg2.extensions.connection

    def reconnected(self) -> psycopg2.extensions.connection:
        """The connection, a new one if the last one was dropped (raises ``psycopg2.OperationalError``)."""
        if self.connection.closed:
            self.connection = db.connect(self.settings)
        return self.connection

    def drop_connection(self) -> None:
        """Close the connection after a failure; the next ``reconnected`` opens a new one."""
        with contextlib.suppress(psycopg2.Error):
            self.connection.close()


@contextlib.contextmanager
def opened_clients(settings: Settings) -> Iterator[Clients]:
    """The stage's clients, each closed on the way out whatever happens (also when a later one fails to open):
    the connection closed, the producer flushed, then the consumer closed, which leaves the group at once, so
    that another process takes its partitions over without waiting."""
    with contextlib.ExitStack() as closing:
        # The stage commits each finished batch's offsets itself (VotingStage._commit_finished), at once: the
        # background auto-commit, every 5 s, would leave up to 5 s of finished batches to replay after a lost
        # session or a crash.
        consumer = Consumer(kafka_io.consumer_config(settings, kafka_io.VOTING, settings.topic(topics.VOTING_GROUP),
                                                     **{"enable.auto.commit": False}))
        closing.callback(consumer.close)
        producer = Producer(kafka_io.producer_config(settings, kafka_io.VOTING))
        closing.callback(producer.flush, 30)
        clients = Clients(settings, consumer, producer, db.connect(settings))
        closing.callback(clients.drop_connection)  # the connection in use at the end, if it was replaced
        yield clients


@dataclass(frozen=True)
class VotingOptions:
    weights: str = ""  # --weights / VOTING_WEIGHTS
    batch_size: int = 5000
    seed: int | None = None
    rate: float = 0.0  # --rate / VOTING_RATE: votes per second, 0 for no cap
    turnout: float = 1.0  # --turnout / VOTING_TURNOUT
    exit_on_idle_s: float | None = None
    until_end: bool = False  # --until-end


# How often --until-end asks the broker for the group's committed offsets while voters keep coming.
END_CHECK_EVERY_S = 1.0
ENDS_TIMEOUT_S = 60.0  # for voters_topic's partitions to exist and have leaders, with --until-end


class VotingStage:
    """Waits for the candidates, then consumes voters and casts their ballots until stopped (or idle, or at the
    end of what was published when it started)."""

    def __init__(self, settings: Settings, options: VotingOptions, stop: threading.Event) -> None:
        if not 0 <= options.turnout <= 1:
            raise BadOption(f"--turnout {options.turnout} is not a share between 0 and 1")
        self.settings = settings
        self.options = options
        self.stop = stop
        self.rng = random.Random(options.seed)  # noqa: S311 - simulated voters, reproducible with --seed, not a secret
        self.pacer = Pacer(options.rate)
        self.turnout_salt = options.seed if options.seed is not None else self.rng.getrandbits(64)
        self.dead_letter_topic = settings.topic(topics.DEAD_LETTERS)
        self.progress = Progress()
        self.offsets = FinishedOffsets()
        self.clients: Clients  # opened by run
        self.ballot_box: BallotBox

    def run(self) -> None:
        """Vote until stopped (SIGINT/SIGTERM set ``stop``), idle or at the end; raises ``BadOption`` for bad
        ``--weights``, ``waiting.TimedOut`` when ``--until-end`` finds no voters topic."""
        candidates = db.wait_for_candidates(self.settings, self.stop)
        if candidates is None:
            return  # stopped before the election was seeded
        chooser = CandidateChooser(candidates, self.options.weights, self.rng)
        with (opened_clients(self.settings) as self.clients,
              StoredBehind(self._cast, thread_name="ballot-box") as ballot_box_thread):
            self.ballot_box = BallotBox(self.settings, self.clients.connection, self.clients.producer)
            self.progress.started = self.progress.last_report = time.monotonic()
            self._vote(chooser, ballot_box_thread)
        self.progress.report(time.monotonic(), force=True)

    def _vote(self, chooser: CandidateChooser, ballot_box_thread: StoredBehind[Batch, StoredBatch | None]) -> None:
        """The consume loop: read a batch, hand it to the ballot-box thread, finish the batch handed over before.

        Batch N is stored and its votes published by the ballot-box thread (PostgreSQL's and the broker's work:
        psycopg2 and librdkafka let go of the GIL) while this thread finishes batch N-1 and reads batch N+1. A
        vote is published as soon as its batch is committed, not when the next batch has been read (up to
        half a second at a trickle). Each batch is still stored, then published, then its offsets committed, in
        the order the batches were read.
        """
        # --exit-on-idle counts from the moment partitions are assigned: joining the group takes a moment.
        last_voter_at = float("inf")

        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            nonlocal last_voter_at
            last_voter_at = min(last_voter_at, time.monotonic())

        voters_topic, group = self.settings.topic(topics.VOTERS), self.settings.topic(topics.VOTING_GROUP)
        ends = self._ends_now(voters_topic) if self.options.until_end else None
        next_end_check = 0.0
        self.clients.consumer.subscribe([voters_topic], on_assign=on_assign)
        logger.info("voting: reading %s as %s", voters_topic, group)
        while not self.stop.is_set():
            allowed = self.pacer.votes_allowed(self.options.batch_size)
            messages = self.clients.consumer.consume(num_messages=allowed, timeout=0.5) if allowed else []
            now = time.monotonic()
            batch = prepare_batch(messages, chooser, self.options.turnout, self.turnout_salt) if messages else None
            if batch is not None:
                self.pacer.spend(batch.votes_to_cast)
                last_voter_at = now
            stored = ballot_box_thread.hand_over(batch)
            if stored is not None and not self._finish(*stored):
                # Stopping mid-retry: neither this batch's offsets nor a later one's are committed, so both are
                # replayed on restart (a replayed voter republishes their stored vote).
                return
            if not allowed:
                self.stop.wait(self.pacer.seconds_to_wait())  # pacing (--rate), not synchronisation
            elif (batch is None and self.options.exit_on_idle_s is not None
                  and now - last_voter_at >= self.options.exit_on_idle_s):
                logger.info("no new voter for %.0fs: exiting (--exit-on-idle)", self.options.exit_on_idle_s)
                break
            elif ends is not None and (batch is None or now >= next_end_check):
                next_end_check = now + END_CHECK_EVERY_S
                if self._group_reached(voters_topic, ends):
                    logger.info("the voting group has finished %s up to where it ended at start: exiting "
                                "(--until-end)", voters_topic)
                    break
            self.progress.report(time.monotonic())
        stored = ballot_box_thread.hand_over(None)  # the batch read last, unless stopping mid-retry
        if stored is not None:
            self._finish(*stored)
        if self.offsets:
            self._commit_finished()  # a commit that failed, tried once more before the consumer closes

    def _ends_now(self, voters_topic: str) -> dict[int, int]:
        """The end offset of each partition of the voters topic, as it is now: where ``--until-end`` stops."""
        ends = waiting.until(lambda: kafka_io.partition_ends(self.clients.consumer, voters_topic),
                             timeout_s=ENDS_TIMEOUT_S, stop=self.stop, every_s=1.0,
                             what=f"{voters_topic} to exist, for --until-end (has main.py published voters?)")
        logger.info("voting until the end of %s as it is now: %d voters (--until-end)", voters_topic,
                    sum((ends or {}).values()))
        return ends or {}

    def _group_reached(self, voters_topic: str, ends: dict[int, int]) -> bool:
        """Whether the voting group (every worker of it) has committed each partition up to ``ends``: all the
        voters published before this process started have had their turn, and their votes are stored."""
        partitions = [TopicPartition(voters_topic, number) for number, end in ends.items() if end > 0]
        if not partitions:
            return True
        try:
            committed = self.clients.consumer.committed(partitions, timeout=10)
        except KafkaException as error:  # the broker is away: not known yet, asked again in a moment
            logger.debug("the group's offsets are not known yet: %s", error)
            return False
        return all(partition.offset >= ends[partition.partition] for partition in committed)

    def _cast(self, batch: Batch) -> StoredBatch | None:
        """The ballot-box thread's part: store the batch's votes, reconnecting and retrying while PostgreSQL is
        down, then publish them, retrying while the broker is; None if asked to stop first (the batch is then not
        marked done, and its offsets are not committed)."""

        def store() -> StoredBatch:
            self.ballot_box.connection = self.clients.reconnected()
            return self.ballot_box.store(batch.ballots)

        stored = retry(store, self.stop, after_postgres_failure=self.clients.drop_connection)
        if stored is None or retry(lambda: self.ballot_box.publish(stored), self.stop) is None:
            return None
        return stored

    def _finish(self, batch: Batch, stored: StoredBatch | None) -> bool:
        """Publish a stored and published batch's dead letters, then commit its offsets. False if asked to stop
        before the broker acknowledged them all: the offsets stay uncommitted and the batch is replayed on
        restart."""
        if stored is None:
            return False
        dead_letters = dead_letters_of(batch, stored)
        if dead_letters:
            produced = retry(lambda: kafka_io.produce_all(self.clients.producer, self.dead_letter_topic,
                                                          dead_letters), self.stop)
            if produced is None:
                return False
            logger.warning("rejected %d message(s) to %s, e.g. %s", len(dead_letters), self.dead_letter_topic,
                           Rejection.from_headers(dead_letters[0][2]).reason)
        self.progress.count(stored.results, rejected=len(dead_letters))
        self.offsets.finished(next_offsets(batch.messages))
        self._commit_finished()
        return True

    def _commit_finished(self) -> None:
        """Commit the finished batches' offsets of the partitions this consumer holds now, and wait for the group
        coordinator's answer (a round trip per batch, while the ballot-box thread casts the next one).

        So what a broker restart, a rebalance or a crash replays is only the batches in hand, not the batches
        finished since the last background commit. A commit that fails (the group is rebalancing) is retried
        with the next batch's: meanwhile a restart replays a few more batches, harmlessly.
        """
        to_commit, dropped = self.offsets.to_commit(self.clients.consumer.assignment())
        if dropped:
            logger.info("finished batches not committed for %s: the partitions are no longer this process's "
                        "(a rebalance, or a session lost while the broker was away); whoever holds them next "
                        "replays them from the group's last commit", partitions_named(dropped))
        if not to_commit:
            return
        try:
            committed = self.clients.consumer.commit(offsets=to_commit, asynchronous=False)
        except KafkaException as error:
            logger.info("offsets not committed yet for %s (%s): retried with the next batch",
                        partitions_named(to_commit), error.args[0].str())
            return
        self.offsets.committed(committed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voting.py", description=__doc__.split("\n")[0],
                                     parents=[service_wait_option()])
    parser.add_argument("--exit-on-idle", type=float, metavar="SECONDS",
                        help="exit after this many seconds without a new voter (for scripts)")
    parser.add_argument("--until-end", action="store_true",
                        help="exit once the voting group has finished every voter published before this process "
                             "started (for scripts, tests and the bench: no idle wait)")
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

    started = start_long_running(kafka_io.VOTING, args.wait_for_services)
    if started is None:
        return 1
    settings, stop = started
    options = VotingOptions(
        weights=args.weights if args.weights is not None else settings.voting_weights,
        batch_size=args.batch_size,
        seed=args.seed,
        rate=args.rate if args.rate is not None else settings.voting_rate,
        turnout=args.turnout if args.turnout is not None else settings.voting_turnout,
        exit_on_idle_s=args.exit_on_idle,
        until_end=args.until_end,
    )
    try:
        VotingStage(settings, options, stop).run()
    except (BadOption, waiting.TimedOut) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
