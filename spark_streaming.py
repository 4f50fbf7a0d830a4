"""Spark Structured Streaming tallies of votes_topic into the aggregated_* topics.

See realtime_voting/streaming.py; `python spark_streaming.py --help` lists the options.
"""

from realtime_voting.streaming import main

if __name__ == "__main__":
    raise SystemExit(main())
