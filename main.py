"""Create the election's tables and topics, seed candidates and voters, publish voters to voters_topic.

See realtime_voting/seeding/stage.py; `python main.py --help` lists the options.
"""

from realtime_voting.seeding.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
