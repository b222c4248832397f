"""Contract files into a Spark DataFrame of typed events, validated by the replay's own reader.

A local file is read whole in one Python task by `kabuguard.events.reader.numbered`, the replay's
reader, so its events and rejections (an unreadable file, a damaged stream) are the replay's and
its name is never a Hadoop path (which would read `x[1].jsonl` as a glob, refuse `a:b.jsonl` and
hide `_x.jsonl`). A remote file (HDFS, S3) is read by Hadoop (its text reader for JSONL and
JSONL.gz, its Parquet reader with each row's index), its name escaped, and its lines and rows
validated in the workers by the same reader's functions. Each row gets `seq`, its place in the
input order (file index in the expanded order, then line or row number), which with `ts_us`
reproduces the replay's total order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from kabuguard.engine import Pipeline
from kabuguard.events.model import event_firm
from kabuguard.events.reader import SUFFIXES, event_files, expand_paths, hidden, is_remote, line_item, numbered
from kabuguard.policy import Policy

# seq = file index << LINE_BITS | line number: one long that sorts like (file, line).
LINE_BITS = 40
STAGE_KEYS = ("account", "ip", "device", "intel", "market", "symbol", "final")
EVENT_COLUMNS = ("seq long, ts_us long, event_id string, firm string, kind string, "
                 + ", ".join(f"key_{name} string" for name in STAGE_KEYS)
                 + ", ref string, event binary, reason string")
_TEXT_FORMAT = "org.apache.hadoop.mapreduce.lib.input.TextInputFormat"
# Hadoop expands these in an input path as a glob; a backslash makes them literal.
_GLOB = re.compile(r"([\\\[\]{}*?])")
_encode = msgspec.msgpack.Encoder().encode
_router: Pipeline | None = None


def expand(spark: Any, paths: Iterable[str | Path]) -> list[str]:
    """Files to read in the replay's order: local paths as `expand_paths`, URIs listed by Hadoop;
    FileNotFoundError when there are none, as for the replay (`event_files`)."""
    return event_files(paths, lambda named: [found for raw in named for found in (
        _remote(spark, str(raw)) if is_remote(raw) else map(str, expand_paths([raw])))])


def _remote(spark: Any, uri: str) -> list[str]:
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: no such file or folder")
    if fs.getFileStatus(path).isFile():
        return [uri]
    # Each file's URI as `uri` spells it (Hadoop writes file:///x as file:/x), `hidden` ones aside.
    root, found, listing = len(fs.makeQualified(path).toString().rstrip("/")), [], fs.listFiles(path, True)
    while listing.hasNext():
        below = listing.next().getPath().toString()[root:]
        if below.endswith(SUFFIXES) and not hidden(below.split("/")):
            found.append(uri.rstrip("/") + below)
    # The order of `expand_paths`: by path components, as pathlib compares paths.
    return sorted(found, key=lambda n: PurePosixPath(n.split("://", 1)[1]).parts)


def read_events(spark: Any, files: list[str], policy: Policy) -> Any:
    """Every line and row of `files` as a DataFrame with EVENT_COLUMNS; bad ones carry `reason`."""
    from pyspark.errors import AnalysisException

    sc = spark.sparkContext
    # Absolute, as the driver sees it: an executor's working directory need not be the driver's
    # (rejections still name the file as given, through its index).
    local = [(index, str(Path(name).absolute())) for index, name in enumerate(files) if not is_remote(name)]
    # One task per file: a file is read whole, as the replay reads it.
    rdds = [sc.parallelize(local, len(local)).mapPartitions(_FileTask(policy))] if local else []
    frames = []
    for index, name in enumerate(files):
        if not is_remote(name):
            continue
        literal = _GLOB.sub(r"\\\1", name)
        if name.endswith(".parquet"):
            try:
                frame = spark.read.parquet(literal).selectExpr("*", "_metadata.row_index AS __row")
            except AnalysisException as exc:
                # Its schema refused (a column named twice, nanosecond timestamps): the file is
                # rejected, as the replay rejects a file it cannot read, and the others are read.
                reason = f"unreadable Parquet file (Spark's Parquet reader): {exc.getMessage()}"
                rdds.append(sc.parallelize([_rejected(index << LINE_BITS, reason)], 1))
                continue
            frames.append(frame.mapInArrow(_ParquetTask(index, policy), EVENT_COLUMNS))
        else:
            # Through the configuration, not a path argument, which Hadoop would split at commas.
            conf = {"mapreduce.input.fileinputformat.inputdir": re.sub(r"([\\,])", r"\\\1", literal),
                    "textinputformat.record.delimiter": "\n"}
            lines = sc.newAPIHadoopRDD(_TEXT_FORMAT, "org.apache.hadoop.io.LongWritable",
                                       "org.apache.hadoop.io.Text", conf=conf)
            rdds.append(lines.values().zipWithIndex().map(lambda t, i=index: (i, t[1] + 1, t[0]))
                        .mapPartitions(_TextTask(policy)))
    if rdds:
        frames.append(spark.createDataFrame(sc.union(rdds), EVENT_COLUMNS))
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
    return (seq, event.ts_us, event.event_id, event_firm(event), kind, *keys, ref, _encode(event), None)


def _rejected(seq: int, reason: str) -> tuple:
    return (seq, None, None, None, None, *([None] * len(STAGE_KEYS)), None, None, reason)


def _item_row(seq: int, item: Any, pipeline: Pipeline) -> tuple:
    """The row of what the replay's reader made of a line or row: its event, or why it is rejected."""
    return _rejected(seq, item) if isinstance(item, str) else _row(seq, item, pipeline)


class _FileTask:
    """Reads and validates whole local files with the replay's reader (a class, so that Spark
    pickles it by reference)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def __call__(self, files: Iterator[tuple[int, str]]) -> Iterator[tuple]:
        pipeline = _route(self.policy)
        for index, name in files:
            for number, item in numbered(Path(name)):
                seq = index << LINE_BITS | number
                yield _item_row(seq, item, pipeline)


class _TextTask:
    """Validates JSON lines read by Hadoop (a class, so that Spark pickles it by reference)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def __call__(self, lines: Iterator[tuple[int, int, str]]) -> Iterator[tuple]:
        pipeline = _route(self.policy)
        for index, number, text in lines:
            line = text.encode()
            if not line.strip():
                continue
            seq = index << LINE_BITS | number
            item = line_item(line)  # the replay's, line for line (kabuguard.events.reader.numbered)
            yield _item_row(seq, item, pipeline)


class _ParquetTask:
    """Validates Parquet rows of file `index` (a class, so that Spark pickles it by reference)."""

    def __init__(self, index: int, policy: Policy) -> None:
        self.index, self.policy = index, policy

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        # The replay's Parquet row conversion (kabuguard.events.reader.numbered).
        from kabuguard.events.reader import batch_events

        pipeline = _route(self.policy)
        index = self.index
        for batch in batches:
            rows_at = batch.column(batch.schema.get_field_index("__row")).to_pylist()
            out = []
            for at, item in zip(rows_at, batch_events(batch.drop_columns(["__row"]))):
                seq = index << LINE_BITS | (at + 1)
                out.append(_item_row(seq, item, pipeline))
            yield pa.RecordBatch.from_pylist(
                [dict(zip(_NAMES, r)) for r in out], schema=_arrow_schema()) if out else _empty()


_NAMES = ("seq", "ts_us", "event_id", "firm", "kind", *(f"key_{n}" for n in STAGE_KEYS), "ref", "event", "reason")


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {"seq": pa.int64(), "ts_us": pa.int64(), "event": pa.binary()}
    return pa.schema([(name, types.get(name, pa.string())) for name in _NAMES])


def _empty() -> Any:
    import pyarrow as pa

    return pa.RecordBatch.from_pylist([], schema=_arrow_schema())
