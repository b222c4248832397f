"""`kabuguard intel stats`: the FSA's monthly figures and targeted symbols, summed across firms."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kabuguard.cli import main
from kabuguard.intel.pseudonym import KEY_ENV

FIRMS = ("firm-a", "firm-b", "firm-c")


def bundles(three_firms: Path, tmp_path: Path) -> list[Path]:
    out = []
    for firm in FIRMS:
        path = tmp_path / f"{firm}.json"
        result = CliRunner().invoke(main, ["intel", "export", "--quiet", "--run", str(three_firms / "run"), "--events",
                                           str(three_firms / "sim" / "events"), "--firm", firm, "--out", str(path)],
                                    env={KEY_ENV: f"{firm}-own-test-key-0123456789"})
        assert result.exit_code == 0, result.output
        out.append(path)
    return out


def _stats(*args: str) -> dict:
    result = CliRunner().invoke(main, ["intel", "stats", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_figures_add_up_across_firms_and_count_a_resent_bundle_once(three_firms: Path, tmp_path: Path) -> None:
    paths = bundles(three_firms, tmp_path)
    per_firm = [_stats(str(p)) for p in paths]
    together = _stats(*map(str, paths))
    assert _stats(*map(str, paths), str(paths[0])) == together
    month = together["months"][0]
    assert month["month"] == "2025-04" and month["firms_affected"] == 3
    for field in ("unauthorised_access_count", "unauthorised_trade_count", "buy_amount_jpy"):
        assert month[field] == round(sum(s["months"][0][field] for s in per_firm), 2) > 0
    assert month["buy_amount_oku_yen"] == round(month["buy_amount_jpy"] / 1e8, 4)
    # Campaigns reach every firm with the same target: the top symbols are seen at several firms.
    top = together["top_symbols"]
    assert top == sorted(top, key=lambda s: -s["buy_notional_jpy"])
    assert max(len(s["firms"]) for s in top) >= 2
    campaign_symbols = {c["symbol"] for c in json.loads((three_firms / "sim" / "simulation.json").read_text())["campaigns"]}
    assert top[0]["symbol"] in campaign_symbols


def test_the_table_and_usage_errors() -> None:
    result = CliRunner().invoke(main, ["intel", "stats"])
    assert result.exit_code == 2 and "bundle files, or --taxii" in result.output


def test_a_server_that_cannot_be_reached_is_an_error_not_a_traceback() -> None:
    """`intel stats --taxii` let requests' ConnectionError through (`intel pull` names the server)."""
    result = CliRunner().invoke(main, ["intel", "stats", "--taxii", "http://127.0.0.1:9/taxii2/", "--collection", "x"],
                                env={"KABUGUARD_TAXII_KEY": "kg_x"})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: http://127.0.0.1:9/taxii2/: ")


def test_a_report_that_breaks_its_definition_is_left_out_and_named(three_firms: Path, tmp_path: Path) -> None:
    path = bundles(three_firms, tmp_path)[0]
    bundle = json.loads(path.read_text())
    good = _stats(str(path))
    report = next(o for o in bundle["objects"] if o["type"] == "x-kabuguard-monthly-report")
    broken = dict(report, id="x-kabuguard-monthly-report--" + "9" * 8 + "-9999-4999-8999-" + "9" * 12,
                  unauthorised_access_count="n/a")
    no_month = {k: v for k, v in report.items() if k != "month"} | {"id": broken["id"].replace("9999-4999", "9998-4998")}
    bundle["objects"] += [broken, no_month]
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(bundle))
    result = CliRunner().invoke(main, ["intel", "stats", "--json", str(bad_path)])
    assert result.exit_code == 1
    figures = json.loads(result.stdout)
    assert figures["months"] == good["months"]  # the rest is counted as before
    assert [s["object"] for s in figures["skipped"]] == [broken["id"], no_month["id"]]
    assert "unauthorised_access_count" in figures["skipped"][0]["reason"] and "month" in figures["skipped"][1]["reason"]
    assert f"skipped {broken['id']}" in result.stderr


def test_a_report_whose_json_types_are_wrong_is_left_out_and_named(three_firms: Path, tmp_path: Path) -> None:
    """stix2 coerces "5" to 5 and 202504 to "202504", so such a report passed the check and the
    sums died with a TypeError (a traceback here, a 500 for every reader of the endpoint)."""
    path = bundles(three_firms, tmp_path)[0]
    bundle = json.loads(path.read_text())
    good = _stats(str(path))
    report = next(o for o in bundle["objects"] if o["type"] == "x-kabuguard-monthly-report")
    symbol = next(o for o in bundle["objects"] if o["type"] == "x-kabuguard-targeted-symbol")
    changes = [(report, "unauthorised_access_count", "5"), (report, "month", 202504), (report, "sell_amount_jpy", True),
               (symbol, "buy_orders", 2.0), (symbol, "accounts", [1]), (symbol, "first_seen", 1)]
    bad = [dict(obj, id=f"{obj['type']}--{n}" + "9" * 7 + "-9999-4999-8999-" + "9" * 12, **{field: value})
           for n, (obj, field, value) in enumerate(changes)]
    named = {"type": "identity", "spec_version": "2.1", "id": "identity--" + "9" * 8 + "-9999-4999-8999-" + "9" * 12,
             "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z", "name": ["firm-x"]}
    bundle["objects"] += [*bad, named, dict(report, id=bad[0]["id"].replace("0999", "0998"), created_by_ref=named["id"])]
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(bundle))
    result = CliRunner().invoke(main, ["intel", "stats", "--json", str(bad_path)])
    assert result.exit_code == 1, result.output
    figures = json.loads(result.stdout)
    assert [s["object"] for s in figures["skipped"]] == [o["id"] for o in bad] + [named["id"]]
    assert [s["reason"].split(" ")[0] for s in figures["skipped"]] == [f"`{field}`" for _, field, _ in changes] + ["`name`"]
    assert "not a whole number" in figures["skipped"][0]["reason"] and "not text" in figures["skipped"][1]["reason"]
    month = next(m for m in figures["months"] if m["month"] == report["month"])
    was = next(m for m in good["months"] if m["month"] == report["month"])
    # The report naming an unreadable identity counts, under the identity's id.
    assert month["unauthorised_access_count"] == 2 * was["unauthorised_access_count"] and named["id"] in month["firms"]


def test_a_report_with_nan_or_infinity_is_left_out_and_named(three_firms: Path, tmp_path: Path) -> None:
    """Python's json reads them from a bundle file; summed, they printed NaN as the month's figures."""
    path = bundles(three_firms, tmp_path)[0]
    bundle = json.loads(path.read_text())
    good = _stats(str(path))
    report = next(o for o in bundle["objects"] if o["type"] == "x-kabuguard-monthly-report")
    bad = [dict(report, id=f"x-kabuguard-monthly-report--{n}" + "9" * 7 + "-9999-4999-8999-" + "9" * 12, **{field: value})
           for n, (field, value) in enumerate((("sell_amount_jpy", float("nan")), ("buy_amount_jpy", float("inf"))))]
    bundle["objects"] += bad
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(bundle))  # NaN, Infinity: what json.dumps writes, and json.loads reads
    result = CliRunner().invoke(main, ["intel", "stats", "--json", str(bad_path)])
    assert result.exit_code == 1
    figures = json.loads(result.stdout)
    assert figures["months"] == good["months"]
    assert [(s["object"], s["reason"].split(" ")[0]) for s in figures["skipped"]] == \
        [(bad[0]["id"], "`sell_amount_jpy`"), (bad[1]["id"], "`buy_amount_jpy`")]


def test_the_latest_version_is_the_latest_instant(three_firms: Path, tmp_path: Path) -> None:
    """`modified` was compared as text: '…00.120Z' sorts after '…00.120500Z', which is half a millisecond later."""
    path = bundles(three_firms, tmp_path)[0]
    bundle = json.loads(path.read_text())
    report = next(o for o in bundle["objects"] if o["type"] == "x-kabuguard-monthly-report")
    older = dict(report, modified="2030-05-01T10:00:00.120Z", unauthorised_access_count=1)
    newer = dict(report, modified="2030-05-01T10:00:00.120500Z", unauthorised_access_count=7)
    others = sum(o["unauthorised_access_count"] for o in bundle["objects"]
                 if o["type"] == "x-kabuguard-monthly-report" and o["month"] == report["month"] and o is not report)
    for versions in ([older, newer], [newer, older]):
        bundle["objects"] = [o for o in bundle["objects"] if o["id"] != report["id"]] + versions
        path.write_text(json.dumps(bundle))
        month = next(m for m in _stats(str(path))["months"] if m["month"] == report["month"])
        assert month["unauthorised_access_count"] == others + 7


def test_a_firm_that_only_blocked_failed_logins_is_not_affected_and_reports_no_account(tmp_path: Path) -> None:
    """Every firm with a month report counted as affected, one whose report said 0 accesses too,
    and its report listed the stuffing targets, whose accounts were never accessed, as accessed."""
    from conftest import Stream
    from test_intel_export import _flagged_run, _invoke

    paths = []
    for firm, success in (("firm-a", True), ("firm-b", False)):
        stream = Stream()
        for n in range(3):
            stream.login(f"2025-04-10T10:0{n}:00+09:00", f"A{n}", "45.32.1.9", "atk", success=success)
        run = _flagged_run(tmp_path / firm, stream)
        paths.append(run / "b.json")
        result = _invoke(run, stream.write(run / "e.jsonl"), paths[-1], firm=firm)
        assert result.exit_code == 0, result.output
    reports = [next(o for o in json.loads(p.read_text())["objects"] if o["type"] == "x-kabuguard-monthly-report")
               for p in paths]
    assert [(r["unauthorised_access_count"], len(r.get("accounts", []))) for r in reports] == [(3, 3), (0, 0)]
    month = _stats(*map(str, paths))["months"][0]
    assert (month["firms_affected"], month["firms"], month["unauthorised_access_count"]) == (1, ["firm-a"], 3)


def weekly_bundles(three_firms: Path, tmp_path: Path, cut: str = "2025-04-15T12:00:00+09:00") -> list[Path]:
    """Each firm's run cut in two at `cut` (decisions and alerts), each part exported on its own."""
    from datetime import datetime

    run = three_firms / "run"
    out = []
    for n, keep in enumerate((lambda t: t < datetime.fromisoformat(cut), lambda t: t >= datetime.fromisoformat(cut))):
        part = tmp_path / f"part{n}"
        part.mkdir()
        for name in ("decisions.jsonl", "alerts.jsonl"):
            lines = (run / name).read_text().splitlines()
            kept = [line for line in lines if keep(datetime.fromisoformat(json.loads(line)["ts"]))]
            (part / name).write_text("".join(f"{line}\n" for line in kept))
        for firm in FIRMS:
            path = tmp_path / f"{firm}-{n}.json"
            result = CliRunner().invoke(main, ["intel", "export", "--quiet", "--run", str(part), "--events",
                                               str(three_firms / "sim" / "events"), "--firm", firm, "--out", str(path)],
                                        env={KEY_ENV: f"{firm}-own-test-key-0123456789"})
            assert result.exit_code == 0, result.output
            out.append(path)
    return out


def test_two_consecutive_exports_give_the_months_full_figures(three_firms: Path, tmp_path: Path) -> None:
    """A month report's id was the firm's and the month's alone, its figures the run's: the second
    run's export superseded the first's, and the month showed the last run only."""
    whole = _stats(*map(str, bundles(three_firms, tmp_path)))
    parts = weekly_bundles(three_firms, tmp_path)
    halves = [_stats(*map(str, paths)) for paths in (parts[:3], parts[3:])]
    assert all(h["months"][0]["unauthorised_access_count"] for h in halves)  # both weeks hold accesses
    assert _stats(*map(str, parts)) == whole
    reports = [o for p in parts[:1] + parts[3:4] for o in json.loads(p.read_text())["objects"]
               if o["type"] == "x-kabuguard-monthly-report"]
    assert [(r["period_start"] < r["period_end"]) for r in reports] == [True, True]
    assert reports[0]["period_end"] < "2025-04-15T03:00:00.000Z" <= reports[1]["period_start"]


def test_reports_of_overlapping_periods_are_not_added_up(three_firms: Path, tmp_path: Path) -> None:
    path = bundles(three_firms, tmp_path)[0]
    bundle = json.loads(path.read_text())
    good = _stats(str(path))
    report = next(o for o in bundle["objects"] if o["type"] == "x-kabuguard-monthly-report")
    older = "2025-04-20T00:00:00.000Z"
    inside = dict(report, id=report["id"][:-4] + "0001", modified=older, unauthorised_access_count=1000,
                  period_start=report["period_start"].replace(":00.000Z", ":01.000Z"))  # all within the later one's
    across = dict(inside, id=report["id"][:-4] + "0002", period_start="2025-04-01T00:00:00.000Z")  # partly before it
    bundle["objects"] += [inside, across]
    path.write_text(json.dumps(bundle))
    result = CliRunner().invoke(main, ["intel", "stats", "--json", str(path)])
    assert result.exit_code == 1
    figures = json.loads(result.stdout)
    assert figures["months"] == good["months"]
    assert figures["skipped"] == [{"object": across["id"], "reason": f"its period overlaps that of {report['id']}, "
                                   "modified later: a firm's reports must cover separate periods (export again the "
                                   "whole of both)"}]
    wrong = dict(report, id=report["id"][:-4] + "0003", period_end="2025-05-01T00:00:00.000Z")
    bundle["objects"] = [wrong]
    path.write_text(json.dumps(bundle))
    skipped = json.loads(CliRunner().invoke(main, ["intel", "stats", "--json", str(path)]).stdout)["skipped"]
    assert skipped == [{"object": wrong["id"], "reason": f"period from {report['period_start']} to "
                        "2025-05-01T00:00:00.000Z: not within month 2025-04 (Japan time)"}]
