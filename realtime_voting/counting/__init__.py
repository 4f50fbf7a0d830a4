"""The counting stage (``spark_streaming.py``): Spark Structured Streaming from ``votes_topic`` to the results.

- ``job``             the query (parse once, deduplicate, count, route results and dead letters) and its running
- ``batch_progress``  each batch's progress as one log line, which the bench reads too
"""
