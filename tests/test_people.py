"""Where people come from: the RandomUser client (against a local replay of a recorded response) and the
offline generator of the same shape."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from realtime_voting.seeding import people
from tests.support.ports import free_ports
from tests.support.randomuser import RECORDED


def test_a_recorded_randomuser_person_maps_to_a_voter_as_the_reference_does():
    voter = people.voter_from_randomuser(RECORDED["results"][0])
    assert voter.voter_id == RECORDED["results"][0]["login"]["uuid"]
    assert voter.voter_name == "Jennie Nichols"
    assert voter.date_of_birth == date(1992, 3, 8)
    assert voter.registration_number == "yellowpeacock117"
    assert voter.address_street == "8929 Valwood Pkwy"
    assert (voter.address_city, voter.address_state, voter.address_postcode) == ("Stoke-on-Trent", "Staffordshire",
                                                                                  "ST4 7EX")
    assert voter.picture == "https://randomuser.me/api/portraits/women/21.jpg"
    assert (voter.nationality, voter.registered_age) == ("GB", 17)


def test_a_candidate_gets_the_party_and_the_photo():
    candidate = people.candidate_from_randomuser(RECORDED["results"][1], "Savior Party")
    assert (candidate.candidate_name, candidate.party_affiliation) == ("Harry Pearson", "Savior Party")
    assert candidate.photo_url.endswith("men/44.jpg")
    assert "Savior Party" in candidate.biography


def test_people_are_requested_in_batches_not_one_call_per_person(randomuser):
    source = people.RandomUserSource(randomuser.url, batch_size=4)
    fetched = list(source.people(10))
    assert len(fetched) == 10
    assert [request["results"] for request in randomuser.requests] == [["4"], ["4"], ["2"]]
    assert all(request["nat"] == ["gb"] for request in randomuser.requests)


def test_a_gender_is_asked_of_the_api(randomuser):
    [person] = people.RandomUserSource(randomuser.url).people(1, gender="male")
    assert person["gender"] == "male" and randomuser.requests[0]["gender"] == ["male"]


def test_auto_falls_back_to_the_offline_generator_and_says_why():
    closed_port = free_ports(1)[0]
    source, why = people.choose_source("auto", f"http://127.0.0.1:{closed_port}/api/", seed=1)
    assert isinstance(source, people.OfflineSource)
    assert "offline generator, because" in why and str(closed_port) in why


def test_auto_uses_the_api_when_it_answers(randomuser):
    source, why = people.choose_source("auto", randomuser.url, seed=1)
    assert isinstance(source, people.RandomUserSource) and "reachable" in why


def test_source_randomuser_fails_clearly_when_the_api_is_unreachable():
    with pytest.raises(people.SourceUnavailable, match="RandomUser API"):
        people.choose_source("randomuser", f"http://127.0.0.1:{free_ports(1)[0]}/api/", seed=1)


def test_the_offline_generator_is_reproducible_from_its_seed():
    first = [people.voter_from_randomuser(p) for p in people.OfflineSource(7, today=date(2026, 1, 1)).people(50)]
    again = [people.voter_from_randomuser(p) for p in people.OfflineSource(7, today=date(2026, 1, 1)).people(50)]
    other = [people.voter_from_randomuser(p) for p in people.OfflineSource(8, today=date(2026, 1, 1)).people(50)]
    assert first == again
    assert first != other
    assert len({voter.voter_id for voter in first}) == 50


def test_offline_people_have_the_recorded_shape_adult_ages_and_offline_pictures():
    recorded_keys = {key: set(value) if isinstance(value, dict) else None
                     for key, value in RECORDED["results"][0].items()}
    today = date(2026, 11, 24)
    for person in people.OfflineSource(3, today=today).people(200):
        for key in ("gender", "name", "location", "email", "login", "dob", "registered", "phone", "cell",
                    "picture", "nat"):
            assert key in person
            if recorded_keys[key] and key not in ("location", "login"):
                assert set(person[key]) == recorded_keys[key]
        voter = people.voter_from_randomuser(person)
        assert 18 <= (today - voter.date_of_birth).days // 365 <= 90
        assert voter.picture.startswith("data:image/svg+xml;base64,")


def test_offline_voter_ids_are_version_4_uuids():
    for person in people.OfflineSource(5).people(300):
        voter_id = uuid.UUID(person["login"]["uuid"])
        assert (voter_id.version, voter_id.variant) == (4, uuid.RFC_4122)
        assert str(voter_id) == person["login"]["uuid"]
