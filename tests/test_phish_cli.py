"""`kabuguard phish score`: JSON lines out, CSV in, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kabuguard.cli import main


def test_score_reads_lines_and_writes_json(tmp_path: Path) -> None:
    source = tmp_path / "domains.txt"
    source.write_text("sbisec.co.jp\n# a comment\nhttps://sbisec-login.top/ETGate\n\nexample.org\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["phish", "score", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["brand"] for r in rows] == ["sbi-sec", "sbi-sec", None]
    assert rows[0]["score"] == 0.0 and rows[1]["score"] >= 0.9 and rows[2]["score"] < 0.5
    assert {"input", "registered_domain", "brand", "score", "reasons"} <= set(rows[1])
    assert {r["code"] for r in rows[1]["reasons"]} >= {"brand-token", "cloned-login-path", "keyword", "suspicious-tld"}


def test_score_reads_csv_with_a_url_column_and_flags_rejects() -> None:
    csv_text = 'date,URL,description\n2025/01/01,https://rakuten-sec.co.jp.login.xyz/,x\n2025/01/02,"http://",y\n'
    result = CliRunner().invoke(main, ["phish", "score", "-"], input=csv_text)
    assert result.exit_code == 1
    assert [json.loads(line)["brand"] for line in result.stdout.splitlines()] == ["rakuten-sec"]
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(log["event"] == "rejected" and log["line"] == 3 for log in logs)


def test_usage_errors_exit_2_and_help_everywhere() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["phish", "score", "-", "--registry", "nope"], input="x.jp\n").exit_code == 2
    for command in ([], ["score"], ["watch"], ["evaluate"], ["brands"]):
        result = runner.invoke(main, ["phish", *command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output
    overview = runner.invoke(main, ["phish", "--help"]).output
    assert "Everything runs offline" not in overview and "connects out" in overview  # watch ws:// does


BAD_HOSTS = [b'"sbi-sec.top"', b"sbi-sec.top,2024-01-01", b"sbi-sec.top;", b"sbisec-login.top\tsbi-sec.xyz",
             b"http://sbisec%40evil%00.top/", b"sbisec-\xff.top", b"https://sbisec-\xfflogin.top/etgate"]


def test_lines_whose_host_is_no_host_name_or_not_utf8_are_rejected(tmp_path: Path) -> None:
    source = b"\n".join([*BAD_HOSTS, b"sbisec-login.top"]) + b"\n"
    result = CliRunner().invoke(main, ["phish", "score", "-"], input=source)
    assert result.exit_code == 1
    assert [json.loads(line)["input"] for line in result.stdout.splitlines()] == ["sbisec-login.top"]
    assert [log["line"] for log in map(json.loads, result.stderr.splitlines()) if log["event"] == "rejected"] == [1, 2, 3, 4, 5, 6, 7]
    stream = tmp_path / "stream.txt"
    stream.write_bytes(source)
    result = CliRunner().invoke(main, ["phish", "watch", str(stream), "--quiet"])
    assert result.exit_code == 1
    assert [json.loads(line)["domain"] for line in result.stdout.splitlines()] == ["sbisec-login.top"]
    assert json.loads(result.stderr.splitlines()[-1])["rejected"] == len(BAD_HOSTS)
    result = CliRunner().invoke(main, ["phish", "watch", "-", "--quiet"], input=source)
    assert result.exit_code == 1 and json.loads(result.stderr.splitlines()[-1])["rejected"] == len(BAD_HOSTS)


def test_a_scoring_file_with_a_missing_or_bad_weight_is_a_usage_error(tmp_path: Path) -> None:
    bundled = (Path(__file__).parents[1] / "kabuguard/data/phish/scoring.yaml").read_text(encoding="utf-8")
    for broken, named in ((bundled.replace("  ip-host: 0.15\n", ""), "no weight for reason code ip-host"),
                          (bundled.replace("  ip-host: 0.15\n", "  ip-host: 1.5\n"), "ip-host must be a number in [0, 1]"),
                          (bundled.replace("threshold: 0.5", "threshold: high"), "threshold must be a number in [0, 1]")):
        scoring = tmp_path / "scoring.yaml"
        scoring.write_text(broken, encoding="utf-8")
        result = CliRunner().invoke(main, ["phish", "score", "-", "--scoring", str(scoring)], input="sbisec-login.top\n203.0.113.9\n")
        assert result.exit_code == 2 and named in result.output and not result.stdout.startswith("{"), result.output
