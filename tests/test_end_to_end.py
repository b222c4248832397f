"""The whole embedded path on a small simulated brokerage: simulate, replay, evaluate, demo."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import kabuguard.policy
from kabuguard.cli import main
from kabuguard.engine import Pipeline
from kabuguard.events import total_order
from kabuguard.replay import read_events

DOCS = Path(__file__).resolve().parent.parent / "docs"


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


def test_every_reason_a_decision_or_alert_can_carry_is_documented(sim: Path, tmp_path: Path) -> None:
    """docs/reason-codes.md lacked `degraded`, the reason of the service's fail-mode answers."""
    from kabuguard.replay import replay
    from kabuguard.service.decider import DEGRADED

    replay([sim / "events"], tmp_path, quiet=True)
    lines = [json.loads(line) for name in ("decisions.jsonl", "alerts.jsonl") for line in (tmp_path / name).open()]
    emitted = {reason for line in lines for reason in line.get("reasons") or ()}
    documented = set(re.findall(r"^\| `(\w+)` \|", (DOCS / "reason-codes.md").read_text(), re.MULTILINE))
    assert len(emitted) > 20 and emitted | {DEGRADED} <= documented, sorted((emitted | {DEGRADED}) - documented)


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


def test_demo_takes_a_policy_checked_as_replay_checks_it(tmp_path: Path) -> None:
    """docs/policy.md names `demo` among the commands taking --policy; it had no such option."""
    raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
    out, policy = tmp_path / "demo", tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump({**raw, "bias": {"login": -6.9, "order": -6.5}}))
    refused = CliRunner().invoke(main, ["demo", "--out", str(out), "--policy", str(policy), "--quiet"])
    assert refused.exit_code == 2 and "bias.account_change" in refused.output, refused.output
    assert not out.exists()  # refused before any work
    raw["decisions"]["order"]["review"] = 0.0  # every order held at least
    policy.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--accounts", "100", "--days", "2", "--quiet",
                                       "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    orders = [d["decision"] for d in map(json.loads, (out / "run" / "decisions.jsonl").open()) if d["type"] == "order"]
    assert orders and set(orders) <= {"review", "block"}


def _renumbered_per_firm(sim: Path, out: Path) -> None:
    """The run as a regulator pools it: each firm numbers its events e-1, e-2, ... (labels alike)."""
    import gzip

    new_ids: dict[str, str] = {}
    counters: dict[str, int] = {}
    (out / "events").mkdir(parents=True)
    for path in sorted((sim / "events").iterdir()):
        if not path.name.endswith(".jsonl.gz"):
            (out / "events" / path.name).write_bytes(path.read_bytes())
            continue
        lines = []
        for line in gzip.open(path, "rt"):
            event = json.loads(line)
            if event.get("firm"):
                counters[event["firm"]] = counters.get(event["firm"], 0) + 1
                new_ids[event["event_id"]] = event["event_id"] = f"e-{counters[event['firm']]}"
            lines.append(json.dumps(event) + "\n")
        with gzip.open(out / "events" / path.name, "wt") as fh:
            fh.writelines(lines)
    with (out / "labels.jsonl").open("w") as fh:
        for line in (sim / "labels.jsonl").open():
            label = json.loads(line)
            if "event_id" in label:
                label["event_id"] = new_ids.get(label["event_id"], label["event_id"])
            fh.write(json.dumps(label) + "\n")


def test_a_pooled_run_whose_firms_number_events_alike_decides_and_evaluates_as_with_unique_ids(
        tmp_path: Path) -> None:
    """Two firms' e-1 were one event (the second firm's dropped), and evaluation, alert ids and
    the intel export keyed by `event_id` alone mixed the firms up."""
    from kabuguard.sim import Config, simulate

    simulate(Config(accounts=300, days=5, seed=5, firms=2, symbols=20), tmp_path / "unique")
    _renumbered_per_firm(tmp_path / "unique", tmp_path / "pooled")
    runner = CliRunner()
    figures, bundles = {}, {}
    for name in ("unique", "pooled"):
        folder = tmp_path / name
        assert runner.invoke(main, ["replay", str(folder / "events"), "--out", str(folder / "run"), "--quiet"]).exit_code == 0
        done = runner.invoke(main, ["evaluate", "--labels", str(folder / "labels.jsonl"), "--run", str(folder / "run"),
                                    "--out", str(folder / "eval")])
        assert done.exit_code == 0, done.output
        metrics = json.loads((folder / "eval" / "metrics.json").read_text())
        figures[name] = (metrics["detection"], metrics["value_stopped"])
        alert_ids = [(a.get("firm"), a["alert_id"]) for a in map(json.loads, (folder / "run" / "alerts.jsonl").open())]
        assert len(alert_ids) == len(set(alert_ids)) > 0  # unique at their firm
        bundles[name] = []
        for firm in ("firm-a", "firm-b"):
            exported = runner.invoke(main, ["intel", "export", "--run", str(folder / "run"), "--events", str(folder / "events"),
                                            "--firm", firm, "--out", str(folder / "bundle.json"), "--quiet"],
                                     env={"KABUGUARD_INTEL_KEY": "test-key-not-a-secret"})
            assert exported.exit_code == 0, exported.output
            bundle = json.loads((folder / "bundle.json").read_text())
            bundles[name].append(sorted(o["type"] for o in bundle["objects"]))
    assert figures["pooled"] == figures["unique"]
    assert bundles["pooled"] == bundles["unique"]


@pytest.mark.parametrize("stage", ["replay", "evaluate"])
def test_a_demo_whose_replay_or_evaluation_rejected_lines_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   stage: str) -> None:
    """It exited 0 whatever was rejected, where replay and evaluate exit 1."""
    import kabuguard.sim

    simulate = kabuguard.sim.simulate

    def with_a_bad_line(config: kabuguard.sim.Config, out: Path, **kwargs: object) -> dict:
        done = simulate(config, out, **kwargs)
        bad = out / "events" / "bad.jsonl" if stage == "replay" else out / "labels.jsonl"
        with bad.open("a") as fh:
            fh.write("{not json\n")
        return done

    monkeypatch.setattr(kabuguard.sim, "simulate", with_a_bad_line)
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--accounts", "100", "--days", "2", "--quiet"])
    assert result.exit_code == 1 and "report:" in result.output, result.output
    assert "rejected" in result.output
