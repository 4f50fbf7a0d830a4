"""The one place a Spark session is built, so the streaming job and its tests run Spark the same way.

The Kafka connector comes from ``jvm/spark-kafka/pom.xml``, resolved by ``make setup`` into
``<jars_dir>/spark``, and is handed to Spark as local ``spark.jars``: nothing is downloaded at run time.
On a cluster (``SPARK_MASTER=spark://host:7077``) Spark ships those jars to the executors itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import SparkSession

from realtime_voting.settings import Settings

logger = logging.getLogger(__name__)


class ConnectorJarsMissing(RuntimeError):
    """The Spark Kafka connector has not been resolved by Maven yet."""


def kafka_connector_jars(settings: Settings) -> list[Path]:
    """The connector and the two libraries pyspark does not ship (kafka-clients, commons-pool2)."""
    folder = settings.jars_dir / "spark"
    jars = sorted(folder.glob("*.jar"))
    if not any(jar.name.startswith("spark-sql-kafka-0-10") for jar in jars):
        raise ConnectorJarsMissing(
            f"the Spark Kafka connector is not in {folder}: run `make setup` (it resolves jvm/pom.xml with Maven)"
        )
    return jars


def build_spark_session(settings: Settings, app_name: str, *, extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Create (or return the running) Spark session with the pipeline's configuration, all of it here."""
    conf = {
        "spark.jars": ",".join(str(jar) for jar in kafka_connector_jars(settings)),
        # Two cores here: a handful of shuffle partitions instead of 200 keeps every micro-batch fast.
        "spark.sql.shuffle.partitions": "4",
        # Streaming state (the dedup set and the tallies) in RocksDB: off-heap, and it survives large elections.
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
    }
    conf.update(extra_conf or {})
    builder = SparkSession.builder.appName(app_name).master(settings.spark_master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")  # Spark's INFO console spam hidden; the job logs its own progress
    return spark
