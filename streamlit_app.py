"""The live election dashboard.

Not built yet: see issue #5. The logic will live in realtime_voting/dashboard.py; this script stays a thin entry point.
"""

import sys

if __name__ == "__main__":
    sys.exit("streamlit_app.py is not built yet (issue #5)")
