"""The detection core on Apache Spark: `kabuguard replay --engine spark` (see docs/spark.md).

The same `Pipeline` and detectors as the replay run inside Spark's Python workers, one keyed
stage at a time over time-sorted partitions; the output is the replay's, byte for byte.
"""

from kabuguard.spark.session import SparkDidNotStart, SparkUnavailable, check_prerequisites, spark_session

__all__ = ["SparkDidNotStart", "SparkUnavailable", "check_prerequisites", "replay_spark", "spark_session"]


def __getattr__(name: str):  # the runner imports pyspark; keep `import kabuguard.spark` light
    if name == "replay_spark":
        from kabuguard.spark.runner import replay_spark

        return replay_spark
    raise AttributeError(name)
