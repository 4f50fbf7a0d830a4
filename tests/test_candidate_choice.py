import random
from collections import Counter

import pytest

from realtime_voting.core.schemas import Candidate
from realtime_voting.voting.stage import CandidateChooser, parse_weights

CANDIDATES = [
    Candidate("c-1", "Jennie Nichols", "Management Party", "", "", ""),
    Candidate("c-2", "Harry Pearson", "Savior Party", "", "", ""),
    Candidate("c-3", "Olivia Walker", "Tech Republic Party", "", "", ""),
]


def test_without_weights_every_candidate_is_equally_likely():
    assert parse_weights("", CANDIDATES) == [1.0, 1.0, 1.0]
    counts = Counter(CandidateChooser(CANDIDATES, rng=random.Random(1)).choose(30_000))
    assert set(counts) == {"c-1", "c-2", "c-3"}
    assert all(9_000 < count < 11_000 for count in counts.values())


def test_weights_name_candidates_by_name_party_or_id_case_blind():
    assert parse_weights("savior party=3, c-3=0.5", CANDIDATES) == [1.0, 3.0, 0.5]
    assert parse_weights("Jennie Nichols=2", CANDIDATES) == [2.0, 1.0, 1.0]


def test_a_weighted_candidate_leads():
    counts = Counter(CandidateChooser(CANDIDATES, "Savior Party=3", random.Random(2)).choose(10_000))
    assert counts.most_common(1)[0][0] == "c-2"
    assert counts["c-2"] > 5_000


def test_the_same_seed_gives_the_same_choices():
    assert (CandidateChooser(CANDIDATES, rng=random.Random(5)).choose(100)
            == CandidateChooser(CANDIDATES, rng=random.Random(5)).choose(100))


@pytest.mark.parametrize(
    ("spec", "message"),
    [("Nobody=2", "no candidate or party"), ("Savior Party", "NAME=WEIGHT"), ("c-1=-1", "NAME=WEIGHT"),
     ("c-1=x", "NAME=WEIGHT"), ("c-1=0,c-2=0,c-3=0", "weight of 0")],
)
def test_bad_weights_are_refused_with_a_reason(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_weights(spec, CANDIDATES)


def test_there_must_be_someone_to_vote_for():
    with pytest.raises(ValueError, match="no candidates"):
        CandidateChooser([])
