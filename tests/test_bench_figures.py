"""The bench's own arithmetic and options (pure: no stack): which phases run, the table of a partial run, and the
CPU time a stage is charged with."""

from __future__ import annotations

import psutil

from bench.__main__ import PHASES, parse_args, print_table
from bench.phases import latency_suffix
from bench.results import counting_latencies
from bench.stages import cpu_seconds
from realtime_voting.core.schemas import Result
from realtime_voting.running import processes

BURN_S = 0.3
TICKS_S = 0.05  # the kernel counts CPU time in ticks of 10 ms, and truncates: a few ticks of slack


def test_every_phase_runs_by_default_and_phase_selects_some():
    assert parse_args([]).phases == list(PHASES)
    assert parse_args(["--phase", "latency", "--phase", "election"]).phases == ["latency", "election"]


def test_a_partial_run_prints_its_figures_without_the_references(capsys):
    print_table({"e2e_latency_ms_p50": 812.0, "e2e_latency_ms_p95_at_5000_microbatch": 3000.0,
                 "cpu_s_per_1000_voters_counting": 0.123},
                parse_args(["--phase", "latency", "--rate", "1000", "--rate", "5000"]))
    table = capsys.readouterr().out
    assert "e2e_latency_ms_p50" in table and "812.0  at 1,000 votes/s, realtime mode" in table
    assert "3,000.0  at 5,000 votes/s, microbatch mode" in table
    assert "0.12" in table
    assert "reference" not in table


def test_the_table_gives_each_rate_as_a_share_of_its_reference(capsys):
    print_table({"reference_copy_rows_per_s": 20_000.0, "reference_producer_msgs_per_s": 40_000.0,
                 "seed_voters_per_s": 10_000.0, "vote_per_s": 5_000.0, "spark_rows_per_s": 20_000.0},
                parse_args([]))
    table = capsys.readouterr().out
    assert "50% of the slower reference" in table
    assert "25% of COPY" in table
    assert "50% of the producer reference" in table


def test_cpu_seconds_count_a_child_that_has_ended():
    """The counting job's JVM and PostgreSQL's backends are children: their time is the stage's."""
    me = psutil.Process()
    before = cpu_seconds(me)
    burn = f"import time\nwhile time.process_time() < {BURN_S}: pass"
    assert processes.run_program(processes.command("-c", burn)).returncode == 0
    assert cpu_seconds(me) - before >= BURN_S - TICKS_S


def test_a_vote_is_counted_by_the_first_result_reaching_its_rank_and_a_replayed_lower_total_counts_nothing():
    votes = [("a", 10.0), ("a", 11.0), ("a", 12.0), ("b", 10.5)]
    shown = [(Result("a", total_votes=1), 10.1), (Result("b", total_votes=1), 10.6),
             (Result("a", total_votes=2), 11.2),
             (Result("a", total_votes=1), 12.0),  # a replay re-sends a lower total: no news
             (Result("a", total_votes=3), 12.5)]
    latencies = counting_latencies(votes, shown, measured_from=10.2)
    assert [round(ms) for ms in latencies] == [200, 500, 100]  # a's 2nd and 3rd vote, then b's


def test_latency_figures_are_named_by_rate_and_mode_except_at_1000_in_the_default_mode():
    assert latency_suffix(1000, "realtime") == ""
    assert latency_suffix(5000, "realtime") == "_at_5000"
    assert latency_suffix(1000, "microbatch") == "_at_1000_microbatch"
