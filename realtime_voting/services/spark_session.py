"""The one place a Spark session is built, so the streaming job and its tests run Spark the same way.

The Kafka connector comes from ``jvm/spark-kafka/pom.xml``, resolved by ``make setup`` into
``<jars_dir>/spark``, and is handed to Spark as local ``spark.jars``: nothing is downloaded at run time.
On a cluster (``SPARK_MASTER=spark://host:7077``) Spark ships those jars to the executors itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import SparkSession

from realtime_voting.core.settings import Settings

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


# Spark's console spam hidden: warnings and errors only, and none of the start-up notices that do not apply.
LOG4J2_PROPERTIES = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{HH:mm:ss} %-7p spark %c{1}: %m%n
logger.hadoop_native.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop_native.level = error
logger.spark_utils.name = org.apache.spark.util.Utils
logger.spark_utils.level = error
logger.falling_behind.name = org.apache.spark.sql.execution.streaming.runtime.ProcessingTimeExecutor
logger.falling_behind.level = error
logger.cancel_on_stop.name = org.apache.spark.scheduler.DAGScheduler
logger.cancel_on_stop.level = error
logger.kafka.name = org.apache.kafka
logger.kafka.level = error
"""


def _log4j2_config(settings: Settings) -> Path:
    path = settings.state_dir / "config" / "spark-log4j2.properties"
    if not path.exists() or path.read_text() != LOG4J2_PROPERTIES:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(LOG4J2_PROPERTIES)
    return path


def build_spark_session(settings: Settings, app_name: str, *, master: str | None = None,
                        extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Create (or return the running) Spark session with the pipeline's configuration, all of it here; on
    ``master`` if given (the counting job's, sized for Real-Time Mode), else ``SPARK_MASTER``."""
    conf = {
        "spark.jars": ",".join(str(jar) for jar in kafka_connector_jars(settings)),
        # One shuffle partition here instead of 200 (SPARK_SHUFFLE_PARTITIONS): each is a state store per stateful
        # operator, committed every micro-batch, so fewer means less fixed cost per batch.
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        # Streaming state (the dedup set and the tallies) in RocksDB: off-heap, and it survives large elections.
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        # Commit a changelog per micro-batch instead of uploading a snapshot: much cheaper batches.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # Checkpoint format v2 (each batch's state store checkpoint ids), which Real-Time Mode requires, in both
        # modes: one checkpoint serves SPARK_COUNTING_MODE=realtime and microbatch alike.
        "spark.sql.streaming.stateStore.checkpointFormatVersion": "2",
        # Counting the state's rows costs a read before every write; the progress lines do not need the count.
        "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.ui.enabled": str(settings.spark_ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        # Filters stay where the job puts them. Pushed below the parsing projection, the counting filter
        # (`reason IS NULL`) has every alias inlined: the JSON parse ran once per field it reads, 15 times per
        # message instead of once (5x the CPU of the counting query: 22 s instead of 4.5 s per 400,000 votes).
        "spark.sql.optimizer.excludedRules": ",".join(
            f"org.apache.spark.sql.catalyst.optimizer.{rule}"
            for rule in ("PushDownPredicates", "PushPredicateThroughNonJoin")),
        # Adaptive execution does not apply to stateful streaming queries; off, instead of a warning per query.
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{_log4j2_config(settings)}",
    }
    master = master or settings.spark_master
    if master.startswith("local"):
        # Everything is on this machine: keep the driver on loopback instead of guessing a network address.
        conf.update({"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "localhost"})
    conf.update(extra_conf or {})
    builder = SparkSession.builder.appName(app_name).master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")  # Spark's INFO console spam hidden; the job logs its own progress
    return spark
