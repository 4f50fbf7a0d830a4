"""Spark Structured Streaming tallies of votes_topic into the aggregated_* topics.

Not built yet: see issue #4. The logic will live in realtime_voting/streaming.py; this script stays a thin entry point.
"""

import sys

if __name__ == "__main__":
    sys.exit("spark_streaming.py is not built yet (issue #4)")
