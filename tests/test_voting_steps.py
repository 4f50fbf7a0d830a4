"""The voting stage's steps without Kafka or PostgreSQL: stand-in messages and clients, plain values in and out."""

from __future__ import annotations

import random
import threading
from dataclasses import replace
from types import SimpleNamespace

import psycopg2
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from realtime_voting.core import topics
from realtime_voting.core.overlapped import StoredBehind
from realtime_voting.core.schemas import Candidate
from realtime_voting.core.settings import Settings
from realtime_voting.services import kafka_io
from realtime_voting.voting import stage as voting
from realtime_voting.voting.ballot_box import Ballot, CastResult, StoredBatch
from realtime_voting.voting.stage import (
    Backoff,
    BadOption,
    CandidateChooser,
    FinishedOffsets,
    Progress,
    VotingOptions,
    VotingStage,
    dead_letters_of,
    next_offsets,
    opened_clients,
    prepare_batch,
    retry,
    stays_home,
)

CANDIDATES = [Candidate("c-1", "Jennie Nichols", "Management Party", "", "", "")]
VOTERS_TOPIC = topics.VOTERS


class StandInError:
    def __init__(self, code: int) -> None:
        self._code = code

    def code(self) -> int:
        return self._code


class StandInMessage:
    """What the voting stage reads of a ``confluent_kafka.Message``."""

    def __init__(self, value: bytes | None, offset: int, partition: int = 0, error: StandInError | None = None):
        self._value, self._offset, self._partition, self._error = value, offset, partition, error

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes:
        return f"key-{self._offset}".encode()

    def topic(self) -> str:
        return VOTERS_TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> StandInError | None:
        return self._error


def voter(voter_id: str, offset: int, partition: int = 0) -> StandInMessage:
    return StandInMessage(f'{{"voter_id": "{voter_id}"}}'.encode(), offset, partition)


class StopThatNeverWaits(threading.Event):
    """A stop event whose waits return at once (and are recorded): retries and pacing without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_a_batch_has_a_ballot_per_voter_and_a_dead_letter_per_message_naming_none():
    messages = [voter("v-1", 0), StandInMessage(b"{not json", 1), voter("v-2", 2),
                StandInMessage(None, 3, error=StandInError(KafkaError._PARTITION_EOF))]
    batch = prepare_batch(messages, CandidateChooser(CANDIDATES, rng=random.Random(1)), turnout=1.0, salt=0)
    assert batch.ballots == [Ballot("v-1", "c-1"), Ballot("v-2", "c-1")]
    assert [message.offset() for message in batch.sources] == [0, 2]
    [(key, value, headers)] = batch.dead_letters
    assert (key, value) == (b"key-1", b"{not json")
    assert dict(headers)["dlq.reason"].startswith(b"not valid JSON")
    assert batch.votes_to_cast == 2


def test_a_voter_who_stays_home_gets_a_ballot_without_a_candidate_and_costs_no_vote():
    voter_ids = [f"v-{number}" for number in range(200)]
    batch = prepare_batch([voter(voter_id, offset) for offset, voter_id in enumerate(voter_ids)],
                          CandidateChooser(CANDIDATES), turnout=0.5, salt=9)
    home = {voter_id for voter_id in voter_ids if stays_home(voter_id, 0.5, salt=9)}
    assert {ballot.voter_id for ballot in batch.ballots if ballot.candidate_id is None} == home
    assert batch.votes_to_cast == 200 - len(home)


def test_rejected_ballots_become_dead_letters_after_the_messages_naming_no_voter():
    batch = prepare_batch([voter("v-1", 0), StandInMessage(b"[]", 1), voter("nobody", 2)],
                          CandidateChooser(CANDIDATES), turnout=1.0, salt=0)
    stored = StoredBatch([CastResult(batch.ballots[0]),
                          CastResult(batch.ballots[1], rejection="voter 'nobody' is not registered")], [])
    dead = dead_letters_of(batch, stored)
    assert [(key, dict(headers)["dlq.source.offset"]) for key, _, headers in dead] == [
        (b"key-1", b"1"), (b"key-2", b"2")]
    assert dict(dead[1][2])["dlq.reason"] == b"voter 'nobody' is not registered"


def test_the_offsets_stored_are_the_next_after_each_partitions_last_message():
    offsets = next_offsets([voter("a", 5, partition=0), voter("b", 9, partition=1), voter("c", 7, partition=0),
                            StandInMessage(None, 99, partition=2, error=StandInError(KafkaError._PARTITION_EOF))])
    assert sorted((tp.partition, tp.offset) for tp in offsets) == [(0, 8), (1, 10)]


def test_progress_counts_each_result_once_and_the_dead_letters_as_rejected():
    ballot = Ballot("v", "c-1")
    progress = Progress()
    progress.count([CastResult(ballot, vote=object()), CastResult(ballot, vote=object(), already_voted=True),
                    CastResult(Ballot("v", None)), CastResult(ballot, rejection="no")], rejected=3)
    assert (progress.votes_cast, progress.already_voted, progress.stayed_home, progress.rejected) == (1, 1, 1, 3)


def test_the_back_off_doubles_from_half_a_second_to_ten_seconds_at_most():
    backoff = Backoff()
    assert [backoff.next_pause_s() for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert backoff.failures == 8


def test_a_failing_action_is_retried_with_the_back_off_until_it_succeeds(caplog):
    failures = [psycopg2.OperationalError("server closed the connection"), kafka_io.PublishFailed("1 of 1 lost"),
                psycopg2.InterfaceError("connection already closed")]
    dropped = []

    def action() -> str:
        if failures:
            raise failures.pop(0)
        return "stored"

    stop = StopThatNeverWaits()
    assert retry(action, stop, after_postgres_failure=lambda: dropped.append(True)) == "stored"
    assert stop.waits == [0.5, 1, 2]
    assert dropped == [True, True]  # the connection is dropped after each PostgreSQL failure, not a broker one
    assert "attempt 3 failed" in caplog.text and "server closed the connection" in caplog.text
    # A success resets the back-off: the next piece of work starts from half a second again.
    failures.append(kafka_io.PublishFailed("again"))
    retry(action, stop)
    assert stop.waits[-1] == 0.5


def test_a_retry_gives_up_when_asked_to_stop_and_a_bug_is_not_retried():
    stop = StopThatNeverWaits()
    stop.set()

    def broker_down() -> None:
        raise kafka_io.PublishFailed("broker down")

    assert retry(broker_down, stop) is None
    with pytest.raises(ZeroDivisionError):
        retry(lambda: 1 / 0, StopThatNeverWaits())


def test_batches_come_back_stored_in_the_order_they_were_handed_over():
    stored_in: list[str] = []

    def store(batch: list[int]) -> int:
        stored_in.append(threading.current_thread().name)
        return sum(batch)

    with StoredBehind(store, thread_name="storing") as storing:
        assert storing.hand_over([1, 2]) is None
        assert storing.being_stored == [1, 2]
        assert storing.hand_over([3]) == ([1, 2], 3)
        assert storing.hand_over(None) == ([3], 3)
        assert storing.being_stored is None and storing.hand_over(None) is None
    assert all(name.startswith("storing") for name in stored_in)


def test_a_failed_store_is_raised_to_the_caller_that_collects_its_batch():
    def store(batch: str) -> str:
        raise psycopg2.OperationalError(f"{batch} not stored")

    with StoredBehind(store, thread_name="storing") as storing:
        storing.hand_over("first")
        with pytest.raises(psycopg2.OperationalError, match="first not stored"):
            storing.hand_over("second")


UNREACHABLE = replace(Settings.from_env({}), kafka_bootstrap_servers="localhost:1", postgres_port=1)


def test_the_stage_is_built_without_touching_any_service_and_refuses_a_bad_turnout():
    VotingStage(UNREACHABLE, VotingOptions(), threading.Event())  # nothing to wait for: no connection is made
    with pytest.raises(BadOption, match="--turnout"):
        VotingStage(UNREACHABLE, VotingOptions(turnout=1.5), threading.Event())
    with pytest.raises(BadOption, match="--rate"):
        VotingStage(UNREACHABLE, VotingOptions(rate=-1), threading.Event())


class StandInConsumer:
    """Holds partitions 0-2 of the voters topic; ``losing_at``: the ``consume`` call (1 for the first) from which it
    holds none, as when its session ran out while the broker was away; ``failing_commits``: how many commits
    fail first, as while the group rebalances."""

    def __init__(self, batches: list[list[StandInMessage]], events: list[str], *, losing_at: int | None = None,
                 failing_commits: int = 0) -> None:
        self.batches, self.events = batches, events
        self.losing_at, self.failing_commits = losing_at, failing_commits
        self.held = [TopicPartition(VOTERS_TOPIC, number) for number in range(3)]
        self.consumed = 0
        self.closed = False

    def subscribe(self, topics, on_assign) -> None:
        on_assign(self, [])

    def consume(self, num_messages: int, timeout: float) -> list[StandInMessage]:
        self.consumed += 1
        if self.consumed == self.losing_at:
            self.held = []
        return self.batches.pop(0) if self.batches else []

    def assignment(self) -> list[TopicPartition]:
        return list(self.held)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        assert not asynchronous, "offsets are committed before the next batch is finished"
        if self.failing_commits:
            self.failing_commits -= 1
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        self.events.append(f"offsets {sorted((tp.partition, tp.offset) for tp in offsets)}")
        return offsets

    def close(self) -> None:
        self.closed = True


class StandInProducer:
    def __init__(self) -> None:
        self.flushed = False

    def flush(self, timeout: float) -> int:
        self.flushed = True
        return 0


class StandInConnection:
    closed = 0

    def close(self) -> None:
        self.closed = 1


def test_opening_the_clients_closes_those_already_open_when_one_fails(monkeypatch):
    consumer, producer = StandInConsumer([], []), StandInProducer()
    monkeypatch.setattr(voting, "Consumer", lambda config: consumer)
    monkeypatch.setattr(voting, "Producer", lambda config: producer)

    def postgres_down(settings):
        raise psycopg2.OperationalError("connection refused")

    monkeypatch.setattr(voting.db, "connect", postgres_down)
    with pytest.raises(psycopg2.OperationalError), opened_clients(UNREACHABLE):
        pytest.fail("the clients were opened although PostgreSQL refused")
    assert consumer.closed and producer.flushed


def test_the_clients_are_closed_when_the_stage_is_interrupted(monkeypatch):
    consumer, producer, connection = StandInConsumer([], []), StandInProducer(), StandInConnection()
    monkeypatch.setattr(voting, "Consumer", lambda config: consumer)
    monkeypatch.setattr(voting, "Producer", lambda config: producer)
    monkeypatch.setattr(voting.db, "connect", lambda settings: connection)
    with pytest.raises(KeyboardInterrupt), opened_clients(UNREACHABLE):
        raise KeyboardInterrupt  # a second Ctrl-C
    assert consumer.closed and producer.flushed and connection.closed


class StandInBallotBox:
    """Stores and publishes into ``events``; the first ``publish_failures`` publications fail."""

    def __init__(self, events: list[str], publish_failures: int) -> None:
        self.events, self.publish_failures = events, publish_failures
        self.connection = None

    def store(self, ballots: list[Ballot]) -> StoredBatch:
        self.events.append(f"stored {[ballot.voter_id for ballot in ballots]}")
        return StoredBatch([CastResult(ballot, vote=object()) for ballot in ballots], [])

    def publish(self, stored: StoredBatch) -> int:
        if self.publish_failures:
            self.publish_failures -= 1
            raise kafka_io.PublishFailed("the broker is restarting")
        self.events.append(f"published {[result.ballot.voter_id for result in stored.results]}")
        return 0


def run_stage(monkeypatch, batches: list[list[StandInMessage]], *, publish_failures: int = 0,
              stop: threading.Event | None = None, events: list[str] | None = None,
              consumer_type: type[StandInConsumer] = StandInConsumer,
              **consumer_faults: int) -> tuple[list[str], VotingStage]:
    """Run the stage's loop on stand-in clients until it is idle; the order of what happened, and the stage."""
    events = [] if events is None else events
    consumer = consumer_type(batches, events, **consumer_faults)
    producer, connection = StandInProducer(), StandInConnection()
    monkeypatch.setattr(voting, "Consumer", lambda config: consumer)
    monkeypatch.setattr(voting, "Producer", lambda config: producer)
    monkeypatch.setattr(voting.db, "connect", lambda settings: connection)
    monkeypatch.setattr(voting.db, "wait_for_candidates", lambda settings, stop: CANDIDATES)
    monkeypatch.setattr(voting, "BallotBox", lambda settings, connection, producer: StandInBallotBox(
        events, publish_failures))
    stage = VotingStage(UNREACHABLE, VotingOptions(exit_on_idle_s=0), stop or StopThatNeverWaits())
    stage.run()
    assert consumer.closed and producer.flushed and connection.closed
    return events, stage


def test_each_batch_is_stored_then_published_then_its_offsets_committed_in_order(monkeypatch):
    events, stage = run_stage(monkeypatch, [[voter("a", 0), voter("b", 1)], [voter("c", 2)]])
    assert (events.index("stored ['a', 'b']") < events.index("published ['a', 'b']")
            < events.index("offsets [(0, 2)]"))
    assert events.index("stored ['c']") < events.index("published ['c']") < events.index("offsets [(0, 3)]")
    assert events.index("stored ['a', 'b']") < events.index("stored ['c']")
    assert events.index("offsets [(0, 2)]") < events.index("offsets [(0, 3)]")
    assert stage.progress.votes_cast == 3


class Happenings(list):
    """The events list, which also says when a given event has happened."""

    def __init__(self, awaited: str) -> None:
        super().__init__()
        self.awaited, self.happened = awaited, threading.Event()

    def append(self, event: str) -> None:
        super().append(event)
        if event == self.awaited:
            self.happened.set()


def test_a_batchs_votes_are_published_while_the_next_batch_is_still_being_read(monkeypatch):
    """A vote waits for its own batch's commit, not for the next batch to fill (up to half a second at a trickle):
    the read after batch a does not return until a's votes are published."""
    events = Happenings("published ['a']")
    published_during_the_read = []

    class SlowToFill(StandInConsumer):
        def consume(self, num_messages: int, timeout: float) -> list[StandInMessage]:
            if self.consumed == 1:  # the read that follows batch a's hand-over
                published_during_the_read.append(events.happened.wait(timeout=10))
            return super().consume(num_messages, timeout)

    run_stage(monkeypatch, [[voter("a", 0)], [voter("b", 1)]], events=events, consumer_type=SlowToFill)
    assert published_during_the_read == [True]
    assert events.index("published ['a']") < events.index("offsets [(0, 1)]") < events.index("offsets [(0, 2)]")


def test_offsets_wait_for_a_publication_that_failed_until_it_is_retried(monkeypatch):
    events, _ = run_stage(monkeypatch, [[voter("a", 0)]], publish_failures=2)
    assert events == ["stored ['a']", "published ['a']", "offsets [(0, 1)]"]


def test_a_commit_that_failed_goes_with_the_next_batchs(monkeypatch):
    events, stage = run_stage(monkeypatch, [[voter("a", 0, partition=0)], [voter("b", 0, partition=1)]],
                              failing_commits=1)
    assert [event for event in events if event.startswith("offsets")] == ["offsets [(0, 1), (1, 1)]"]
    assert not stage.offsets


def test_a_batch_finished_after_its_partitions_were_lost_commits_nothing(monkeypatch, caplog):
    # The first batch is finished while the partitions are held; the second one after the session ran out (the
    # third consume), so its partition's next holder replays it from the first batch's commit.
    events, stage = run_stage(monkeypatch, [[voter("a", 0)], [voter("b", 1)]], losing_at=3)
    assert events.index("published ['a']") < events.index("offsets [(0, 1)]")
    assert "published ['b']" in events
    assert [event for event in events if event.startswith("offsets")] == ["offsets [(0, 1)]"]
    assert not stage.offsets
    assert f"finished batches not committed for {VOTERS_TOPIC}[0] at 2" in caplog.text


def test_finished_offsets_are_committed_for_the_partitions_held_and_dropped_for_the_others():
    offsets = FinishedOffsets()
    offsets.finished(next_offsets([voter("a", 7, partition=0), voter("b", 9, partition=1)]))
    offsets.finished(next_offsets([voter("c", 8, partition=0)]))  # a later batch: its offset replaces the first
    to_commit, dropped = offsets.to_commit([TopicPartition(VOTERS_TOPIC, 0), TopicPartition(VOTERS_TOPIC, 2)])
    assert [(tp.partition, tp.offset) for tp in to_commit] == [(0, 9)]
    assert [(tp.partition, tp.offset) for tp in dropped] == [(1, 10)]
    # Until the commit is answered partition 0's offset stays; partition 1's was dropped for good.
    again, dropped_again = offsets.to_commit([TopicPartition(VOTERS_TOPIC, 0), TopicPartition(VOTERS_TOPIC, 1)])
    assert ([(tp.partition, tp.offset) for tp in again], dropped_again) == ([(0, 9)], [])
    offsets.committed(to_commit)
    assert not offsets


def test_a_commit_forgets_only_the_offsets_it_committed():
    offsets = FinishedOffsets()
    offsets.finished([TopicPartition(VOTERS_TOPIC, 0, 5), TopicPartition(VOTERS_TOPIC, 1, 3)])
    # What a commit returns for a partition it could not commit (TopicPartition.error is read-only).
    failed = SimpleNamespace(topic=VOTERS_TOPIC, partition=1, offset=3,
                             error=KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    offsets.finished([TopicPartition(VOTERS_TOPIC, 0, 6)])  # finished while the commit of offset 5 was on its way
    offsets.committed([TopicPartition(VOTERS_TOPIC, 0, 5), failed])
    assert offsets.uncommitted == {(VOTERS_TOPIC, 0): 6, (VOTERS_TOPIC, 1): 3}


class StoppedDuringTheFirstPause(StopThatNeverWaits):
    """SIGTERM arrives while the stage pauses before a retry."""

    def wait(self, timeout: float | None = None) -> bool:
        self.set()
        return super().wait(timeout)


def test_a_batch_left_mid_retry_stores_no_offsets(monkeypatch):
    events, _ = run_stage(monkeypatch, [[voter("a", 0)], [voter("b", 1)]], publish_failures=100,
                          stop=StoppedDuringTheFirstPause())
    assert not any(event.startswith(("offsets", "published")) for event in events)
