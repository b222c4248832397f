"""The Spark session the Spark runner works in: checked prerequisites, quiet logs, one per process.

`local[N]` runs on this machine; a cluster is a master URL (`spark://host:7077`, `yarn`,
`k8s://…`). An existing session (a notebook's, a test fixture's) is reused as it is.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

# Spark's logs cut to errors, as JSON lines; read from the installed package, never from a shared
# temporary folder, where another local user could have written a configuration of their own.
_LOG4J = Path(__file__).with_name("log4j2.properties")


class SparkUnavailable(RuntimeError):
    """Spark cannot start here; the message names what is missing and how to get it."""


class SparkDidNotStart(RuntimeError):
    """Spark is installed but its session failed to start (a master URL it refuses, a setting of
    spark-defaults.conf, a host it cannot bind): nothing was read or decided."""


def check_prerequisites() -> None:
    """Raise SparkUnavailable unless pyspark is importable and a Java runtime can be found."""
    try:
        import pyspark  # noqa: F401
        import pandas  # noqa: F401  # pyspark's Arrow functions require it
    except ImportError as exc:
        raise SparkUnavailable(
            f"the Spark engine needs pyspark with its SQL extras ({exc.name} is not installed): "
            "pip install 'kabuguard[spark]'") from None
    home = os.environ.get("JAVA_HOME")
    java = Path(home, "bin", "java") if home else None
    if not (java and java.is_file()) and shutil.which("java") is None:
        where = f"JAVA_HOME={home} has no bin/java and " if home else ""
        raise SparkUnavailable(
            f"the Spark engine needs Java 17 or later, but {where}no `java` is on PATH: install a JDK "
            "(e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME to one")


# What the runner's plans and readers assume of a session, whoever made it: set on the runner's
# own session, and on a caller's (a notebook's) for the run only (`runner.replay_spark`). Parquet
# timestamps come back as UTC instants; with adaptive execution on, the stages' plans ran the
# driver out of memory even on one event (a review reproduced it at Spark's 1 GB default).
RUN_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.useLargeVarTypes": "false",
    "spark.sql.adaptive.enabled": "false",
}


def spark_session(master: str | None = None, partitions: int | None = None) -> Any:
    """The process's SparkSession: an active one as it is, else a new one on `master`."""
    check_prerequisites()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Local workers must run this interpreter (with kabuguard and pyarrow), not the first python3.
    if not master or master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    quiet = f"-Dlog4j2.configurationFile={_LOG4J.as_uri()}"
    builder = (
        SparkSession.builder.appName("kabuguard-replay")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", quiet)
        .config("spark.executor.extraJavaOptions", quiet)
    )
    for key, value in RUN_CONF.items():
        builder = builder.config(key, value)
    if master:
        builder = builder.master(master)
    if (not master or master.startswith("local")) and "spark.driver.memory" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        # In local mode the driver JVM is the executor; Spark's 1 GB default runs out near 4M events.
        builder = builder.config("spark.driver.memory", os.environ.get("KABUGUARD_SPARK_MEMORY", "4g"))
    if partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(partitions))
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # whatever is raised here (pyspark's, py4j's, the JVM's), Spark did not start
        raise SparkDidNotStart(f"Spark did not start on master {master or 'of its configuration'}: "
                               f"{_first_line(exc)}") from exc
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _first_line(exc: Exception) -> str:
    """What Spark said, in one line: a JVM exception's own message rather than py4j's wrapper of it
    ("An error occurred while calling None.org.apache.spark.api.java.JavaSparkContext.")."""
    from py4j.protocol import Py4JJavaError

    text = str(exc.java_exception.toString()) if isinstance(exc, Py4JJavaError) else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]
