"""A local replay of the RandomUser API from a recorded response, as a fixture (``randomuser``) and a class for
the tests that pass its address to a script (``RandomUserReplay``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

RECORDED = json.loads((Path(__file__).parent.parent / "data" / "randomuser_gb.json").read_text())


class RandomUserReplay:
    """A local HTTP server answering like the RandomUser API from the recorded response: each request gets the
    next ``results=`` people (of ``gender=`` when asked), so people are not repeated until the recording is."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []
        self.cursor = 0
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                params = parse_qs(urlparse(self.path).query)
                replay.requests.append(params)
                body = json.dumps({"results": replay.next_people(int(params["results"][0]),
                                                                 params.get("gender", [None])[0]),
                                   "info": RECORDED["info"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_people(self, count: int, gender: str | None) -> list[dict]:
        chosen = []
        recorded = RECORDED["results"]
        while len(chosen) < count:
            person = recorded[self.cursor % len(recorded)]
            self.cursor += 1
            if gender is None or person["gender"] == gender:
                chosen.append(person)
        return chosen

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def randomuser() -> Iterator[RandomUserReplay]:
    replay = RandomUserReplay()
    try:
        yield replay
    finally:
        replay.close()
