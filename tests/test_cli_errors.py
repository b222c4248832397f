"""Bad command-line input is a usage error (exit 2) or a one-line error (exit 1), never a traceback,
and leaves nothing half-written behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kabuguard.cli import main
from kabuguard.intel.pseudonym import KEY_ENV


@pytest.mark.parametrize("start", ["9999-12-30", "0001-01-01"])
def test_a_simulation_start_outside_the_calendar_is_a_usage_error_and_writes_nothing(tmp_path: Path, start: str) -> None:
    out = tmp_path / "sim"
    result = CliRunner().invoke(main, ["simulate", "--out", str(out), "--start", start, "--days", "5", "--quiet"])
    assert result.exit_code == 2 and "outside" in result.output, result.output
    assert not (out / "events").exists() and not (out / "labels.jsonl").exists()


@pytest.mark.parametrize("rate", ["-5", "0", "nan"])
def test_a_key_rate_limit_must_be_a_positive_number(tmp_path: Path, rate: str) -> None:
    result = CliRunner().invoke(main, ["keys", "create", "--firm", "a", "--rate-limit", rate,
                                       "--db", f"sqlite:///{tmp_path}/kg.db"])
    assert result.exit_code == 2 and "--rate-limit" in result.output, result.output


def test_a_database_that_cannot_be_opened_is_one_line_without_its_password(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/no/such/folder/kg.db"
    for command in (["keys", "list"], ["users", "list"]):
        result = CliRunner().invoke(main, [*command, "--db", missing])
        assert result.exit_code == 1 and "cannot open the database" in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    result = CliRunner().invoke(main, ["keys", "list", "--db", "postgresql://someone:hunter2@127.0.0.1:1/x"])
    assert result.exit_code == 1 and "hunter2" not in result.output and "cannot open the database" in result.output


@pytest.mark.parametrize("setting, url", [
    ("--db", "mysql://kg:S3cretPW@127.0.0.1:1/kg"), ("--db", "postgres://kg:S3cretPW@127.0.0.1:1/kg"),
    ("--state", "http://kg:S3cretPW@127.0.0.1:1/0"),
])
def test_a_url_in_an_error_never_shows_its_password(setting: str, url: str) -> None:
    """`serve --db 'postgres://kg:S3cretPW@db/kg'` printed the URL, password and all, in its usage error."""
    result = CliRunner().invoke(main, ["serve", setting, url])
    assert result.exit_code in (1, 2) and "S3cretPW" not in result.output and ":***@" in result.output, result.output


@pytest.mark.parametrize("urls, shown", [("ftp://u:S3cretPW@h.example/x", "'ftp://u:***@h.example/x'"),
                                         ("acme=h.example/x", "'acme=h.example/x'")])  # no password: shown whole
def test_a_webhook_url_in_an_error_never_shows_its_password(urls: str, shown: str) -> None:
    result = CliRunner().invoke(main, ["serve"], env={"KABUGUARD_WEBHOOK_URLS": urls})
    assert result.exit_code == 2 and f"webhook_urls: expected URL or FIRM=URL with an http(s) URL, got {shown}" \
        in result.output, result.output


@pytest.mark.parametrize("command", ["replay", "evaluate", "demo"])
def test_an_output_folder_that_cannot_be_made_is_a_usage_error_before_any_work(tmp_path: Path, command: str) -> None:
    """It was a traceback with exit 1, which means rejected input lines, after the work was done
    (before it, for `demo`)."""
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "e.jsonl").write_text("")
    out = str(tmp_path / "file" / "out")
    args = {"replay": ["replay", str(tmp_path / "e.jsonl"), "--out", out],
            "evaluate": ["evaluate", "--labels", str(tmp_path / "e.jsonl"), "--run", str(tmp_path), "--out", out],
            "demo": ["demo", "--out", out, "--quiet"]}[command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "cannot create the output folder" in result.output, result.output


def _decided_run(tmp_path: Path) -> Path:
    """A replay's output folder with one login decided, and its event."""
    login = {"event_id": "l1", "type": "login", "ts": "2025-04-10T10:00:00+09:00", "account_id": "A1", "success": True,
             "ip": "203.0.113.7", "device_id": "d1", "user_agent": "UA", "session_id": "s1"}
    (tmp_path / "e.jsonl").write_text(json.dumps(login) + "\n")
    (tmp_path / "decisions.jsonl").write_text(json.dumps({"event_id": "l1", "ts": login["ts"], "type": "login",
                                                          "account_id": "A1", "decision": "allow", "score": 0.1,
                                                          "reasons": []}) + "\n")
    (tmp_path / "alerts.jsonl").write_text("")
    return tmp_path


@pytest.mark.parametrize("command", ["export", "pull"])
def test_an_intel_output_whose_folder_cannot_be_made_is_a_usage_error_before_any_work(tmp_path: Path, command: str) -> None:
    """It was a traceback with exit 1 (which means rejected input), after the work was done."""
    (tmp_path / "file").write_text("not a folder")
    out = str(tmp_path / "file" / "out.json")
    run = _decided_run(tmp_path)
    args = (["intel", "export", "--quiet", "--run", str(run), "--events", str(run / "e.jsonl"), "--firm", "a", "--out", out]
            if command == "export" else  # nothing listens on port 9 of loopback: the folder is checked first
            ["intel", "pull", "http://127.0.0.1:9/taxii2/", "--collection", "shared", "--out", out])
    result = CliRunner().invoke(main, args, env={KEY_ENV: "test-only-key-not-a-secret-0123456789",
                                                 "KABUGUARD_TAXII_KEY": "kg_test"})
    assert result.exit_code == 2 and "cannot create the output folder" in result.output, result.output


def test_intel_export_makes_the_folder_of_its_bundle(tmp_path: Path) -> None:
    """As replay, evaluate and simulate make their output folders."""
    run = _decided_run(tmp_path)
    out = tmp_path / "bundles" / "april" / "b.json"
    result = CliRunner().invoke(main, ["intel", "export", "--quiet", "--run", str(run), "--events", str(run / "e.jsonl"),
                                       "--firm", "a", "--out", str(out)], env={KEY_ENV: "test-only-key-not-a-secret-0123456789"})
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["type"] == "bundle"


def test_case_labels_leave_an_earlier_file_whole_when_the_database_cannot_be_opened(tmp_path: Path) -> None:
    """The file was opened for writing, so emptied, before the database was."""
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"event_id": "e1", "fraud": true}\n')
    result = CliRunner().invoke(main, ["cases", "labels", "--out", str(labels), "--db", f"sqlite:///{tmp_path}/no/such/kg.db"])
    assert result.exit_code == 1 and "cannot open the database" in result.output, result.output
    assert labels.read_text() == '{"event_id": "e1", "fraud": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["labels.jsonl"]  # no partial file left


def test_case_labels_into_a_folder_that_cannot_be_made_is_a_usage_error(tmp_path: Path) -> None:
    """It was a traceback with exit 1 (which means rejected input)."""
    (tmp_path / "file").write_text("not a folder")
    result = CliRunner().invoke(main, ["cases", "labels", "--out", str(tmp_path / "file" / "l.jsonl"),
                                       "--db", f"sqlite:///{tmp_path}/kg.db"])
    assert result.exit_code == 2 and "cannot create the output folder" in result.output, result.output
    assert not (tmp_path / "kg.db").exists()  # refused before any work


def test_case_labels_are_written_into_a_new_folder(tmp_path: Path) -> None:
    out = tmp_path / "eval" / "labels.jsonl"
    result = CliRunner().invoke(main, ["cases", "labels", "--out", str(out), "--db", f"sqlite:///{tmp_path}/kg.db"])
    assert result.exit_code == 0 and "0 labels written" in result.output, result.output
    assert out.read_text() == "" and [p.name for p in out.parent.iterdir()] == ["labels.jsonl"]
