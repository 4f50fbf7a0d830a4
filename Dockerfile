# The images docker-compose.yaml builds, one stage each (`build: target:`):
#
#   jars       Maven resolves Spark's Kafka connector from jvm/pom.xml: the command `make setup` runs
#   spark-job  the counting job (spark_streaming.py) on the official Spark image, with the connector jars
#   app        seeding, voting and the dashboard (main.py, voting.py, streamlit_app.py): Python + requirements.txt
#
# Nothing is downloaded when a container runs. The Spark image comes from docker-compose.yaml (x-spark-image,
# passed as the build argument SPARK_IMAGE), so the job's driver, the master and the workers run one Spark, at
# the version of the pyspark pin in requirements.txt (tests/test_docker_compose.py checks it).
ARG SPARK_IMAGE

FROM maven:3.9-eclipse-temurin-17 AS jars
WORKDIR /app
COPY jvm/ jvm/
# The repo's own command, limited to the spark-kafka module (the broker's jars are not needed: Kafka runs from
# the apache/kafka image). As in a checkout, the jars land in /app/.local/jars/spark.
RUN mvn --quiet --batch-mode -f jvm/pom.xml -pl spark-kafka dependency:copy-dependencies


FROM ${SPARK_IMAGE} AS spark-job
USER root
WORKDIR /app
# The job's driver imports pyspark from the image's own Spark (/opt/spark/python), the Spark the cluster runs,
# and these packages from requirements.txt, at its pins (-c). Not the whole file: the image's python3 is
# Ubuntu's (3.10 on the 4.2 images' jammy base), and the dashboard's streamlit and pyarrow need 3.11.
# The executors on the workers run no Python (the job uses Spark's built-in functions only, no UDF), and where
# they would, the workers' image has this same python3.
COPY requirements.txt .
RUN python3 -m pip install --no-cache-dir --only-binary=:all: -c requirements.txt \
        confluent-kafka psycopg2-binary orjson \
    && { echo /opt/spark/python; ls /opt/spark/python/lib/py4j-*-src.zip; } \
        > "$(python3 -c 'import site; print(site.getsitepackages()[0])')/spark.pth" \
    && python3 -c "import pyspark, confluent_kafka, psycopg2, orjson"
# Where JARS_DIR points in docker-compose.yaml; the driver ships them to the executors itself (spark.jars).
COPY --from=jars /app/.local/jars/spark /app/.local/jars/spark
COPY realtime_voting/ realtime_voting/
COPY spark_streaming.py .
# LOCAL_STATE_DIR (/app/.local): the session writes its log configuration there.
RUN chown spark:spark /app/.local
USER spark
CMD ["python3", "spark_streaming.py"]


FROM python:3.11-slim AS app
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY realtime_voting/ realtime_voting/
COPY main.py voting.py streamlit_app.py ./
# Not root: a user of its own, with LOCAL_STATE_DIR (/app/.local) writable.
RUN useradd --system --create-home voter && mkdir .local && chown voter:voter .local
USER voter
EXPOSE 8501
