"""The seeding stage (``main.py``): the election's tables, topics, parties, candidates and voters.

- ``stage``   the command: registers the voters and publishes them to ``voters_topic``
- ``people``  where voters come from: the RandomUser API, or an offline generator of the same shape
"""
