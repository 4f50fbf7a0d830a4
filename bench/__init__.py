"""``make bench`` (``python -m bench``): the pipeline measured end to end, beside the physical references of the
same machine. bench/README.md says what each figure is, how it is measured, and the figures of each round.

- ``__main__``: the arguments, the phases in order, the table and the JSON line.
- ``phases``: each measured phase, running the pipeline's own scripts in an election of its own.
- ``references``: PostgreSQL's COPY and Kafka's own producer benchmark, on the same services.
- ``stages``: the pipeline's scripts as processes (through ``realtime_voting.running.processes``), each with its
  peak memory and CPU seconds sampled by psutil.
- ``results``: the counting job's results read from their topics, checked against the votes table, and the
  latency percentiles.
- ``breakdown``: where a batch of the counting query spends its time, from the job's own progress lines.
- ``footprint``: what the whole election left on disk, per voter: topics, tables and indexes, the counting state.
"""


class BenchFailed(RuntimeError):
    """A phase gave no valid figure: a stage failed, or the counted totals differ from the votes table."""
