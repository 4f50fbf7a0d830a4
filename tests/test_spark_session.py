"""The Spark session is built the way spark_streaming.py builds it, and its Kafka connector resolves offline."""

import pytest
from confluent_kafka import Producer

from realtime_voting.services import kafka_io
from realtime_voting.services.spark_session import build_spark_session

pytestmark = pytest.mark.spark


def test_spark_reads_a_kafka_topic_with_the_maven_resolved_connector(stack_settings, new_topic):
    topic = new_topic("spark")
    producer = Producer(kafka_io.producer_config(stack_settings, kafka_io.ADMIN))
    for number in range(3):
        producer.produce(topic, key=f"v-{number}".encode(), value=f'{{"n": {number}}}'.encode())
    assert producer.flush(10) == 0

    spark = build_spark_session(stack_settings, "test-connector")
    rows = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", stack_settings.kafka_bootstrap_servers)
        .option("subscribe", topic)
        .load()
        .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value")
        .orderBy("key")
        .collect()
    )
    assert [(row.key, row.value) for row in rows] == [(f"v-{n}", f'{{"n": {n}}}') for n in range(3)]
