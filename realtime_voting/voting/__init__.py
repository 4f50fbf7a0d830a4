"""The voting stage (``voting.py``, and the ballot page through the same ballot box).

- ``stage``       consumes ``voters_topic``, casts each voter's vote, commits offsets after the write
- ``ballot_box``  validates ballots, stores each voter's one vote, publishes the stored vote: the one way to vote
"""
