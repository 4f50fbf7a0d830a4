"""voting.py --rate and --turnout as pure functions: the pacer against a clock of our own, who stays home."""

from __future__ import annotations

import pytest

from realtime_voting.voting.stage import Pacer, stays_home


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cast_for(pacer: Pacer, clock: Clock, seconds: float, batch_size: int = 5000) -> list[tuple[float, int]]:
    """Run the voting loop's pacing for ``seconds`` with voters always waiting: (time, votes) of every batch."""
    batches = []
    while clock.now < seconds:
        allowed = pacer.votes_allowed(batch_size)
        if allowed:
            pacer.spend(allowed)
            batches.append((clock.now, allowed))
        else:
            clock.now += pacer.seconds_to_wait()
    return batches


def test_the_rate_caps_the_votes_per_second_and_spreads_them_in_small_batches():
    clock = Clock()
    batches = cast_for(Pacer(50, clock), clock, seconds=20)
    assert 50 * 20 - 5 <= sum(votes for _, votes in batches) <= 50 * 20 + 5
    assert max(votes for _, votes in batches) <= 5  # a tenth of a second's votes at a time, never 5000
    for second in range(20):
        in_second = sum(votes for moment, votes in batches if second <= moment < second + 1)
        assert 45 <= in_second <= 55, (second, in_second)


def test_a_slow_rate_casts_one_vote_at_a_time():
    clock = Clock()
    batches = cast_for(Pacer(0.5, clock), clock, seconds=10)
    assert [votes for _, votes in batches] == [1] * 5
    assert [moment for moment, _ in batches] == pytest.approx([0, 2, 4, 6, 8])


def test_a_pause_earns_no_burst_afterwards():
    clock = Clock()
    pacer = Pacer(100, clock)
    clock.now = 60.0  # a minute without voters
    assert pacer.votes_allowed(5000) == 10


def test_no_rate_means_no_cap():
    pacer = Pacer(0)
    assert pacer.votes_allowed(5000) == 5000
    pacer.spend(5000)
    assert pacer.votes_allowed(5000) == 5000 and pacer.seconds_to_wait() == 0


def test_a_negative_rate_is_refused():
    with pytest.raises(ValueError, match="--rate"):
        Pacer(-1)


VOTERS = [f"voter-{number}" for number in range(20_000)]


def test_the_share_of_voters_who_stay_home_follows_the_turnout():
    home = sum(stays_home(voter, 0.7, salt=1) for voter in VOTERS)
    assert 0.28 <= home / len(VOTERS) <= 0.32


def test_who_stays_home_depends_on_the_voter_and_the_salt_alone():
    first = [voter for voter in VOTERS if stays_home(voter, 0.5, salt=7)]
    assert first == [voter for voter in reversed(VOTERS) if stays_home(voter, 0.5, salt=7)][::-1]
    assert first != [voter for voter in VOTERS if stays_home(voter, 0.5, salt=8)]


def test_at_full_turnout_everyone_votes_and_at_none_nobody_does():
    assert not any(stays_home(voter, 1.0, salt=3) for voter in VOTERS)
    assert all(stays_home(voter, 0.0, salt=3) for voter in VOTERS)
