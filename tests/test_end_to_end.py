"""The whole embedded path on a small simulated brokerage: simulate, replay, evaluate, demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kabuguard.cli import main
from kabuguard.engine import Pipeline
from kabuguard.events import total_order
from kabuguard.replay import read_events


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "run"
    result = CliRunner().invoke(main, ["simulate", "--out", str(out), "--accounts", "400", "--days", "10",
                                       "--seed", "3", "--symbols", "40", "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_no_look_ahead_on_a_simulated_run(sim: Path) -> None:
    events, rejected, _ = read_events([sim / "events"], quiet=True)
    assert not rejected
    ordered = total_order(events).events
    whole = Pipeline()
    full = [whole.process(e) for e in ordered]
    cut = len(ordered) * 2 // 3
    part = Pipeline()
    assert [part.process(e) for e in ordered[:cut]] == full[:cut]


def test_replay_then_evaluate_writes_metrics_and_report(sim: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    replayed = runner.invoke(main, ["replay", str(sim / "events"), "--out", str(tmp_path / "run"), "--quiet"])
    assert replayed.exit_code == 0, replayed.output
    labels = sim / "labels.jsonl"
    decided = {json.loads(line)["event_id"] for line in (tmp_path / "run" / "decisions.jsonl").open()}
    activity = {json.loads(line)["event_id"] for line in labels.open() if json.loads(line).get("kind") != "pump_episode"}
    assert decided == activity
    evaluated = runner.invoke(main, ["evaluate", "--labels", str(labels), "--run", str(tmp_path / "run"),
                                     "--out", str(tmp_path / "eval")])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics  # the evaluation's own tests check the figures
    assert (tmp_path / "eval" / "report.html").stat().st_size > 1000


def test_demo_runs_end_to_end_and_refuses_a_foreign_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--accounts", "300", "--days", "6", "--quiet"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "report:" in first.output and (out / "eval" / "report.html").exists()
    assert runner.invoke(main, args).exit_code == 0  # a previous demo is replaced
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    refused = runner.invoke(main, ["demo", "--out", str(foreign), "--quiet"])
    assert refused.exit_code == 2 and (foreign / "notes.txt").exists()
    empty = tmp_path / "empty"
    empty.mkdir()  # made for it beforehand: nothing to protect
    assert runner.invoke(main, ["demo", "--out", str(empty), "--accounts", "300", "--days", "6", "--quiet"]).exit_code == 0
