"""Where the election's people come from: the RandomUser API, or an offline generator of the same shape.

Both sources yield RandomUser ``results`` entries (the API's JSON shape), so one mapping turns either into a
``Voter`` or a ``Candidate``. The offline generator needs no network: Faker (``en_GB``, like the API's
``nat=gb``) fills pools of names and places once from ``--seed``, and each person is drawn from them, which is
reproducible and fast enough for a million voters. Its pictures are SVG avatars as data URIs, so the dashboard
shows them without the internet.
"""

from __future__ import annotations

import base64
import functools
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar

import requests
from faker import Faker

from realtime_voting.core.schemas import Candidate, Voter

logger = logging.getLogger(__name__)

RandomUserResult = dict[str, Any]
T = TypeVar("T")

RANDOMUSER_MAX_RESULTS_PER_REQUEST = 5000


class SourceUnavailable(RuntimeError):
    """The RandomUser API could not be used; the message says why."""


class PeopleSource(Protocol):
    name: str

    def people(self, count: int, gender: str | None = None) -> Iterator[RandomUserResult]:
        """Yield ``count`` RandomUser-shaped people (of ``gender``, ``"female"``/``"male"``, when given)."""
        ...


class RandomUserSource:
    """The RandomUser API, asked for people in batches (``results=``), never one HTTP call per person."""

    name = "randomuser"

    def __init__(
        self,
        url: str,
        *,
        nationality: str = "gb",
        batch_size: int = 1000,
        timeout_s: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url
        self.nationality = nationality
        self.batch_size = min(batch_size, RANDOMUSER_MAX_RESULTS_PER_REQUEST)
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    @property
    def _api(self) -> str:
        return f"the RandomUser API at {self.url}"

    def fetch_batch(self, count: int, gender: str | None = None) -> list[RandomUserResult]:
        params: dict[str, str | int] = {"results": count, "nat": self.nationality}
        if gender:
            params["gender"] = gender
        try:
            response = self.session.get(self.url, params=params, timeout=self.timeout_s)
            response.raise_for_status()
            results = response.json()["results"]
        except requests.ConnectionError as error:
            raise SourceUnavailable(f"{self._api} cannot be reached") from error
        except requests.Timeout as error:
            raise SourceUnavailable(f"{self._api} did not answer within {self.timeout_s:.0f}s") from error
        except requests.HTTPError as error:
            raise SourceUnavailable(f"{self._api} answered HTTP {error.response.status_code}") from error
        except (requests.RequestException, ValueError, KeyError, TypeError) as error:
            raise SourceUnavailable(f"{self._api} gave no usable answer: {error}") from error
        if not isinstance(results, list) or not results:
            raise SourceUnavailable(f"the RandomUser API at {self.url} returned no results")
        return results

    def people(self, count: int, gender: str | None = None) -> Iterator[RandomUserResult]:
        remaining = count
        while remaining > 0:
            batch = self.fetch_batch(min(remaining, self.batch_size), gender)
            yield from batch[:remaining]
            remaining -= len(batch[:remaining])


_ADJECTIVES = ("yellow", "silver", "brave", "quiet", "lazy", "happy", "crazy", "orange", "purple", "tiny",
               "heavy", "beautiful", "sad", "organic", "ticklish", "blue", "red", "black", "white", "green")
_ANIMALS = ("peacock", "tiger", "bear", "swan", "wolf", "fish", "rabbit", "koala", "goose", "lion",
            "frog", "duck", "leopard", "butterfly", "elephant", "panda", "gorilla", "mouse", "ostrich", "cat")
_AVATAR_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@functools.lru_cache(maxsize=8192)  # a few thousand initials-and-colour pairs cover a whole electorate
def svg_avatar(initials: str, colour: str) -> str:
    """A round avatar with the person's initials, as a data URI any browser shows offline."""
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128">'
        f'<circle cx="64" cy="64" r="64" fill="{colour}"/>'
        '<text x="64" y="64" dy=".35em" text-anchor="middle" font-family="sans-serif" font-size="52" '
        f'fill="#fff">{initials}</text></svg>'
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _pick(draw: Callable[[], float], options: Sequence[T]) -> T:
    """One of ``options``, uniformly (``draw`` is a seeded ``Random.random``)."""
    return options[int(draw() * len(options))]


def _between(draw: Callable[[], float], low: int, high: int) -> int:
    """An integer from ``low`` to ``high``, both included, uniformly."""
    return low + int(draw() * (high - low + 1))


def _uuid4(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))``, without the object: the version and RFC 4122 variant bits set."""
    bits = (bits & ~(0xF000 << 64) & ~(0xC000 << 48)) | (4 << 76) | (0x8000 << 48)
    digits = f"{bits:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class OfflineSource:
    """RandomUser-shaped people drawn from pools that a seeded Faker fills once: no network, reproducible."""

    name = "offline"
    POOL_SIZE = 500

    def __init__(self, seed: int = 0, *, today: date | None = None) -> None:
        faker = Faker("en_GB")
        faker.seed_instance(seed)
        self.random = random.Random(seed)  # noqa: S311 - made-up people, reproducible from the seed, not a secret
        self.today = today or date.today()
        pool = range(self.POOL_SIZE)
        self.first_names = {"female": [faker.first_name_female() for _ in pool],
                            "male": [faker.first_name_male() for _ in pool]}
        self.last_names = [faker.last_name() for _ in pool]
        self.streets = [faker.street_name() for _ in pool]
        self.places = [(faker.city(), faker.county(), faker.postcode()) for _ in pool]

    def _person(self, gender: str) -> RandomUserResult:
        draw = self.random.random  # one C call per draw: random.choice and randint cost several Python calls each
        first, last = _pick(draw, self.first_names[gender]), _pick(draw, self.last_names)
        city, county, postcode = _pick(draw, self.places)
        born = self.today - timedelta(days=_between(draw, 18 * 366, 90 * 365))
        registered_years = _between(draw, 0, 20)
        avatar = svg_avatar(first[0] + last[0], _pick(draw, _AVATAR_COLOURS))
        return {
            "gender": gender,
            "name": {"title": "Ms" if gender == "female" else "Mr", "first": first, "last": last},
            "location": {
                "street": {"number": _between(draw, 1, 9999), "name": _pick(draw, self.streets)},
                "city": city, "state": county, "country": "United Kingdom", "postcode": postcode,
            },
            "email": f"{first}.{last}@example.com".lower(),
            "login": {
                "uuid": _uuid4(self.random.getrandbits(128)),
                "username": f"{_pick(draw, _ADJECTIVES)}{_pick(draw, _ANIMALS)}{_between(draw, 100, 999)}",
            },
            "dob": {"date": f"{born.isoformat()}T{_between(draw, 0, 23):02d}:00:00.000Z",
                    "age": (self.today - born).days // 365},
            "registered": {"date": f"{self.today.year - registered_years}-01-01T00:00:00.000Z",
                           "age": registered_years},
            "phone": f"01{_between(draw, 100, 999)} {_between(draw, 100000, 999999)}",
            "cell": f"07{_between(draw, 100, 999)} {_between(draw, 100000, 999999)}",
            "picture": {"large": avatar, "medium": avatar, "thumbnail": avatar},
            "nat": "GB",
        }

    def people(self, count: int, gender: str | None = None) -> Iterator[RandomUserResult]:
        for _ in range(count):
            yield self._person(gender or self.random.choice(("female", "male")))


def _birth_date(result: RandomUserResult) -> date:
    return datetime.fromisoformat(result["dob"]["date"].replace("Z", "+00:00")).astimezone(UTC).date()


def voter_from_randomuser(result: RandomUserResult) -> Voter:
    """Map one RandomUser result to a voter, as the reference project does (``login.uuid`` is the id)."""
    location = result["location"]
    return Voter(
        voter_id=result["login"]["uuid"],
        voter_name=f"{result['name']['first']} {result['name']['last']}",
        date_of_birth=_birth_date(result),
        gender=result["gender"],
        nationality=result["nat"],
        registration_number=result["login"]["username"],
        address_street=f"{location['street']['number']} {location['street']['name']}",
        address_city=location["city"],
        address_state=location["state"],
        address_country=location["country"],
        address_postcode=str(location["postcode"]),
        email=result["email"],
        phone_number=result["phone"],
        cell_number=result["cell"],
        picture=result["picture"]["large"],
        registered_age=int(result["registered"]["age"]),
    )


_PLATFORMS = {
    "Management Party": "Balanced budgets, reliable public services and a steady hand on the economy.",
    "Savior Party": "Affordable healthcare, safer streets and help for families who need it most.",
    "Tech Republic Party": "Digital public services, fast broadband everywhere and jobs in new industries.",
}


def candidate_from_randomuser(result: RandomUserResult, party: str) -> Candidate:
    name = f"{result['name']['first']} {result['name']['last']}"
    city = result["location"]["city"]
    return Candidate(
        candidate_id=result["login"]["uuid"],
        candidate_name=name,
        party_affiliation=party,
        biography=f"{name} has lived in {city} for many years and stands for the {party}.",
        campaign_platform=_PLATFORMS.get(party, f"The {party}'s programme for the whole country."),
        photo_url=result["picture"]["large"],
    )


def choose_source(kind: str, settings_url: str, seed: int) -> tuple[PeopleSource, str]:
    """The source for ``--source kind`` (``randomuser``, ``offline`` or ``auto``) and why it was chosen.

    ``auto`` asks the API for one person with a short timeout and falls back to the offline generator.
    ``randomuser`` raises ``SourceUnavailable`` when the API cannot be reached.
    """
    if kind == "offline":
        return OfflineSource(seed), "offline generator (--source offline)"
    online = RandomUserSource(settings_url)
    if kind == "randomuser":
        online.fetch_batch(1)
        return online, f"RandomUser API at {settings_url} (--source randomuser)"
    probe = RandomUserSource(settings_url, timeout_s=3.0, session=online.session)
    try:
        probe.fetch_batch(1)
    except SourceUnavailable as error:
        return OfflineSource(seed), f"offline generator, because {error}"
    return online, f"RandomUser API at {settings_url} (reachable)"
