"""What every part of the pipeline shares, and depends on nothing else of it.

- ``settings``    every setting, read once from the environment into one ``Settings`` object
- ``schemas``     the election's records and their Kafka messages (voter, vote, result, dead letter), each once
- ``topics``      the topics' and consumer groups' names, and what each topic carries
- ``waiting``     waiting on a condition with a deadline: the one polling loop
- ``overlapped``  one batch stored in a thread while the next is read (seeding and voting)
"""
