"""`kabuguard replay --engine spark` decides exactly as the local replay, byte for byte.

One SparkSession (local[2]) serves every test here; runs are small so that CI stays quick.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import brokerage, ts
from console_support import policy_with
from kabuguard.cli import main
from kabuguard.events.reader import expand_paths
from kabuguard.policy import load_policy
from kabuguard.replay import replay
from kabuguard.sim import Config, simulate
from test_playbooks import PLAYBOOK, attacked_then_home

_OUTPUTS = ("decisions.jsonl", "alerts.jsonl", "rejected.jsonl")
_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark():
    from kabuguard.spark import SparkUnavailable, spark_session

    try:
        session = spark_session("local[2]", partitions=3)
    except SparkUnavailable as exc:
        pytest.skip(str(exc))
    yield session
    session.stop()


def _same_outputs(local: Path, distributed: Path) -> None:
    for name in _OUTPUTS:
        assert (distributed / name).read_bytes() == (local / name).read_bytes(), name


def test_spark_replay_equals_local_replay_on_a_simulated_multi_firm_brokerage(spark, tmp_path: Path) -> None:
    from kabuguard.spark import replay_spark

    simulate(Config(accounts=300, days=5, seed=5, firms=3, symbols=20), tmp_path / "sim")
    events = tmp_path / "sim" / "events"
    _shared_indicators(events)
    local = replay([events], tmp_path / "local", quiet=True)
    distributed = replay_spark([events], tmp_path / "spark", quiet=True)
    _same_outputs(tmp_path / "local", tmp_path / "spark")
    assert local.decisions and sum(local.decisions.values()) > 500
    assert (distributed.events, distributed.duplicates, distributed.decisions, distributed.alerts) == \
        (local.events, local.duplicates, local.decisions, local.alerts)
    assert {json.loads(line)["firm"] for line in (tmp_path / "spark" / "decisions.jsonl").open()} >= {"firm-a", "firm-b"}
    assert any("shared_indicator" in line for line in (tmp_path / "spark" / "decisions.jsonl").open())


def test_without_instrument_records_spark_reads_liquidity_from_the_bars_as_the_replay(spark, tmp_path: Path) -> None:
    from kabuguard.spark import replay_spark

    simulate(Config(accounts=300, days=5, seed=5, symbols=20), tmp_path / "sim")
    events = tmp_path / "sim" / "events"
    for path in events.glob("*.jsonl.gz"):
        lines = [line for line in gzip.open(path, "rt") if '"type":"instrument"' not in line.replace(" ", "")]
        with gzip.open(path, "wt") as fh:
            fh.writelines(lines)
    replay([events], tmp_path / "local", quiet=True)
    replay_spark([events], tmp_path / "spark", quiet=True)
    _same_outputs(tmp_path / "local", tmp_path / "spark")
    assert "thin_stock_buy" in (tmp_path / "spark" / "decisions.jsonl").read_text()


def _shared_indicators(events: Path) -> None:
    """Indicators arriving mid-run for addresses, devices and agents seen on day 3, so that every
    stage that owns an indicator type routes some."""
    seen: dict[str, set[str]] = {"ip": set(), "device": set(), "user_agent": set()}
    with gzip.open(sorted(events.glob("activity-*.jsonl.gz"))[2], "rt") as fh:
        for line in fh:
            event = json.loads(line)
            if event["type"] == "login":
                for kind, field in (("ip", "ip"), ("device", "device_id"), ("user_agent", "user_agent")):
                    if event.get(field) and len(seen[kind]) < 15:
                        seen[kind].add(event[field])
    lines = [{"event_id": f"ind-{kind}-{n}", "type": "indicator", "ts": "2025-04-08T12:00:00+09:00",
              "indicator_type": kind, "value": value, "source": "regulator"}
             for kind, values in seen.items() for n, value in enumerate(sorted(values))]
    (events / "indicators.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_campaigns_duplicates_bad_lines_and_parquet_in_and_out_through_the_cli(spark, tmp_path: Path) -> None:
    """Campaign membership crosses accounts; input order, rejections and Parquet rows as the replay reads them."""
    stream = brokerage(attack=True)
    events = stream.events
    half = len(events) // 2
    src = tmp_path / "in"
    src.mkdir()
    # Second file first on the command line; its events interleave in time with the first's.
    with gzip.open(src / "b.jsonl.gz", "wt") as fh:
        for e in events[half::2]:
            fh.write(json.dumps(e) + "\r\n")
        fh.write("{not json\n\n   \n")
        fh.write(json.dumps({"event_id": "x1", "type": "login", "ts": ts(3, 9, 0)}) + "\n")
        fh.write(json.dumps({"event_id": "x2", "type": "teleport", "ts": ts(3, 9, 0)}) + "\n")
        fh.write(json.dumps({**events[half], "ts": "yesterday"}) + "\n")
        fh.write(json.dumps(events[half + 2]) + "\n")  # a duplicate event_id
        login = next(e for e in events[half:] if e["type"] == "login")
        fh.write(json.dumps({**login, "firm": "firm-z"}) + "\n")  # its id at another firm: another event
    (src / "a.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events[:half]))
    rows = [dict(e, note="extra column") for e in events[half + 1::2]]
    columns = sorted({k for r in rows for k in r} - {"holdings"})
    # Whole numbers as floats, as pandas writes an integer column with nulls.
    table = pa.table({c: pa.array([r.get(c) for r in rows], pa.float64() if c in ("qty", "volume") else None)
                      for c in columns})
    pq.write_table(table, src / "c.parquet", row_group_size=7)
    pq.write_table(pa.table({"event_id": ["p1", "p2"], "type": ["order", "login"],
                             "ts": [ts(4, 9, 0), "not a time"]}), src / "d.parquet")
    inputs = [str(src / "b.jsonl.gz"), str(src / "a.jsonl"), str(src / "c.parquet"), str(src / "d.parquet")]

    runner = CliRunner()
    local = runner.invoke(main, ["replay", *inputs, "--out", str(tmp_path / "local"), "--quiet"])
    distributed = runner.invoke(main, ["replay", *inputs, "--out", str(tmp_path / "spark"), "--quiet",
                                       "--engine", "spark", "--master", "local[2]", "--partitions", "3", "--parquet"])
    assert distributed.exit_code == local.exit_code == 1
    assert distributed.output.replace("spark", "local") == local.output
    assert '"firm":"firm-z"' in (tmp_path / "spark" / "decisions.jsonl").read_text()
    _same_outputs(tmp_path / "local", tmp_path / "spark")
    rejected = [json.loads(line) for line in (tmp_path / "spark" / "rejected.jsonl").open()]
    assert len(rejected) == 6 and {r["file"] for r in rejected} == {inputs[0], inputs[3]}
    alerts = [json.loads(line) for line in (tmp_path / "spark" / "alerts.jsonl").open()]
    assert any(a["type"] == "campaign_alert" and len(a["accounts"]) > 1 for a in alerts)
    decisions = [json.loads(line) for line in (tmp_path / "spark" / "decisions.jsonl").open()]
    table = spark.read.parquet(str(tmp_path / "spark" / "decisions.parquet")).collect()
    assert sorted((d["event_id"], d["decision"], d["score"], d["reasons"]) for d in decisions) == \
        sorted((r["event_id"], r["decision"], r["score"], r["reasons"]) for r in table)


def test_missing_java_is_named_with_the_fix(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    src = brokerage(attack=False).write(tmp_path / "e.jsonl")
    result = CliRunner().invoke(main, ["replay", str(src), "--out", str(tmp_path / "out"), "--engine", "spark"])
    assert result.exit_code == 2
    assert "Java 17" in result.output and "JAVA_HOME" in result.output


def test_spark_options_need_the_spark_engine(tmp_path: Path) -> None:
    src = brokerage(attack=False).write(tmp_path / "e.jsonl")
    result = CliRunner().invoke(main, ["replay", str(src), "--out", str(tmp_path / "out"), "--partitions", "4"])
    assert result.exit_code == 2 and "--engine spark" in result.output


def test_spark_contains_as_the_replay_when_a_live_playbook_fires(spark, tmp_path: Path) -> None:
    """A campaign playbook's containment crosses accounts from the symbol stage; an account
    alert's stays in the final stage's own partition."""
    from kabuguard.spark import replay_spark

    src = attacked_then_home(tmp_path)
    policy = load_policy(policy_with(tmp_path, [{**PLAYBOOK, "dry_run": False},
                                                {"name": "contain_account", "alert": "account_alert",
                                                 "min_score": 0.9, "dry_run": False}]))
    replay([src], tmp_path / "local", policy=policy, quiet=True)
    replay_spark([src], tmp_path / "spark", policy=policy, quiet=True)
    _same_outputs(tmp_path / "local", tmp_path / "spark")
    alerts = [json.loads(line) for line in (tmp_path / "spark" / "alerts.jsonl").open()]
    assert {name for a in alerts for name in a.get("playbook", [])} == {"contain_campaign", "contain_account"}
    assert any("contained" in json.loads(line)["reasons"] for line in (tmp_path / "spark" / "decisions.jsonl").open())


# Names Hadoop would take for globs, URI syntax or hidden files; a broken link the replay reports.
_ODD_NAMES = ("x[1].jsonl", "x1.jsonl", "a:b.jsonl", "_under.jsonl", ".dot.jsonl", "c,d.jsonl", "q?.jsonl",
              "y{z}.jsonl", "star*.jsonl.gz", "p[1].parquet")


def _odd_names(folder: Path, names: tuple[str, ...] = _ODD_NAMES) -> list[list[dict]]:
    """The attacked brokerage dealt out over files called `names`, each a share of its events."""
    events = brokerage(attack=True).events
    folder.mkdir()
    shares = [events[n::len(names)] for n in range(len(names))]
    for name, share in zip(names, shares):
        lines = "".join(json.dumps(e) + "\n" for e in share)
        if name.endswith(".gz"):
            (folder / name).write_bytes(gzip.compress(lines.encode()))
        elif name.endswith(".parquet"):
            columns = sorted({k for e in share for k in e} - {"holdings"})
            pq.write_table(pa.table({c: [e.get(c) for e in share] for c in columns}), folder / name)
        else:
            (folder / name).write_text(lines)
    return shares


def test_local_file_names_are_read_as_named_and_a_broken_link_is_rejected_as_the_replay_does(
        spark, tmp_path: Path) -> None:
    """Hadoop would read x1.jsonl for x[1].jsonl and fail on a:b.jsonl; _under and .dot are skipped by
    both runners, as Hadoop's listing skips them."""
    from kabuguard.spark import replay_spark

    folder = tmp_path / "in"
    _odd_names(folder)
    (folder / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    local = replay([folder], tmp_path / "local", quiet=True)
    distributed = replay_spark([folder], tmp_path / "spark", quiet=True)
    _same_outputs(tmp_path / "local", tmp_path / "spark")
    assert (distributed.files, distributed.events, distributed.duplicates) == (local.files, local.events, 0)
    assert local.files == len(_ODD_NAMES) - 2 + 1  # no _under nor .dot, and the broken link
    [gone] = [json.loads(line) for line in (tmp_path / "spark" / "rejected.jsonl").open()]
    assert gone["file"].endswith("gone.jsonl") and gone["line"] == 0 and "unreadable file" in gone["reason"]


def test_a_uri_is_read_by_hadoop_with_its_name_taken_literally(spark, tmp_path: Path) -> None:
    """Remote files keep Hadoop's readers; glob characters and commas in their names are escaped.
    Names beginning with `_` or `.` are Hadoop's own (_SUCCESS, .crc): a folder's listing skips them.
    (Hadoop cannot take a `:` in a name.)"""
    from kabuguard.spark.read import expand, read_events

    written = tuple(name for name in _ODD_NAMES if ":" not in name)
    shares = dict(zip(written, _odd_names(tmp_path / "in", written)))
    files = expand(spark, [f"file://{tmp_path / 'in'}"])
    names = [name.rsplit("/", 1)[1] for name in files]
    assert sorted(names) == sorted(n for n in written if not n.startswith(("_", ".")))
    rows = read_events(spark, files, load_policy()).select("seq", "event_id", "reason").collect()
    assert not [r for r in rows if r["reason"]]
    read: dict[str, set[str]] = {name: set() for name in names}
    for r in rows:
        read[names[r["seq"] >> 40]].add(r["event_id"])
    assert read == {name: {e["event_id"] for e in shares[name]} for name in names}


def test_files_below_a_folder_named_with_an_underscore_or_a_dot_are_read_by_neither_runner(
        spark, tmp_path: Path) -> None:
    """A Spark export still being written keeps its part files in `_temporary/`: Hadoop's listing
    skips every name beginning with `_` or `.` below the folder, the replay read them all, and
    Spark's reader skipped such names only as the file's own. A folder named so is read."""
    from kabuguard.spark.read import expand, read_events

    events = brokerage(attack=False).events
    folder = tmp_path / "_exports" / "in"  # the named folder's own path is not looked at
    names = ("a.jsonl", "sub/b.jsonl", "_temporary/0/part-00000.jsonl", ".hidden/c.jsonl", "sub/_d.jsonl",
             "sub/.e.jsonl")
    for n, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("".join(json.dumps(e) + "\n" for e in events[n::len(names)]))
    read = ["a.jsonl", "sub/b.jsonl"]
    assert [p.relative_to(folder).as_posix() for p in expand_paths([folder])] == read
    for given in (folder, folder.as_uri()):
        files = expand(spark, [given])
        assert [name[len(str(given)) + 1:] for name in files] == read, files
    rows = read_events(spark, expand(spark, [folder.as_uri()]), load_policy()).select("event_id").collect()
    assert sorted(r["event_id"] for r in rows) == sorted(e["event_id"] for e in events[0::6] + events[1::6])
    assert replay([folder], tmp_path / "local", quiet=True).events == len(rows)


def test_no_event_files_or_a_missing_uri_is_a_usage_error_as_for_the_replay(spark, tmp_path: Path) -> None:
    """An empty result would look like a quiet month."""
    (tmp_path / "exports" / "sub").mkdir(parents=True)
    (tmp_path / "exports" / "events.json").write_text("{}\n")  # not a contract suffix
    for path, says in ((tmp_path / "exports", "no event files"), (f"file://{tmp_path}/gone", "no such file or folder")):
        for engine in ("local", "spark"):
            result = CliRunner().invoke(main, ["replay", str(path), "--out", str(tmp_path / engine), "--quiet",
                                               "--engine", engine])
            assert result.exit_code == 2 and says in result.output, (engine, path, result.output)
    assert not (tmp_path / "spark" / "decisions.jsonl").exists()


def test_an_interrupted_spark_replay_exits_130_marked_incomplete_and_a_finished_one_clears_the_mark(
        spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of an earlier run into the folder is left looking like the interrupted run's."""
    import kabuguard.spark.runner as runner

    stream = brokerage(attack=False)
    earlier = stream.write(tmp_path / "earlier.jsonl")
    events = tmp_path / "e.jsonl"
    events.write_text(earlier.read_text() + "{oops\n")
    out = tmp_path / "out"
    assert CliRunner().invoke(main, ["replay", str(earlier), "--out", str(out), "--quiet"]).exit_code == 0
    spark_args = ["replay", str(events), "--out", str(out), "--quiet", "--engine", "spark", "--master", "local[2]"]

    def interrupted(*args: object) -> None:  # Ctrl-C once the input is read
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_stages", interrupted)
    result = CliRunner().invoke(main, spark_args)
    assert result.exit_code == 130 and "INCOMPLETE" in result.output
    assert (out / "INCOMPLETE").exists() and not (out / "decisions.jsonl").exists()
    assert [json.loads(line)["file"] for line in (out / "rejected.jsonl").open()] == [str(events)]
    monkeypatch.undo()
    assert CliRunner().invoke(main, spark_args).exit_code == 1
    assert not (out / "INCOMPLETE").exists() and (out / "decisions.jsonl").stat().st_size > 0


def _own_process(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python args` in a process of its own, with this checkout's kabuguard: a new Spark session
    (this process's is the fixture's for every test)."""
    path = os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": path, **(env or {})})


def test_a_spark_that_does_not_start_exits_3_with_one_line_and_marks_the_folder_incomplete(tmp_path: Path) -> None:
    """Spark failing to start printed a traceback, exited 1 (finished, lines rejected) and left an
    earlier run's decisions.jsonl in --out, unmarked, looking like this run's."""
    events = brokerage(attack=False).write(tmp_path / "events.jsonl")
    out = tmp_path / "out"
    assert CliRunner().invoke(main, ["replay", str(events), "--out", str(out), "--quiet"]).exit_code == 0
    run = _own_process(["-m", "kabuguard.cli", "replay", str(events), "--out", str(out), "--quiet",
                        "--engine", "spark", "--master", "no-such-master"])
    assert run.returncode == 3 and "Traceback" not in run.stderr, run.stderr
    said = run.stderr.strip().splitlines()[-1]
    assert said.startswith("Error: Spark did not start on master no-such-master: ") and "INCOMPLETE" in said, said
    assert (out / "INCOMPLETE").exists() and not (out / "decisions.jsonl").exists()


# A new session's settings as its JVM has them: Spark's configuration, a Java system property a
# test sets through Java options, and the heap.
_SESSION_FACTS = """
import json
from kabuguard.spark import spark_session
spark = spark_session("local[1]")
jvm = spark.sparkContext._jvm
print(json.dumps({"conf": dict(spark.sparkContext.getConf().getAll()),
                  "property": jvm.java.lang.System.getProperty("kg.user.option"),
                  "heap_mb": jvm.java.lang.Runtime.getRuntime().maxMemory() // 2**20}))
spark.stop()
"""


def _new_session(env: dict[str, str]) -> dict:
    """`_SESSION_FACTS` of a session the runner starts in a process of its own, with `env`."""
    run = _own_process(["-c", _SESSION_FACTS], env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_log_configuration_planted_in_the_temporary_folder_is_not_used(tmp_path: Path) -> None:
    """The runner took $TMPDIR/kabuguard-spark-log4j2.properties as it found it: another local user
    could write one first, with a File appender of theirs taking Spark's logs."""
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    taken = tmp_path / "taken.log"
    (shared / "kabuguard-spark-log4j2.properties").write_text(
        "rootLogger.level = info\nrootLogger.appenderRef.f.ref = f\nappender.f.type = File\n"
        f"appender.f.name = f\nappender.f.fileName = {taken}\nappender.f.layout.type = PatternLayout\n"
        "appender.f.layout.pattern = %m%n\n")
    facts = _new_session({"TMPDIR": str(shared)})
    assert not taken.exists(), taken.read_text()[:300]
    assert "kabuguard/spark/log4j2.properties" in facts["conf"]["spark.driver.extraJavaOptions"]


def test_a_local_session_listens_on_the_loopback_address_alone_and_has_no_spark_ui(spark) -> None:
    """A local run needs no network, yet the driver bound the machine's external address and the
    unauthenticated Spark UI listened on every interface (the cached blocks hold customer data)."""
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.host") == conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert conf.get("spark.ui.enabled") == "false" and spark.sparkContext.uiWebUrl is None


def _spark_defaults(folder: Path, text: str) -> dict[str, str]:
    """`folder` made a SPARK_CONF_DIR whose spark-defaults.conf is `text`: the environment to give it."""
    folder.mkdir()
    (folder / "spark-defaults.conf").write_text(text)
    return {"SPARK_CONF_DIR": str(folder)}


def test_a_new_session_keeps_the_java_options_and_memory_of_spark_defaults_conf(tmp_path: Path) -> None:
    """The runner replaced both extraJavaOptions with its own and set 4 GB of driver memory over
    spark-defaults.conf's, which docs/spark.md says is where to configure Spark."""
    facts = _new_session(_spark_defaults(tmp_path / "conf", "# the user's\n"
                                         "spark.driver.memory              1234m\n"
                                         "spark.driver.extraJavaOptions    -Dkg.user.option=from-spark-defaults\n"
                                         "spark.executor.extraJavaOptions  -XX:+UseG1GC -Dkg.exec=from-spark-defaults\n"
                                         "spark.driver.host                localhost\n"))
    conf = facts["conf"]
    # An address the user chose is theirs, both settings (the bind address follows the host).
    assert conf["spark.driver.host"] == "localhost" and "spark.driver.bindAddress" not in conf, conf
    assert facts["property"] == "from-spark-defaults" and conf["spark.driver.memory"] == "1234m", facts
    assert facts["heap_mb"] < 1300  # the JVM's heap is the user's 1234m, not the runner's 4 GB
    assert conf["spark.executor.extraJavaOptions"].endswith(" -XX:+UseG1GC -Dkg.exec=from-spark-defaults")
    for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        assert "log4j2.properties" in conf[key], conf[key]  # the runner's quiet logs as well


def test_the_configuration_read_is_the_environments_then_spark_defaults_then_pyspark_submit_args(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """spark-submit's own order: each source over the one before."""
    from kabuguard.spark.session import configured

    for name, value in {**_spark_defaults(tmp_path / "conf", "spark.master spark://conf:7077\n"
                                          "spark.driver.memory=5g\nspark.executor.cores : 3\n"),
                        "SPARK_DRIVER_MEMORY": "6g", "MASTER": "spark://env:7077",
                        "PYSPARK_SUBMIT_ARGS": "--driver-memory 7g --conf 'spark.executor.extraJavaOptions=-Da -Db' "
                                               "pyspark-shell"}.items():
        monkeypatch.setenv(name, value)
    assert configured() == {"spark.master": "spark://conf:7077", "spark.driver.memory": "7g",
                            "spark.executor.cores": "3", "spark.executor.extraJavaOptions": "-Da -Db"}


def test_rejected_lines_reach_the_driver_a_partition_at_a_time_and_are_written_as_the_replay_writes_them(
        tmp_path: Path) -> None:
    """Every rejected row was collected to the driver at once: a badly formatted export of many GB
    filled its memory. Here a limit on one job's results to the driver (spark.driver.maxResultSize,
    1 MB) that the 6,000 rejections together pass and one partition of them does not."""
    noise = random.Random(6)
    bad = [{"event_id": f"b{n}", "type": noise.randbytes(300).hex(), "ts": ts(1, 9, 0)} for n in range(6000)]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in brokerage(attack=False).events[:50] + bad))
    assert CliRunner().invoke(main, ["replay", str(events), "--out", str(tmp_path / "local"), "--quiet"]).exit_code == 1
    run = _own_process(["-m", "kabuguard.cli", "replay", str(events), "--out", str(tmp_path / "spark"), "--quiet",
                        "--engine", "spark", "--master", "local[2]", "--partitions", "8"],
                       _spark_defaults(tmp_path / "conf", "spark.driver.maxResultSize 1m\n"))
    assert run.returncode == 1 and "6000 rejected lines" in run.stderr, run.stderr[-3000:]
    _same_outputs(tmp_path / "local", tmp_path / "spark")


def test_spark_refuses_an_input_that_is_an_output_of_the_replay(spark, tmp_path: Path) -> None:
    """Spark deleted feed/alerts.jsonl, an earlier output to it, before its lazy read of it."""
    feed = tmp_path / "feed"
    feed.mkdir()
    brokerage().write(feed / "alerts.jsonl")
    result = CliRunner().invoke(main, ["replay", str(feed), "--out", str(feed), "--engine", "spark",
                                       "--master", "local[2]", "--quiet"])
    assert result.exit_code == 2 and "is an output of a replay into" in result.output, result.output
    assert (feed / "alerts.jsonl").stat().st_size > 0 and not (feed / "INCOMPLETE").exists()


def test_parquet_values_and_files_the_replay_rejects_are_rejected_alike_and_a_remote_file_spark_refuses_too(
        spark, tmp_path: Path) -> None:
    """Nanosecond or `JST` timestamps and invalid UTF-8 stopped both engines with a traceback; a
    remote file Spark's Parquet reader refuses (a column named twice, nanoseconds) stopped the job."""
    from kabuguard.spark import replay_spark
    from kabuguard.spark.read import expand, read_events
    from test_events import LOGIN, _login_table

    folder = tmp_path / "in"
    folder.mkdir()
    nanos = pa.array([1744070400_123456789], pa.int64())
    tables = {"ns": _login_table(nanos.view(pa.timestamp("ns", "UTC"))),
              "jst": _login_table(pa.array([1744070400_000000], pa.int64()).view(pa.timestamp("us", "JST"))),
              "utf8": _login_table(pa.array([LOGIN["ts"]]), account_id=pa.array([b"A\xff1"]).view(pa.string())),
              "twice": _login_table(pa.array([LOGIN["ts"]])).append_column("ts", pa.array([LOGIN["ts"]]))}
    for name, table in tables.items():
        pq.write_table(table, folder / f"{name}.parquet")
    (folder / "good.jsonl").write_text(json.dumps({**LOGIN, "event_id": "j1"}) + "\n")
    replay([folder], tmp_path / "local", quiet=True)
    replay_spark([folder], tmp_path / "spark", quiet=True)
    _same_outputs(tmp_path / "local", tmp_path / "spark")
    rejected = {Path(r["file"]).stem: r["reason"] for r in map(json.loads, (tmp_path / "spark" / "rejected.jsonl").open())}
    assert set(rejected) == {"utf8", "twice"} and "`account_id`" in rejected["utf8"], rejected
    files = expand(spark, [f"file://{folder}"])
    rows = read_events(spark, files, load_policy()).select("seq", "event_id", "reason").collect()
    read = {Path(files[r["seq"] >> 40]).stem: (r["seq"] & (2**40 - 1), r["event_id"], r["reason"]) for r in rows}
    assert read["jst"][1] == "l0" and read["good"][1] == "j1" and "`account_id`" in read["utf8"][2]
    assert read["twice"][0] == read["ns"][0] == 0  # the whole file, named in the reason
    assert "`ts`" in read["twice"][2] and "NANOS" in read["ns"][2], read


def test_a_callers_session_on_another_file_system_with_its_own_settings_decides_as_the_replay(
        spark, tmp_path: Path) -> None:
    """A notebook's session: adaptive execution on, Tokyo time, and a default file system that is
    not the local disk (HDFS on YARN; here viewfs falling back to another folder). Its part files
    went there and the run wrote empty decisions, reporting success."""
    from kabuguard.spark import replay_spark

    events = brokerage().write(tmp_path / "events.jsonl")
    replay([events], tmp_path / "local", quiet=True)
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    default_fs = hadoop.get("fs.defaultFS")
    hadoop.set("fs.defaultFS", "viewfs://elsewhere/")
    hadoop.set("fs.viewfs.mounttable.elsewhere.linkFallback", (tmp_path / "elsewhere").as_uri())
    spark.conf.set("spark.sql.adaptive.enabled", "true")
    spark.conf.set("spark.sql.session.timeZone", "Asia/Tokyo")
    try:
        replay_spark([events], tmp_path / "spark", quiet=True)
        assert (spark.conf.get("spark.sql.adaptive.enabled"), spark.conf.get("spark.sql.session.timeZone")) == \
            ("true", "Asia/Tokyo")  # the caller's own again
    finally:
        hadoop.set("fs.defaultFS", default_fs)
        spark.conf.set("spark.sql.adaptive.enabled", "false")
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    _same_outputs(tmp_path / "local", tmp_path / "spark")
    assert (tmp_path / "spark" / "decisions.jsonl").stat().st_size > 0
