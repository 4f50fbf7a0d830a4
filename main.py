"""Create the tables and topics, seed candidates and voters, publish voters to voters_topic.

Not built yet: see issue #3. The logic will live in realtime_voting/seeding.py; this script stays a thin entry point.
"""

import sys

if __name__ == "__main__":
    sys.exit("main.py is not built yet (issue #3)")
