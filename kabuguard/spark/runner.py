"""`kabuguard replay --engine spark`: the replay's inputs and outputs, the core's stages on Spark.

Steps: read and validate (kabuguard.spark.read), drop later duplicates of an event (its firm and
`event_id`) in the total order, broadcast the instruments, run the keyed stages (kabuguard.spark.stages), then
write `decisions.jsonl`, `alerts.jsonl` and `rejected.jsonl` in the total order, byte for byte
what `kabuguard replay` writes; with `parquet=True` also `decisions.parquet/` and `alerts.parquet/`.
As in the replay, the INCOMPLETE marker stays in the output folder until the run has finished; it
is written, and an earlier run's outputs removed, before Spark starts, which may fail.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from kabuguard.events.reader import event_files, expand_paths, is_remote
from kabuguard.policy import Policy, load_policy
from kabuguard.replay import INCOMPLETE, OUTPUTS, ReplaySummary, refuse_outputs
from kabuguard.spark.progress import watch
from kabuguard.spark.read import LINE_BITS, STAGE_KEYS, expand, read_events
from kabuguard.spark.session import RUN_CONF, spark_session
from kabuguard.spark.stages import liquidity_spans, run_stages

_encode = msgspec.json.Encoder().encode
_DECISION_SCHEMA = ("event_id string, ts string, type string, account_id string, firm string, "
                    "decision string, score double, reasons array<string>, notional_jpy double")


def replay_spark(paths: Iterable[str | Path], out_dir: str | Path, policy: Policy | None = None,
                 master: str | None = None, partitions: int | None = None, quiet: bool = False,
                 parquet: bool = False, timings: dict[str, float] | None = None) -> ReplaySummary:
    """Decide every activity event of `paths` on Spark, into `out_dir`, as `replay` would.

    `timings`, when given, receives the seconds each step took (for bench/bench_spark.py).
    """
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    policy = policy or load_policy()
    paths = list(paths)
    out = Path(out_dir)
    _refuse_local(paths, out)
    out.mkdir(parents=True, exist_ok=True)
    marker = _begin(out)
    spark = spark_session(master, partitions)
    sc = spark.sparkContext
    parts = partitions or max(2, 2 * sc.defaultParallelism)
    with _settings(spark, {**RUN_CONF, "spark.sql.shuffle.partitions": str(parts)}), watch(sc, quiet) as w:
        w.begin("reading and validating")
        files = expand(spark, paths)
        decoded = read_events(spark, files, policy).persist(StorageLevel.MEMORY_AND_DISK)
        counts = {row["bad"]: row["count"] for row in
                  decoded.groupBy(F.col("reason").isNotNull().alias("bad")).count().collect()}
        # Sorted, then to the driver a partition at a time: a badly formatted export can reject more
        # lines than the driver holds. Written now, so that an interrupted run says them too.
        rejected = (decoded.where(F.col("reason").isNotNull()).select("seq", "reason").orderBy("seq")
                    .toLocalIterator() if counts.get(True) else [])
        rejected_files = _write_rejected(rejected, files, out / "rejected.jsonl")

        w.begin("dropping duplicate event ids")
        first = Window.partitionBy("firm", "event_id").orderBy("ts_us", "seq")
        events = (decoded.where(F.col("reason").isNull()).withColumn("_n", F.row_number().over(first))
                  .where("_n = 1")
                  .select("seq", "ts_us", "kind", *(f"key_{name}" for name in STAGE_KEYS), "ref", "event")
                  .persist(StorageLevel.MEMORY_AND_DISK))
        n_events = events.count()
        decoded.unpersist()

        w.begin("broadcasting instruments")
        by_symbol: dict[str, tuple[list[tuple[int, int]], list[bytes]]] = {}
        for row in events.where("kind = 'instrument'").select("ref", "ts_us", "seq", "event").collect():
            by_symbol.setdefault(row["ref"], ([], []))
            by_symbol[row["ref"]][0].append((row["ts_us"], row["seq"]))
            by_symbol[row["ref"]][1].append(bytes(row["event"]))
        for symbol, (at, records) in by_symbol.items():
            order = sorted(range(len(at)), key=at.__getitem__)
            by_symbol[symbol] = ([at[i] for i in order], [records[i] for i in order])
        w.begin("liquidity from bars")
        traded = dict(events.where("kind = 'market_bar'").select("key_symbol", "ts_us", "seq", "event").rdd
                      .map(lambda r: (r[0], (r[1], r[2], bytes(r[3])))).groupByKey()
                      .mapValues(liquidity_spans).collect())
        refs = sc.broadcast((by_symbol, traded))

        w.begin("deciding")
        decided = run_stages(events.where("kind != 'instrument'").drop("ref"), policy, refs, parts, w.begin)
        verdicts = {r["verdict"]: r["count"] for r in
                    decided.where("verdict IS NOT NULL").groupBy("verdict").count().collect()}
        alert_types = {r["type"]: r["count"] for r in
                       decided.where("alert_types IS NOT NULL")
                       .select(F.explode(F.split("alert_types", ",")).alias("type")).groupBy("type").count().collect()}
        events.unpersist()

        w.begin("writing decisions and alerts")
        staging = out / "_spark"
        shutil.rmtree(staging, ignore_errors=True)
        for name, column in (("decisions", "decision"), ("alerts", "alerts")):
            (decided.where(F.col(column).isNotNull()).orderBy("ts_us", "seq")
             .select(F.col(column).cast("string").alias("value")).write.text(_local(staging / name)))
            _concatenate(staging / name, out / f"{name}.jsonl")
        if parquet:
            w.begin("writing Parquet")
            (decided.where("decision IS NOT NULL").orderBy("ts_us", "seq")
             .select(F.from_json(F.col("decision").cast("string"), _DECISION_SCHEMA).alias("d")).select("d.*")
             .write.mode("overwrite").parquet(_local(out / "decisions.parquet")))
            (decided.where("alerts IS NOT NULL").orderBy("ts_us", "seq")
             .select(F.explode(F.split(F.col("alerts").cast("string"), "\n")).alias("json"))
             .select(F.get_json_object("json", "$.alert_id").alias("alert_id"),
                     F.get_json_object("json", "$.type").alias("type"),
                     F.get_json_object("json", "$.ts").alias("ts"),
                     F.get_json_object("json", "$.event_id").alias("event_id"), "json")
             .write.mode("overwrite").parquet(_local(out / "alerts.parquet")))
        shutil.rmtree(staging, ignore_errors=True)
        decided.unpersist()
        refs.unpersist()
    if timings is not None:
        timings.update(w.timings)
    marker.unlink()
    return ReplaySummary(files=len(files), events=n_events, duplicates=counts.get(False, 0) - n_events,
                         rejected=counts.get(True, 0), rejected_files=dict(rejected_files),
                         decisions=verdicts, alerts=alert_types, out_dir=out)


@contextmanager
def _settings(spark: Any, conf: dict[str, str]) -> Iterator[None]:
    """`conf` set on the session for the run, then each key as it was: a caller's session (a
    notebook's) is left as the caller had it."""
    before = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _local(path: Path) -> str:
    """`path` as a file URI: a path without a scheme is Hadoop's default file system's (HDFS on
    YARN), where the part files would land out of `_concatenate`'s reach."""
    return path.absolute().as_uri()


def _refuse_local(paths: list[str | Path], out: Path) -> None:
    """The replay's refusals that need no Spark, before `out` is touched: a local input that is an
    output there, a missing local path, and (when no URI is named, which only Spark can list) no
    event file at all. A missing or empty URI is found once Spark has started."""
    local = [path for path in paths if not is_remote(path)]
    refuse_outputs(expand_paths(local) if len(local) < len(paths) else event_files(local), out)


def _begin(out: Path) -> Path:
    """The replay's INCOMPLETE marker, then no output of an earlier run into `out`: Spark writes its
    outputs at the end, so an interrupted run would leave the earlier ones looking like its own."""
    marker = out / INCOMPLETE
    marker.write_text("a Spark replay into this folder has not finished: its decisions and alerts are missing\n")
    for name in OUTPUTS:
        if name.endswith(".parquet"):
            shutil.rmtree(out / name, ignore_errors=True)
        else:
            (out / name).unlink(missing_ok=True)
    return marker


def _write_rejected(rows: Iterable[Any], files: list[str], target: Path) -> Counter[str]:
    """Rejected rows (`seq`, `reason`), in their order, as the replay's lines of `target`, never
    held all at once; how many each file had."""
    per_file: Counter[str] = Counter()
    with target.open("wb") as fh:
        for row in rows:
            seq = row["seq"]
            name = files[seq >> LINE_BITS]
            per_file[name] += 1
            fh.write(_encode({"file": name, "line": seq & ((1 << LINE_BITS) - 1), "reason": row["reason"]}) + b"\n")
    return per_file


def _concatenate(parts: Path, target: Path) -> None:
    """Spark's part files, in partition order (the sort's order), into one file; a write that
    left no `_SUCCESS` here is an error, never an empty output."""
    if not (parts / "_SUCCESS").is_file():
        raise RuntimeError(f"{parts}: Spark's output is not there (no _SUCCESS file), so {target.name} cannot be written")
    with target.open("wb") as fh:
        for part in sorted(parts.glob("part-*")):
            with part.open("rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)
