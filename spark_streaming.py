"""Spark Structured Streaming tallies of votes_topic into the aggregated_* topics.

See realtime_voting/counting/job.py; `python spark_streaming.py --help` lists the options.
"""

from realtime_voting.counting.job import main

if __name__ == "__main__":
    raise SystemExit(main())
