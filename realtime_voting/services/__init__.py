"""The services the stages talk to: Kafka, PostgreSQL and Spark. Imports ``core`` only.

- ``kafka_io``        Kafka clients' configuration, producing, reading to the end, readiness checks
- ``kafka_security``  the stages' Kafka users and ACLs (``KAFKA_SECURITY_PROTOCOL=SASL_SSL``)
- ``db``              the PostgreSQL layer: the tables, the queries the stages share, connections that close
- ``spark_session``   the one place a Spark session is built (master, connector jars, local defaults)
- ``elections``       an election's topics, schema and users made and removed (the tests' and bench's throwaways)
- ``cli``             how an entry point starts: logging, the stop event on SIGINT/SIGTERM, the services awaited
"""
