"""One Spark session for the tests of the counting job's transformations (batch DataFrames, no Kafka)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from realtime_voting.core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    """The session ``spark_streaming.py`` builds, with the default settings; a test using it is marked ``spark``."""
    from realtime_voting.services.spark_session import (
        build_spark_session,  # pyspark is loaded only by the tests that use it
    )

    return build_spark_session(Settings.from_env({}), "test-transformations")
