"""A real-time vote-counting pipeline: Kafka + Spark Structured Streaming + PostgreSQL + Streamlit.

The folders are the architecture, and imports run one way, down this list:

- ``running/``   the local stack, child processes and ``make demo``: what runs the stages on one machine
- ``seeding/``, ``voting/``, ``counting/``, ``web/``: the stages, one folder each (the web app's ballot page casts
  votes through ``voting``'s ballot box)
- ``services/``  Kafka, PostgreSQL and the Spark session, and how an entry point starts
- ``core/``      settings, the messages' schemas, the topics' names, waiting

The top-level scripts beside this package (``main.py``, ``voting.py``, ``spark_streaming.py``, ``streamlit_app.py``)
are thin entry points into the stages.
"""
