"""``python -m bench`` (``make bench``): the pipeline measured end to end, beside the physical references.

Runs against the stack the usual settings point at (``make bench`` starts the local one first), from the
repository root. Every phase works in an election of its own (its own topic prefix and PostgreSQL schema),
removed afterwards. Each stage's output goes to ``.local/logs/bench-<time>/``.

It prints a table of the figures, then one JSON line; bench/README.md says what each figure is and how it is
measured. After the figures, where a batch of the counting job's query spends its time, in the latency phase
(after its warm-up) and in the whole election (``breakdown``).

It checks its own result (the final totals equal the votes table) and exits non-zero if they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime

from bench import BenchFailed, breakdown, phases, references
from bench.stages import Stages
from realtime_voting.core import waiting
from realtime_voting.core.settings import Settings
from realtime_voting.counting.batch_progress import Batch
from realtime_voting.services import elections, kafka_io
from realtime_voting.services.cli import configure_logging, services_ready

# The phases in the order they run. "backlog" is seeding, voting with one process and counting with Spark, in
# that order over one election: each needs the one before.
PHASES = ("references", "backlog", "parallel", "latency", "election")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Measure the pipeline end to end (see bench/README.md).")
    parser.add_argument("--voters", type=int, default=1_000_000, help="election size (default 1,000,000)")
    parser.add_argument("--rate", type=int, action="append", dest="rates", metavar="RATE",
                        help="votes per second for the latency phase (repeatable: one run at each; default 1000)")
    parser.add_argument("--seconds", type=int, default=60, help="length of the latency phase")
    parser.add_argument("--warm-up", type=int, default=None,
                        help="seconds of votes at the same rate before the latency phase measures (default: 15, and "
                             "in Real-Time Mode past the job's first checkpoint, SPARK_CHECKPOINT_SECONDS + 5)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="voting.py processes, 2nd run")
    parser.add_argument("--phase", action="append", choices=PHASES, dest="phases", metavar="PHASE",
                        help=f"run only this phase (repeatable; default all, in this order: {', '.join(PHASES)}); "
                             "for comparing one setting's effect with several short runs")
    args = parser.parse_args(argv)
    args.phases = args.phases or list(PHASES)
    args.rates = args.rates or [phases.DEFAULT_RATE]
    return args


def phase(name: str) -> None:
    print(f"[bench] {name}...", flush=True)


def measure(base: Settings, args: argparse.Namespace, stages: Stages,
            batches: dict[str, list[Batch]]) -> dict[str, float]:
    """Every figure, phase by phase, and into ``batches`` the counting query's batches of the latency phases
    and of the whole election; raises ``BenchFailed`` or ``waiting.TimedOut`` when one cannot be had."""
    figures: dict[str, float] = {}
    if "references" in args.phases:
        phase("references")
        figures["reference_copy_rows_per_s"] = references.copy_rate(base, min(args.voters, 200_000))
        figures["reference_producer_msgs_per_s"] = references.producer_rate(base, min(args.voters, 500_000))
    if "backlog" in args.phases:
        with elections.throwaway(base, "bench_backlog") as backlog:
            phase(f"seeding {args.voters:,} voters")
            figures["seed_voters_per_s"] = phases.seed_rate(backlog, args.voters, stages)
            phase("voting with 1 process")
            figures["vote_per_s"] = phases.vote_rate(backlog, args.voters, 1, stages)
            phase("counting the backlog with Spark (--available-now)")
            figures["spark_rows_per_s"] = phases.spark_rate(backlog, stages)
    if "parallel" in args.phases and args.workers > 1:
        phase(f"voting with {args.workers} processes")
        with elections.throwaway(base, "bench_parallel") as parallel:
            phases.seed(parallel, args.voters, stages)
            figures[f"vote_per_s_{args.workers}_workers"] = phases.vote_rate(parallel, args.voters, args.workers,
                                                                             stages)
    warm_up = args.warm_up if args.warm_up is not None else phases.default_warm_up(base)
    for rate in args.rates if "latency" in args.phases else ():
        phase(f"latency at {rate:,} votes/s for {args.seconds}s, after {warm_up}s of warm-up "
              f"(SPARK_COUNTING_MODE={base.spark_counting_mode})")
        latency, batches[f"latency phase at {rate:,} votes/s"] = phases.e2e_latency(
            base, rate, args.seconds, warm_up, stages)
        figures |= latency
    if "election" in args.phases:
        phase(f"a whole election of {args.voters:,} voters, every stage at once")
        figures["election_s"], batches["whole election"], cpu, on_disk = phases.whole_election(
            base, args.voters, args.workers, stages)
        figures |= {f"cpu_s_per_1000_voters_{stage}": seconds * 1000 / args.voters for stage, seconds in cpu.items()}
        figures |= on_disk
    figures["peak_rss_mb"] = stages.largest_peak_mb()
    return figures


def print_table(figures: dict[str, float], args: argparse.Namespace) -> None:
    """The figures measured, each beside its physical reference when the references were measured too."""
    copy_rate, producer_rate = figures.get("reference_copy_rows_per_s"), figures.get("reference_producer_msgs_per_s")
    slower_reference = min(copy_rate, producer_rate) if copy_rate and producer_rate else None

    def share(value: float, reference: float | None, of: str) -> str:
        return f"{value / reference:.0%} of {of}" if reference else ""

    def note(key: str, value: float) -> str:
        if key.startswith("vote_per_s"):
            return share(value, copy_rate, "COPY")
        if key.startswith("cpu_s_per_1000_voters_"):
            return "in the whole election: the stage's processes and their children"
        if key.startswith("bytes_per_voter_"):
            return "on disk after the whole election (bench/footprint.py)"
        if key.startswith(("e2e_latency_ms_", "counting_cpu_", "result_messages_")):
            rate, _, mode = key.partition("_at_")[2].partition("_")
            return f"at {int(rate or phases.DEFAULT_RATE):,} votes/s, {mode or Settings().spark_counting_mode} mode"
        if key.startswith("vote_published_ms_"):
            return "of which voting.py's (voting_time to votes_topic)"
        return {"seed_voters_per_s": share(value, slower_reference, "the slower reference"),
                "spark_rows_per_s": share(value, producer_rate, "the producer reference"),
                "election_s": f"{args.voters:,} voters"}.get(key, "")

    labels = {
        "reference_copy_rows_per_s": "reference: PostgreSQL COPY, voters rows/s",
        "reference_producer_msgs_per_s": "reference: Kafka ProducerPerformance, msgs/s",
        "vote_per_s": "vote_per_s (1 process)",
        "peak_rss_mb": "peak_rss_mb (largest Python process)",
    }
    print()
    print(f"{'figure':<48} {'value':>12}  note")
    for key, value in figures.items():
        digits = 2 if key.startswith(("cpu_", "counting_cpu_", "result_messages_")) else 1
        print(f"{labels.get(key, key):<48} {value:>12,.{digits}f}  {note(key, value)}")
    print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    base = Settings.from_env()
    if not services_ready(base, kafka_io.ADMIN):
        return 1
    logs = base.logs_dir / f"bench-{datetime.now():%Y%m%d-%H%M%S}"
    logs.mkdir(parents=True, exist_ok=True)
    batches: dict[str, list[Batch]] = {}
    try:
        figures = measure(base, args, Stages(logs), batches)
    except (BenchFailed, waiting.TimedOut) as error:
        print(f"bench FAILED: {error} (logs in {logs})", file=sys.stderr)
        return 1
    print_table(figures, args)
    breakdown.print_breakdown(batches)
    print(json.dumps({key: round(value, 2 if key.startswith(("cpu_", "counting_cpu_", "result_messages_")) else 1)
                      for key, value in figures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
