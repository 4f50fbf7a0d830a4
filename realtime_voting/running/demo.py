"""``make demo``: a live election to watch, and to vote in, with every stage of the pipeline running.

``make demo`` has already run ``make up`` (Kafka and PostgreSQL). This

1. seeds a fresh election (``main.py --reset --yes``; ``--keep`` tops up the one there is instead),
2. starts the voting stage paced to ``--rate`` votes per second at ``--turnout``, the counting job and the web
   app, each with its output in ``.local/logs/<stage>.log``,
3. prints where the dashboard and the ballot page are, and voters who stay home, to sign in with on the ballot
   page, then a progress line (votes cast, counted, rate) whenever the numbers move.

Ctrl-C (or SIGTERM) stops every stage it started; the local stack keeps running (``make down`` stops it).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import random
import subprocess
import threading
import time
from dataclasses import dataclass

from realtime_voting.core.schemas import Voter
from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.services import db, kafka_io
from realtime_voting.services.cli import start_long_running
from realtime_voting.voting.stage import stays_home
from realtime_voting.web import dashboard_data

logger = logging.getLogger(__name__)

# The election `make demo` runs unless told otherwise (DEMO_VOTERS, DEMO_RATE, DEMO_TURNOUT in the Makefile):
# 6,000 votes at 20 a second is five minutes of counts that move, and 1,500 voters left for the ballot page.
VOTERS = 7500
RATE = 20.0
TURNOUT = 0.8
DASHBOARD_PORT = 8501
VOTERS_TO_TRY = 3
PROGRESS_EVERY_S = 5.0
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Stage:
    name: str
    argv: tuple[str, ...]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m realtime_voting.running.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--voters", type=int, default=VOTERS, help=f"voters registered (default {VOTERS:,})")
    parser.add_argument("--rate", type=float, default=RATE, help=f"votes cast per second at most (default {RATE:g})")
    parser.add_argument("--turnout", type=float, default=TURNOUT,
                        help=f"share of the voters who vote; the others are left for the ballot page "
                             f"(default {TURNOUT})")
    parser.add_argument("--keep", action="store_true",
                        help="keep the election there is (its votes and totals) and top it up, instead of a fresh one")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the voting stage's choices and of who stays home (default: a new one each run)")
    parser.add_argument("--port", type=int, default=DASHBOARD_PORT,
                        help=f"the web app's port (default {DASHBOARD_PORT})")
    args = parser.parse_args(argv)
    if args.voters < 1 or args.rate < 0 or not 0 <= args.turnout <= 1:
        parser.error("--voters must be 1 or more, --rate 0 or more (0: no cap), --turnout between 0 and 1")
    if args.seed is None:
        args.seed = random.randrange(2**31)  # noqa: S311 - a seed for the simulated voters, not a secret
    return args


def stages(args: argparse.Namespace) -> tuple[Stage, list[Stage]]:
    """The seeding run, then the stages that run until stopped, in pipeline order."""
    seeding = Stage("seed", ("main.py", "--voters", str(args.voters), *(() if args.keep else ("--reset", "--yes"))))
    return seeding, [
        Stage("voting", ("voting.py", "--rate", str(args.rate), "--turnout", str(args.turnout),
                         "--seed", str(args.seed))),
        Stage("spark", ("spark_streaming.py",)),
        Stage("dashboard", ("-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
                            "--server.port", str(args.port), "--browser.gatherUsageStats", "false")),
    ]


def say(line: str = "") -> None:
    print(line, flush=True)  # flushed: the demo's output is read as it comes (a terminal, a pipe, a test)


def start(stage: Stage, settings: Settings) -> subprocess.Popen[bytes]:
    """The stage in a session of its own (Ctrl-C reaches the demo only, which stops them in order)."""
    return processes.start(settings, *stage.argv, log=settings.logs_dir / f"{stage.name}.log", own_session=True)


def seed_election(stage: Stage, settings: Settings, stop_requested: threading.Event) -> bool:
    """Run the seeding to its end; False (having said why) if it failed or the demo was stopped meanwhile."""
    log_path = settings.logs_dir / f"{stage.name}.log"
    say(f"Seeding the election: python {' '.join(stage.argv)}   (log {log_path})")
    process = start(stage, settings)
    while process.poll() is None:
        if stop_requested.wait(0.2):  # the seeding's progress, checked five times a second
            processes.stop(stage.name, process, timeout_s=STOP_TIMEOUT_S)
            return False
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        say(f"error: seeding exited with code {process.returncode}; the end of {log_path}:")
        say("\n".join(f"  {line}" for line in tail))
        return False
    return True


def voters_who_stay_home(settings: Settings, args: argparse.Namespace, count: int) -> list[Voter]:
    """Registered voters with no vote whom the voting stage leaves at home: each can vote on the ballot page."""
    with db.short_lived_connection(settings) as connection:
        without_vote = db.fetch_voters_without_vote(connection)
        try:
            return list(itertools.islice(
                (voter for voter in without_vote if stays_home(voter.voter_id, args.turnout, args.seed)), count))
        finally:
            without_vote.close()  # ends the server-side cursor's transaction before the connection closes


def announce(settings: Settings, args: argparse.Namespace, running: dict[str, subprocess.Popen[bytes]]) -> None:
    seconds = args.voters * args.turnout / args.rate if args.rate else 0
    duration = f"{seconds / 60:.0f} minutes" if seconds >= 90 else f"{seconds:.0f} seconds"
    how_long = f", for about {duration} at {args.rate:g} votes/s" if args.rate and not args.keep else ""
    say(f"\nThe election is running: {args.voters:,} voters, {args.turnout:.0%} of them vote{how_long}.")
    say(f"  Kafka {settings.kafka_bootstrap_servers}   PostgreSQL {settings.postgres_host}:{settings.postgres_port}/"
        f"{settings.postgres_db} (schema {settings.postgres_schema})")
    for name, process in running.items():
        say(f"  {name:<10} pid {process.pid:<8} log {settings.logs_dir / (name + '.log')}")
    say(f"\n  Dashboard:   http://localhost:{args.port}   (the counts appear once the counting job has started)")
    if not settings.dashboard_read_only:
        say(f"  Ballot page: http://localhost:{args.port}/vote   -- these voters stay home; sign in as one of them:")
        for voter in voters_who_stay_home(settings, args, VOTERS_TO_TRY):
            say(f"    voter ID {voter.voter_id}   registration number {voter.registration_number}   "
                f"({voter.voter_name})")
    say("\nCtrl-C stops the stages (the local stack keeps running; `make down` stops it). "
        "`make demo DEMO_KEEP=1` continues this election next time.\n")


class ProgressLine:
    """Votes cast (PostgreSQL), counted (the counting job's per-candidate totals) and the rate, when they move."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.results = dashboard_data.ResultsReader(settings)
        self.last: tuple[int, int] | None = None
        self.last_at = time.monotonic()

    def report(self) -> None:
        try:
            register = dashboard_data.fetch_register(self.settings)
        except db.PostgresUnavailable as error:
            say(f"{time.strftime('%H:%M:%S')}  {error}")
            return
        now, counted = time.monotonic(), self.results.snapshot().votes_counted
        if (register.votes_cast, counted) == self.last:
            return
        rate = f", {(register.votes_cast - self.last[0]) / (now - self.last_at):.1f} votes/s" if self.last else ""
        say(f"{time.strftime('%H:%M:%S')}  votes cast {register.votes_cast:,} of {register.voters:,} voters, "
            f"counted {counted:,}{rate}")
        self.last, self.last_at = (register.votes_cast, counted), now

    def close(self) -> None:
        self.results.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_long_running(kafka_io.DASHBOARD, timeout_s=10)
    if started is None:
        return 1
    settings, stop_requested = started
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    seeding, long_running = stages(args)
    if not seed_election(seeding, settings, stop_requested):
        return 0 if stop_requested.is_set() else 1

    running = {stage.name: start(stage, settings) for stage in long_running}
    progress = ProgressLine(settings)
    exit_code = 0
    try:
        announce(settings, args, running)
        next_progress_at = time.monotonic()
        while not stop_requested.wait(1.0):
            for name, process in running.items():
                if process.poll() is not None and exit_code == 0:
                    exit_code = 1
                    logger.error("%s exited with code %s: see %s", name, process.returncode,
                                 settings.logs_dir / f"{name}.log")
            if exit_code:
                break
            if time.monotonic() >= next_progress_at:
                next_progress_at += PROGRESS_EVERY_S
                progress.report()
    finally:
        progress.close()
        for name in reversed(list(running)):
            processes.stop(name, running[name], timeout_s=STOP_TIMEOUT_S)
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
