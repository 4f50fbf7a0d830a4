"""What the tests share, so that test modules never import each other.

Fixture modules, registered in ``tests/conftest.py`` with ``pytest_plugins``:

- ``services``: the local Kafka and PostgreSQL of the test session (``stack_settings``), and the markers a test
  gets from the fixtures it uses.
- ``isolation``: what a test makes on that stack, of its own and removed after it, also when it fails: an
  ``election`` (schema and topics) and topics (``new_topic``).
- ``spark``: one Spark session for the tests of the counting job's transformations.
- ``randomuser``: a local replay of the RandomUser API (``randomuser``), also importable as ``RandomUserReplay``.
- ``apps``: the Streamlit app, headless (``streamlit_app``), with what it caches released after each test.

Plain helpers, imported by the tests: ``ports`` (free ports), ``stages`` (the pipeline's scripts run as a user
runs them), ``browser`` (headless Chromium), ``ballot_page`` (the ballot page in AppTest: signing in, reading
its texts). The project's own helpers are used as they are:
``realtime_voting.core.waiting.until``, ``kafka_io.read_to_end``, ``db.query``, ``elections``, ``processes``.
"""
