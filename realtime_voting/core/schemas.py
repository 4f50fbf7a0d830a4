"""The election's records and their Kafka messages, each defined once and used by every stage.

- ``Candidate`` and ``Voter`` are rows of the ``candidates`` and ``voters`` tables.
- The message on ``voters_topic`` is a voter's ID alone (``Voter.to_message``): its one reader, the voting stage,
  reads everything else about the voter from the ``voters`` table, the register of record. So no registration
  number (the ballot page's sign-in secret), contact detail or picture is ever on Kafka.
- ``Vote`` is the message on ``votes_topic``: the ballot (voter, candidate, time) and what the tallies group by
  that only the voter has (state, gender, date of birth). The candidate's name, party and photo are not in it:
  the counting job takes them from the ``candidates`` table. Every consumer parses every byte of every message,
  so a message carries what its consumers need and nothing else.
- ``Result`` is a message on an ``aggregated_*`` topic, keyed by its group: the group's fields (those its topic
  groups by) and ``total_votes``. The counting job writes them; every reader folds them with ``keep_highest`` (a
  count only grows, so a lower total is a replay).
- ``Rejection`` is what the ``dlq.*`` headers of a dead letter say: which stage refused the message, why, and
  where it was.

Messages are UTF-8 JSON objects; dates are ISO 8601 (``YYYY-MM-DD``), times ISO 8601 in UTC with an offset.
Python encodes and decodes every message here, with orjson (``encode``, ``decode``); the counting job, in Spark,
reads votes and writes results with Spark's own JSON functions, its columns built from ``VOTE_FIELDS`` and
``RESULT_GROUP_FIELDS`` (tests keep those lists in step with ``Vote`` and ``Result``).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from dataclasses import dataclass
from datetime import date, datetime

import orjson

PARTIES = ("Management Party", "Savior Party", "Tech Republic Party")


class InvalidMessage(ValueError):
    """A message a stage cannot use; ``str(error)`` is the reason recorded with its dead letter."""


@functools.cache
def field_names(record_type: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(record_type))


@functools.cache
def _getter(record_type: type) -> operator.attrgetter:
    return operator.attrgetter(*field_names(record_type))


def as_row(record: object) -> tuple:
    """The record's values in field order. (``dataclasses.astuple`` deep-copies every value: far slower.)"""
    return _getter(type(record))(record)


def encode(record: object) -> bytes:
    """The record as a compact UTF-8 JSON object: the one serialiser of every message Python writes.

    orjson writes dataclasses, dates and aware datetimes (ISO 8601 with offset) natively, several times faster
    than building a dict for the standard library's json; it was the largest cost of voting.py after the database.
    """
    return orjson.dumps(record)


def decode(message_value: bytes) -> dict:
    """A message's JSON object, parsed (orjson, like ``encode``); ``InvalidMessage`` says why it is not one."""
    try:
        body = orjson.loads(message_value)
    except orjson.JSONDecodeError as error:
        raise InvalidMessage(f"not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidMessage(f"not a JSON object but {type(body).__name__}")
    return body


# How a JSON value of each field type becomes its Python value (strings and numbers are themselves).
_FROM_JSON = {"timestamp": datetime.fromisoformat, "date": date.fromisoformat}


def _from_fields(record_type: type, fields: tuple[tuple[str, str], ...], message_value: bytes):  # noqa: ANN202
    """A record of ``record_type`` from a message whose fields and types ``fields`` lists; a field the message
    leaves out is None."""
    body = decode(message_value)
    values = {}
    for name, kind in fields:
        value = body.get(name)
        values[name] = _FROM_JSON[kind](value) if value is not None and kind in _FROM_JSON else value
    return record_type(**values)


@dataclass(frozen=True)
class Candidate:
    candidate_id: str
    candidate_name: str
    party_affiliation: str
    biography: str
    campaign_platform: str
    photo_url: str


# The voter message's fields: the voting stage needs the ID alone (``voter_id_of``).
VOTER_MESSAGE_FIELDS = ("voter_id",)


@dataclass(frozen=True)
class Voter:
    voter_id: str
    voter_name: str
    date_of_birth: date
    gender: str
    nationality: str
    registration_number: str
    address_street: str
    address_city: str
    address_state: str
    address_country: str
    address_postcode: str
    email: str
    phone_number: str
    cell_number: str
    picture: str
    registered_age: int

    def to_message(self) -> bytes:
        """The voter's message on ``voters_topic``: its ``VOTER_MESSAGE_FIELDS``, ``{"voter_id": ...}``."""
        return encode({name: getattr(self, name) for name in VOTER_MESSAGE_FIELDS})


@dataclass(frozen=True)
class Vote:
    voter_id: str
    candidate_id: str
    voting_time: datetime
    address_state: str
    gender: str
    date_of_birth: date | None

    def to_message(self) -> bytes:
        return encode(self)

    @classmethod
    def from_message(cls, message_value: bytes) -> Vote:
        """A vote read back from ``votes_topic``, as the voting stage wrote it. (The counting job reads votes in
        Spark, from the same ``VOTE_FIELDS``, and sends a message it cannot count to the dead letters.)"""
        return _from_fields(cls, VOTE_FIELDS, message_value)


# The vote message's fields and their JSON types, in message order (a test keeps it in step with ``Vote``).
# A vote without one of VOTE_REQUIRED, or with one of another type, is not counted; the others may be missing.
VOTE_REQUIRED = ("voter_id", "candidate_id", "voting_time")
VOTE_FIELDS: tuple[tuple[str, str], ...] = (
    ("voter_id", "string"),
    ("candidate_id", "string"),
    ("voting_time", "timestamp"),
    ("address_state", "string"),
    ("gender", "string"),
    ("date_of_birth", "date"),
)


def voter_id_of(message_value: bytes | None) -> str:
    """The ``voter_id`` a ``voters_topic`` message names; ``InvalidMessage`` says why there is none.

    Only the id is taken from the message: everything else about the voter is read from the ``voters``
    table, the register of record, so a forged or stale message cannot change who votes where.
    """
    if message_value is None:
        raise InvalidMessage("empty message (no value)")
    body = decode(message_value)
    if "voter_id" not in body:
        raise InvalidMessage("missing voter_id")
    voter_id = body["voter_id"]
    if not isinstance(voter_id, str):
        raise InvalidMessage(f"voter_id must be a string, got {type(voter_id).__name__}")
    if not voter_id.strip() or len(voter_id) > 255:
        raise InvalidMessage("voter_id must be 1 to 255 characters")
    return voter_id


@dataclass(frozen=True)
class Result:
    """A running total on an ``aggregated_*`` topic: the fields of its group that its topic groups by (the
    others None), and how many votes the group has so far. docs/architecture.md ("Counting") says which topic
    groups by what."""

    candidate_id: str | None = None
    candidate_name: str | None = None
    party_affiliation: str | None = None
    photo_url: str | None = None
    state: str | None = None
    gender: str | None = None
    age_group: str | None = None
    window_start: datetime | None = None  # the minute of the votes, on aggregated_votes_per_minute
    window_end: datetime | None = None
    total_votes: int = 0

    @classmethod
    def from_message(cls, message_value: bytes) -> Result:
        return _from_fields(cls, (*RESULT_GROUP_FIELDS, ("total_votes", "long")), message_value)


# Every field a result's group can have, with its type, in message order; ``total_votes`` follows them (a test
# keeps the list in step with ``Result``). The counting job builds its result columns from it.
RESULT_GROUP_FIELDS: tuple[tuple[str, str], ...] = (
    ("candidate_id", "string"),
    ("candidate_name", "string"),
    ("party_affiliation", "string"),
    ("photo_url", "string"),
    ("state", "string"),
    ("gender", "string"),
    ("age_group", "string"),
    ("window_start", "timestamp"),
    ("window_end", "timestamp"),
)


@dataclass(frozen=True)
class Rejection:
    """Why a stage refused a message, and where the message was: the ``dlq.*`` headers of its dead letter
    (Kafka Connect's convention), beside its original key and bytes."""

    stage: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [(header, str(getattr(self, name)).encode()) for name, header in DEAD_LETTER_HEADERS.items()]

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]] | None) -> Rejection:
        by_name = dict(headers or ())
        values = {name: by_name[header].decode() for name, header in DEAD_LETTER_HEADERS.items()}
        return cls(**values | {name: int(values[name]) for name in ("source_partition", "source_offset")})


# Each field of ``Rejection`` -> its dead-letter header. The counting job writes the same headers from it.
DEAD_LETTER_HEADERS = {name: "dlq." + name.replace("_", ".") for name in field_names(Rejection)}


def keep_highest(latest: dict[str, Result], key: str, result: Result) -> None:
    """Fold ``result`` into ``latest`` (group key -> result) unless ``latest`` already holds a higher total for it.

    Within an election a count only grows, but the counting job may send a lower total again: after a restart it
    replays the batch in hand from its checkpoint (in Real-Time Mode up to ``SPARK_CHECKPOINT_SECONDS`` of votes)
    and re-sends the totals of that span from where they stood, until it catches up. Every reader of the results
    (the dashboard, the bench, the tests) folds them through here, so nobody sees a total fall.
    """
    shown = latest.get(key)
    if shown is None or result.total_votes >= shown.total_votes:
        latest[key] = result
