"""A real-time vote-counting pipeline: Kafka + Spark Structured Streaming + PostgreSQL + Streamlit.

One module per concern; the top-level scripts beside this package are thin entry points:

- ``settings``       every setting, read once from the environment into one ``Settings`` object
- ``local_stack/``   the real Kafka broker and PostgreSQL server that ``make up`` runs without Docker (a package)
- ``kafka_io``       Kafka client configuration, topic administration and readiness checks
- ``db``             the PostgreSQL layer (connections, readiness)
- ``spark_session``  the one place a Spark session is built (master, connector jars, local defaults)
- ``cli``            logging set-up and the stop event shared by every long-running command
- ``demo``           ``make demo``: runs every stage at once with its output in log files
"""
