"""A three-node Kafka cluster loses a node mid-election, and the election goes on: voting and counting keep running
without a restart of either, and the totals equal the ``votes`` table.

What apache/kafka's own replication system test inflicts (``tests/kafkatest/tests/core/replication_test.py``: three
brokers, replication factor 3, ``min.insync.replicas`` 2, the leader's clean and hard shutdown, producers and
consumers running), on the session's cluster (``support/services.cluster_settings``), each test in an election of
its own. Every test leaves the three nodes running and caught up for the next.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from realtime_voting.core import topics, waiting
from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.running.local_stack import KafkaCluster
from realtime_voting.services import db, elections, kafka_io
from tests.support.stages import last_lines, seed
from tests.support.tallies import assert_totals_equal_the_tables, latest

logger = logging.getLogger(__name__)

VOTERS = 3000
RATE = 50  # votes per second: a minute's election, long enough for a rolling restart of three nodes in its middle
# The longest pause a node's hard loss may cause between two stored votes: the controller fences a node that stops
# heartbeating after broker.session.timeout.ms (5 s, broker.FAILOVER), and the partitions it led get new leaders
# then; the voting group's consumer, whose coordinator it was, finds the new one and rejoins the group.
LONGEST_GAP_S = 15


@dataclass
class RunningElection:
    settings: Settings
    cluster: KafkaCluster
    voting: subprocess.Popen
    counting: subprocess.Popen
    voting_log: Path
    counting_log: Path

    def stored(self) -> int:
        return db.query(self.settings, "SELECT count(*) FROM votes")[0][0]

    def counted(self) -> int:
        return sum(result.total_votes for result in latest(self.settings, topics.VOTES_PER_CANDIDATE).values())

    def logs(self) -> str:
        return f"{last_lines(self.voting_log)}\n{last_lines(self.counting_log)}"

    def wait_for_more_votes_than(self, count: int, why: str) -> int:
        return waiting.until(lambda: (stored := self.stored()) > count and stored, timeout_s=60,
                             what=f"more than {count} votes stored {why}", explain=self.logs)

    def wait_for_every_vote(self) -> None:
        """Every voter's vote stored and counted, with voting and counting still the processes started."""
        waiting.until(lambda: self.stored() == VOTERS, timeout_s=120, what=f"all {VOTERS} votes stored",
                      explain=self.logs)
        waiting.until(lambda: self.counted() == VOTERS, timeout_s=180, what=f"all {VOTERS} votes counted",
                      explain=self.logs)
        assert self.voting.poll() is None, f"voting.py exited\n{self.logs()}"
        assert self.counting.poll() is None, f"the counting job exited\n{self.logs()}"

    def longest_gap_s(self) -> float:
        """The longest time between two consecutive stored votes."""
        return db.query(self.settings, """
            SELECT coalesce(extract(epoch FROM max(gap)), 0)::float FROM (
                SELECT voting_time - lag(voting_time) OVER (ORDER BY voting_time) AS gap FROM votes) AS gaps""")[0][0]


@pytest.fixture
def cluster_election(cluster_settings: Settings, tmp_path: Path) -> Iterator[RunningElection]:
    """An election on the three-node cluster, seeded, with voting (at ``RATE``) and counting running; afterwards
    every node runs again and no partition is short of copies, whatever the test did."""
    cluster = KafkaCluster(cluster_settings)
    with elections.throwaway(cluster_settings, "cluster") as election:
        seed(election, "--voters", str(VOTERS))
        voting_log, counting_log = tmp_path / "voting.log", tmp_path / "counting.log"
        with (processes.running(election, "spark_streaming.py", log=counting_log) as counting,
              processes.running(election, "voting.py", "--rate", str(RATE), log=voting_log) as voting):
            try:
                yield RunningElection(election, cluster, voting, counting, voting_log, counting_log)
            finally:
                cluster.start()
                wait_until_fully_replicated(cluster_settings)


def wait_until_fully_replicated(settings: Settings) -> None:
    waiting.until(lambda: not kafka_io.under_replicated_partitions(settings), timeout_s=120,
                  what="every partition's copies in sync again",
                  explain=lambda: f"under-replicated: {kafka_io.under_replicated_partitions(settings)}")


def leader_of(settings: Settings, topic: str, partition: int) -> int:
    metadata = kafka_io.admin_client(settings, kafka_io.ADMIN).list_topics(topic, timeout=10)
    return metadata.topics[topic].partitions[partition].leader


def coordinator_of(settings: Settings, group: str) -> int:
    """The node that coordinates a consumer group (it holds the group's partition of ``__consumer_offsets``)."""
    admin = kafka_io.admin_client(settings, kafka_io.ADMIN)  # kept until the future resolves: its end fails it
    return admin.describe_consumer_groups([group])[group].result(timeout=30).coordinator.id


def test_the_election_goes_on_when_a_partition_leader_is_killed_and_stays_down(cluster_election):
    election = cluster_election
    votes_topic = election.settings.topic(topics.VOTES)
    election.wait_for_more_votes_than(200, "before the loss")
    # The worst node to lose: the voting group's coordinator, which leads a partition of votes_topic too (the
    # three partitions' leaders are spread over the three nodes), so the voting stage loses both at once.
    leader = coordinator_of(election.settings, election.settings.topic(topics.VOTING_GROUP))
    led = [number for number in range(election.settings.kafka_topic_partitions)
           if leader_of(election.settings, votes_topic, number) == leader]
    assert led, f"node {leader}, the voting group's coordinator, leads no partition of {votes_topic}"
    lost = election.cluster.node(leader)

    lost.kill()
    at_loss = election.stored()
    election.wait_for_every_vote()  # with the node still down
    assert not lost.is_running()
    assert at_loss < VOTERS, "the election ended before the node was lost: nothing would be tested"
    assert all(leader_of(election.settings, votes_topic, number) != leader for number in led)
    assert kafka_io.under_replicated_partitions(election.settings), "the lost node's copies are not missing"
    gap = election.longest_gap_s()
    logger.info("the longest gap between two stored votes: %.1f s", gap)
    assert gap < LONGEST_GAP_S, f"votes stopped being stored for {gap:.1f} s"
    assert_totals_equal_the_tables(election.settings)

    lost.start()
    wait_until_fully_replicated(election.settings)  # it came back and caught up


def test_a_rolling_restart_of_every_node_mid_election_keeps_the_totals_exact(cluster_election):
    election = cluster_election
    stored = election.wait_for_more_votes_than(100, "before the restarts")
    for node in election.cluster.nodes:
        assert stored < VOTERS, f"the election ended before {node.name}'s restart: nothing would be tested"
        node.stop()  # a controlled shutdown, as an upgrade does it
        node.start()
        wait_until_fully_replicated(election.settings)  # the next node goes only once this one caught up
        stored = election.wait_for_more_votes_than(stored, f"after {node.name}'s restart")
        logger.info("%s restarted; %d votes stored", node.name, stored)
    election.wait_for_every_vote()
    assert_totals_equal_the_tables(election.settings)


def test_the_quorum_elects_another_controller_when_the_active_one_is_killed(cluster_election):
    election = cluster_election
    election.wait_for_more_votes_than(200, "before the loss")
    controller = waiting.until(election.cluster.active_controller, timeout_s=30, what="an active controller")

    killed_at = election.stored()
    election.cluster.node(controller).kill()
    successor = waiting.until(lambda: (leader := election.cluster.active_controller()) != controller and leader,
                              timeout_s=60, what=f"a controller other than node {controller}")
    election.wait_for_every_vote()
    assert killed_at < VOTERS, "the election ended before the controller was lost: nothing would be tested"
    assert successor != controller
    assert_totals_equal_the_tables(election.settings)
