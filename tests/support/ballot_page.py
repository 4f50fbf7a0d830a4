"""The ballot page as a voter uses it, in a headless session of the app (``streamlit_app`` from ``apps``):
open it, sign in, read what it says."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from realtime_voting.core.settings import Settings
from realtime_voting.services.db import query
from realtime_voting.web.dashboard import BALLOT_PAGE


def voters(election: Settings) -> list[tuple[str, str]]:
    """(voter_id, registration_number) of every registered voter."""
    return query(election, "SELECT voter_id, registration_number FROM voters ORDER BY voter_id")


def ballot_page_of(app: AppTest) -> AppTest:
    """A browser session on the ballot page (the app opens on the results page; the first run registers both)."""
    app.run()
    app.switch_page(BALLOT_PAGE).run()
    assert not app.exception, app.exception
    return app


def sign_in(app: AppTest, voter_id: str, registration_number: str) -> AppTest:
    app.text_input(key="sign_in_voter_id").input(voter_id)
    app.text_input(key="sign_in_registration_number").input(registration_number)
    app.button(key="sign_in_submit").click().run()
    assert not app.exception, app.exception
    return app


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def signed_in(app: AppTest) -> bool:
    return any(text.startswith("Signed in as") for text in texts(app.markdown))
