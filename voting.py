"""Cast, store and publish one vote per voter from voters_topic.

Not built yet: see issue #3. The logic will live in realtime_voting/voting.py; this script stays a thin entry point.
"""

import sys

if __name__ == "__main__":
    sys.exit("voting.py is not built yet (issue #3)")
