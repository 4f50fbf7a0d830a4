"""Running the pipeline on one machine: its servers, its child processes, the demo. Above the stages.

- ``local_stack/``  the real Kafka broker and PostgreSQL server that ``make up`` runs without Docker
- ``processes``     the one way to start, run and stop a child process (the stages, the servers, make)
- ``demo``          ``make demo``: every stage at once, their output in log files
"""
