"""``make bench`` (``python -m bench``): the pipeline measured end to end, beside the physical references of the
same machine. See bench/README.md for the figures and how each is measured.

- ``__main__``: the arguments, the phases in order, the table and the JSON line.
- ``phases``: each measured phase, running the pipeline's own scripts in an election of its own.
- ``references``: PostgreSQL's COPY and Kafka's own producer benchmark, on the same services.
- ``stages``: the pipeline's scripts as processes, each with its peak memory.
- ``results``: the counting job's results read from their topics, and checked against the votes table.
"""


class BenchFailed(RuntimeError):
    """A phase gave no valid figure: a stage failed, or the counted totals differ from the votes table."""
