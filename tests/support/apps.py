"""The Streamlit app, headless (``streamlit.testing.v1.AppTest``), as a browser session of it sees it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from realtime_voting.core.settings import REPO_ROOT, Settings

APP = str(REPO_ROOT / "streamlit_app.py")


@pytest.fixture
def streamlit_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Settings], AppTest]]:
    """``streamlit_app(settings)``: a session of the app run with ``settings`` as its environment (the app reads
    its settings there, as a server started by ``make demo`` does).

    What the app caches for its process (``st.cache_resource``: the vote producer, the results readers) is
    released after the test: a producer kept until the interpreter exits would outlive the test stack's broker
    and log "Connection refused" until then.
    """

    def open_app(settings: Settings) -> AppTest:
        for name, value in settings.as_environment().items():
            monkeypatch.setenv(name, value)
        return AppTest.from_file(APP, default_timeout=60)

    try:
        yield open_app
    finally:
        st.cache_resource.clear()
