"""A stage started before ``main.py`` waits for the election's candidates (``db.wait_for_candidates``, used by
voting.py and spark_streaming.py), then does its work; asked to stop meanwhile, it stops."""

from __future__ import annotations

import threading

from realtime_voting.core import waiting
from realtime_voting.running import processes
from realtime_voting.services import db


def test_voting_started_before_the_election_is_seeded_waits_for_candidates_then_votes(election, tmp_path):
    log = tmp_path / "voting.log"
    with processes.running(election, "voting.py", "--exit-on-idle", "3", log=log) as voting:
        waiting.until(lambda: "no candidates yet" in log.read_text(), timeout_s=30,
                      what="voting.py saying it waits for candidates", explain=log.read_text)
        seeded = processes.run(election, "main.py", "--source", "offline", "--voters", "50")
        assert seeded.returncode == 0, seeded.stderr
        waiting.until(lambda: voting.poll() is not None, timeout_s=60, what="voting.py done (--exit-on-idle)",
                      explain=log.read_text)
    assert voting.returncode == 0, log.read_text()
    assert db.query(election, "SELECT count(*) FROM votes") == [(50,)]


def test_waiting_for_candidates_ends_without_any_when_asked_to_stop(election):
    stop = threading.Event()
    results: list = []
    # A daemon thread: were the stop ignored, the test would fail below instead of hanging pytest at exit.
    waiter = threading.Thread(target=lambda: results.append(db.wait_for_candidates(election, stop)), daemon=True)
    waiter.start()
    stop.set()
    waiter.join(timeout=10)
    assert results == [None]
