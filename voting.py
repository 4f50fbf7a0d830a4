"""Cast, store and publish one vote per voter from voters_topic. See realtime_voting/voting/stage.py."""

from realtime_voting.voting.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
