"""The Spark session the Spark runner works in: checked prerequisites, quiet logs, one per process.

`local[N]` runs on this machine; a cluster is a master URL (`spark://host:7077`, `yarn`,
`k8s://…`). An existing session (a notebook's, a test fixture's) is reused as it is.
"""

from __future__ import annotations

import os
import re
import shlex
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


# Where spark-submit takes a setting from besides `--conf`: environment variables (read last, so
# lowest first here) and flags of PYSPARK_SUBMIT_ARGS.
_ENVIRONMENT = {"MASTER": "spark.master", "SPARK_DRIVER_MEMORY": "spark.driver.memory",
                "SPARK_LOCAL_IP": "spark.driver.bindAddress", "SPARK_LOCAL_HOSTNAME": "spark.driver.host"}
_FLAGS = {"--master": "spark.master", "--driver-memory": "spark.driver.memory",
          "--driver-java-options": "spark.driver.extraJavaOptions"}
_JAVA_OPTIONS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")
# Where the driver listens and what it tells executors; one choice, the user's or the runner's.
_ADDRESS = ("spark.driver.host", "spark.driver.bindAddress")
_LOOPBACK = "127.0.0.1"
# A line of a properties file: a key, then `=`, `:` or blanks, then the value.
_PROPERTY = re.compile(r"([^\s=:]+)\s*[=:\s]?\s*(.*)")


def spark_session(master: str | None = None, partitions: int | None = None) -> Any:
    """The process's SparkSession: an active one as it is, else a new one on `master`, with the
    user's own configuration (`configured`) kept."""
    check_prerequisites()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    user = configured()
    local = (master or user.get("spark.master", "local")).startswith("local")
    loopback = local and not user.keys() & set(_ADDRESS)
    # Local workers must run this interpreter (with kabuguard and pyarrow), not the first python3.
    if local:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("kabuguard-replay")
    for key, value in {**_session_conf(user, local, loopback), **RUN_CONF}.items():
        builder = builder.config(key, value)
    if master:
        builder = builder.master(master)
    if partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(partitions))
    # spark-submit resolves this host's name before it reads a setting, and stops when the name does
    # not resolve, unless SPARK_LOCAL_IP gives it the address.
    spark = _start(builder, master, {"SPARK_LOCAL_IP": _LOOPBACK} if loopback else {})
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _start(builder: Any, master: str | None, environment: dict[str, str]) -> Any:
    """`builder`'s session, with `environment` added to this process's while spark-submit starts
    (the JVM keeps it); anything raised is SparkDidNotStart."""
    os.environ.update(environment)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # whatever is raised here (pyspark's, py4j's, the JVM's), Spark did not start
        raise SparkDidNotStart(f"Spark did not start on master {master or 'of its configuration'}: "
                               f"{_first_line(exc)}") from exc
    finally:
        for name in environment:
            del os.environ[name]


def configured() -> dict[str, str]:
    """The settings a new session starts with before the runner's, in spark-submit's order: the
    environment's, then spark-defaults.conf's (in $SPARK_CONF_DIR, else Spark's conf/), then those
    of PYSPARK_SUBMIT_ARGS (`--conf key=value` and the flags of `_FLAGS`), each over the one before."""
    from pyspark.find_spark_home import _find_spark_home

    settings = {key: os.environ[name] for name, key in _ENVIRONMENT.items() if os.environ.get(name)}
    folder = os.environ.get("SPARK_CONF_DIR") or Path(_find_spark_home(), "conf")
    settings.update(_properties(Path(folder, "spark-defaults.conf")))
    settings.update(_submit_args(os.environ.get("PYSPARK_SUBMIT_ARGS", "")))
    return settings


def _properties(path: Path) -> dict[str, str]:
    """A properties file's settings (`key value` or `key=value`, `#` and `!` comments); none if it is
    absent. Lines continued with a backslash, and escapes, are not read."""
    if not path.is_file():
        return {}
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    found = (_PROPERTY.fullmatch(line) for line in lines if line and not line.startswith(("#", "!")))
    return {match[1]: match[2].strip() for match in found if match}


def _submit_args(args: str) -> dict[str, str]:
    """The settings of spark-submit arguments (PYSPARK_SUBMIT_ARGS): `--conf key=value` and `_FLAGS`."""
    words = shlex.split(args)
    settings = {}
    for flag, value in zip(words, words[1:]):
        if flag == "--conf" and "=" in value:
            key, _, setting = value.partition("=")
            settings[key] = setting
        elif flag in _FLAGS:
            settings[_FLAGS[flag]] = value
    return settings


def _session_conf(user: dict[str, str], local: bool, loopback: bool) -> dict[str, str]:
    """The runner's settings of a new session, around the user's: its log configuration before their
    Java options (so that a log configuration of theirs wins), its defaults where they set none.
    A local run needs no network: its driver listens on the loopback address (`loopback`, unless
    the user chose an address), and Spark's UI, which has no authentication and shows the data of
    cached blocks, is off."""
    quiet = f"-Dlog4j2.configurationFile={_LOG4J.as_uri()}"
    conf = {key: " ".join(filter(None, (quiet, user.get(key)))) for key in _JAVA_OPTIONS}
    defaults = {"spark.ui.showConsoleProgress": "false"}  # the runner reports progress itself
    if local:
        # In local mode the driver JVM is the executor; Spark's 1 GB default runs out near 4M events.
        defaults["spark.driver.memory"] = os.environ.get("KABUGUARD_SPARK_MEMORY", "4g")
        defaults["spark.ui.enabled"] = "false"
    if loopback:
        defaults.update(dict.fromkeys(_ADDRESS, _LOOPBACK))
    conf.update({key: value for key, value in defaults.items() if key not in user})
    return conf


def _first_line(exc: Exception) -> str:
    """What Spark said, in one line: a JVM exception's own message rather than py4j's wrapper of it
    ("An error occurred while calling None.org.apache.spark.api.java.JavaSparkContext.")."""
    from py4j.protocol import Py4JJavaError

    text = str(exc.java_exception.toString()) if isinstance(exc, Py4JJavaError) else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]
