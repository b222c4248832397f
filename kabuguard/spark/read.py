"""Contract files into a Spark DataFrame of typed events, validated by the replay's own reader.

Spark reads the bytes (Hadoop's text reader for JSONL and JSONL.gz, its Parquet reader with
each row's index); `kabuguard.events.reader` parses and validates every line or row inside the
workers, so an event and a rejection are exactly what the replay makes of the same input. Each
row gets `seq`, its place in the input order (file index in the expanded order, then line or
row number), which with `ts_us` reproduces the replay's total order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from kabuguard.engine import Pipeline
from kabuguard.events.reader import SUFFIXES, ContractError, decode_line, expand_paths
from kabuguard.policy import Policy

# seq = file index << LINE_BITS | line number: one long that sorts like (file, line).
LINE_BITS = 40
STAGE_KEYS = ("account", "ip", "device", "intel", "market", "symbol", "final")
EVENT_COLUMNS = ("seq long, ts_us long, event_id string, kind string, "
                 + ", ".join(f"key_{name} string" for name in STAGE_KEYS)
                 + ", ref string, event binary, reason string")
_TEXT_FORMAT = "org.apache.hadoop.mapreduce.lib.input.TextInputFormat"
_encode = msgspec.msgpack.Encoder().encode
_router: Pipeline | None = None


def expand(spark: Any, paths: Iterable[str | Path]) -> list[str]:
    """Files to read in the replay's order: local paths as `expand_paths`, URIs listed by Hadoop."""
    out: list[str] = []
    for raw in paths:
        text = str(raw)
        if "://" in text and not text.startswith("file:"):
            out.extend(_remote(spark, text))
        else:
            out.extend(str(p) for p in expand_paths([raw]))
    return out


def _remote(spark: Any, uri: str) -> list[str]:
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: no such file or folder")
    if fs.getFileStatus(path).isFile():
        return [uri]
    found, listing = [], fs.listFiles(path, True)
    while listing.hasNext():
        name = listing.next().getPath().toString()
        if name.endswith(SUFFIXES):
            found.append(name)
    # The order of `expand_paths`: by path components, as pathlib compares paths.
    return sorted(found, key=lambda n: PurePosixPath(n.split("://", 1)[1]).parts)


def read_events(spark: Any, files: list[str], policy: Policy) -> Any:
    """Every line and row of `files` as a DataFrame with EVENT_COLUMNS; bad ones carry `reason`."""
    sc = spark.sparkContext
    frames = []
    texts = []
    for index, name in enumerate(files):
        if name.endswith(".parquet"):
            frame = spark.read.parquet(name).selectExpr("*", "_metadata.row_index AS __row")
            frames.append(frame.mapInArrow(_ParquetTask(index, policy), EVENT_COLUMNS))
        else:
            lines = sc.newAPIHadoopFile(name, _TEXT_FORMAT, "org.apache.hadoop.io.LongWritable",
                                        "org.apache.hadoop.io.Text",
                                        conf={"textinputformat.record.delimiter": "\n"})
            texts.append(lines.values().zipWithIndex().map(lambda t, i=index: (i, t[1] + 1, t[0])))
    if texts:
        rows = sc.union(texts).mapPartitions(_TextTask(policy))
        frames.append(spark.createDataFrame(rows, EVENT_COLUMNS))
    if not frames:
        return spark.createDataFrame([], EVENT_COLUMNS)
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _route(policy: Policy) -> Pipeline:
    """A pipeline kept per worker process, only to ask its stages which key an event has."""
    global _router
    if _router is None:
        _router = Pipeline(policy)
    return _router


def _row(seq: int, event: Any, pipeline: Pipeline) -> tuple:
    kind = event.kind
    keys = []
    for stage in pipeline.stages:
        key = stage.key_of(event) if kind in stage.by_kind else None
        keys.append(key or None)
    ref = event.symbol if kind == "instrument" else None
    return (seq, event.ts_us, event.event_id, kind, *keys, ref, _encode(event), None)


def _rejected(seq: int, reason: str) -> tuple:
    return (seq, None, None, None, *([None] * len(STAGE_KEYS)), None, None, reason)


class _TextTask:
    """Validates JSON lines (a class, so that Spark pickles it by reference)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def __call__(self, lines: Iterator[tuple[int, int, str]]) -> Iterator[tuple]:
        pipeline = _route(self.policy)
        for index, number, text in lines:
            line = text.encode()
            if not line.strip():
                continue
            seq = index << LINE_BITS | number
            # The replay's reader, line for line (kabuguard.events.reader.read_file).
            try:
                yield _row(seq, decode_line(line), pipeline)
            except msgspec.DecodeError as exc:
                yield _rejected(seq, f"invalid JSON: {exc}")
            except ContractError as exc:
                yield _rejected(seq, str(exc))


class _ParquetTask:
    """Validates Parquet rows of file `index` (a class, so that Spark pickles it by reference)."""

    def __init__(self, index: int, policy: Policy) -> None:
        self.index, self.policy = index, policy

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        # The replay's Parquet row conversion (kabuguard.events.reader._read_parquet).
        from kabuguard.events.reader import batch_events

        pipeline = _route(self.policy)
        index = self.index
        for batch in batches:
            rows_at = batch.column(batch.schema.get_field_index("__row")).to_pylist()
            out = []
            for at, item in zip(rows_at, batch_events(batch.drop_columns(["__row"]))):
                seq = index << LINE_BITS | (at + 1)
                out.append(_rejected(seq, item) if isinstance(item, str) else _row(seq, item, pipeline))
            yield pa.RecordBatch.from_pylist(
                [dict(zip(_NAMES, r)) for r in out], schema=_arrow_schema()) if out else _empty()


_NAMES = ("seq", "ts_us", "event_id", "kind", *(f"key_{n}" for n in STAGE_KEYS), "ref", "event", "reason")


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {"seq": pa.int64(), "ts_us": pa.int64(), "event": pa.binary()}
    return pa.schema([(name, types.get(name, pa.string())) for name in _NAMES])


def _empty() -> Any:
    import pyarrow as pa

    return pa.RecordBatch.from_pylist([], schema=_arrow_schema())
