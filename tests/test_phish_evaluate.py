"""The leave-brands-out evaluation: metrics on a small fixture, baselines, and the real feed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kabuguard.cli.phish import phish
from kabuguard.intel.phish.baselines import CatcherBaseline, DnstwistBaseline
from kabuguard.intel.phish.domains import Target, parse_target
from kabuguard.intel.phish.evaluate import (HELD_OUT_YEARS, TUNING_YEARS, Row, evaluate, label_mapper, label_token_oracle, read_jpcert,
                                           token_oracle)
from kabuguard.intel.phish.registry import load_registry

JPCERT = Path(__file__).parents[2] / "shared" / "data" / "jpcert"

FIXTURE = {
    "2021/202101.csv": [
        ("2021/01/04 09:00:00", "https://smbc-card-login.xyz/", "三井住友カード"),  # brand token
        ("2021/01/04 09:01:00", "https://www.eposcrad.top/", "エポスカード"),  # lookalike
        ("2021/01/04 09:02:00", "https://qwzkx.cn/", "イオンカード"),  # no token: a miss
        ("2021/01/04 09:03:00", "https://amazon-login.top/", "Amazon"),  # other phishing
        ("2021/01/04 09:04:00", "https://rakuten-point.xyz/", "楽天"),  # group token of another brand
        ("2021/01/04 09:05:00", "https://zxqvw.top/wp-content/themes/20/aeon.co.jp/index.php", "イオンカード"),  # no token; the path names it
    ],
    "2023/202301.csv": [
        ("2023/01/04 09:00:00", "https://myjcb-secure.cc/", "JCB"),
        ("2023/01/04 09:01:00", "https://www.smbc-card.com.abcde.top/", "Vpass"),  # a service name maps to the brand
        ("2023/01/04 09:02:00", "https://www.jcb.jp.ghijk.top/", "Amazon"),  # flagged, but labelled Amazon: a false positive
        ("2023/01/04 09:03:00", "https://qwzkx.cn/login", "イオンカード"),  # known from the 2021 row: shared indicator
    ],
}


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    for name, rows in FIXTURE.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("date,URL,description\n" + "".join(f"{d},{u},{b}\n" for d, u, b in rows), encoding="utf-8")
    return tmp_path


def test_split_is_fixed_and_disjoint() -> None:
    assert not set(TUNING_YEARS) & set(HELD_OUT_YEARS)
    assert max(TUNING_YEARS) < min(HELD_OUT_YEARS)


def test_labels_and_strata() -> None:
    registry = load_registry("cards-jp")
    brand_of, stratum = label_mapper(registry), token_oracle(registry)
    assert brand_of("Vpass") == "smbc-card" and brand_of("TS CUBIC CARD_MY TS3") == "ts-cubic" and brand_of("Amazon") is None
    assert stratum("smbc-card-login.xyz") == "brand-token"
    assert stratum("smbc-jp.cc") == "group-token"
    assert stratum("qwzkx.cn") == "no-token"


def test_evaluation_counts_on_a_fixture(data_dir: Path) -> None:
    registry = load_registry("cards-jp")
    from kabuguard.intel.phish.score import Scorer

    scorer = Scorer(registry)

    def detect(target: Target) -> str | None:
        verdict = scorer.score_target(target)
        return verdict.brand if verdict.alert(scorer.threshold) else None

    results = {e.detector: e.to_dict() for e in evaluate(read_jpcert(data_dir), registry, {"kabuguard": detect}, shared_for="kabuguard")}
    y2021, y2023 = results["kabuguard"]["years"]
    assert y2021["split"] == "tuning" and y2023["split"] == "held-out"
    assert y2021["positives"] == 4 and y2021["recall_brand-token"] == 1.0 and y2021["recall_no-token"] == 0.5
    assert y2021["positives_no-token_with_path"] == 1 and y2021["recall_no-token_with_path"] == 1.0
    assert y2023["positives_no-token_with_path"] == 1 and y2023["recall_no-token_with_path"] == 0.0
    assert y2021["precision"] == 1.0 and y2021["attribution_accuracy"] == 1.0
    assert y2023["flagged"] == 3 and y2023["precision"] == pytest.approx(2 / 3, abs=1e-3)
    assert results["kabuguard"]["official_domains_flagged"] == []
    shared = results["kabuguard+shared-indicators"]["years"][1]
    assert shared["recall_no-token"] == 1.0 and shared["recall_no-token_with_path"] == 1.0  # qwzkx.cn was confirmed in 2021


def test_wrong_attributions_split_by_whether_the_url_spells_the_label() -> None:
    registry = load_registry("cards-jp")
    rows = [Row(2022, "2022/05/01", url, label) for url, label in (
        ("https://www.myjcb.abcde.com/", "SAISON CARD"),  # a kit serving several issuers: the URL says JCB only
        ("https://saison-jcb-login.top/", "SAISON CARD"),  # both named: a wrong pick among the evidence
        ("https://myjcb-secure.cc/", "JCB"),  # right
    )]
    always_jcb = {"jcb-everywhere": lambda target: "jcb"}
    [result] = evaluate(rows, registry, always_jcb)
    [year] = result.to_dict()["years"]
    assert year["attribution_accuracy"] == pytest.approx(1 / 3, abs=1e-3)
    assert year["wrong_attributions"] == 2 and year["wrong_attributions_label_not_in_url"] == 1


def test_the_label_oracle_reads_an_upper_case_url() -> None:
    """Upper-case letters were dropped, so `https://www.example.top/SMBC-CARD/` did not spell smbc-card."""
    spells = label_token_oracle(load_registry("cards-jp"))
    for url in ("https://SMBC-CARD.example.top/", "https://www.example.top/SMBC-CARD/"):
        assert spells("smbc-card", url), url
    assert not spells("smbc-card", "https://www.example.top/JCB/")


def test_baselines_run_and_attribute() -> None:
    registry = load_registry("cards-jp")
    dnstwist, catcher = DnstwistBaseline(registry), CatcherBaseline(registry)
    assert dnstwist(parse_target("eposcarb.co.jp")) == "epos"  # replacement on the keyboard
    assert dnstwist(parse_target("jcb.top")) == "jcb"  # tld swap
    assert dnstwist(parse_target("jcb.co.jp")) is None  # official
    assert dnstwist(parse_target("smbc-card-login.xyz")) == "smbc-card"  # dictionary fuzzer
    assert dnstwist(parse_target("www.smbc-card.com.abcde.top")) is None  # only the registered label counts
    assert catcher(parse_target("smbc-card-login-verify.xyz")) == "smbc-card"
    assert catcher(parse_target("random-words.com")) is None


def test_evaluate_command_writes_the_report(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(phish, ["evaluate", "--data", str(data_dir), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    sections = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert [s["registry"] for s in sections] == ["cards-jp", "securities-jp"]
    detectors = [d["detector"] for d in sections[0]["detectors"]]
    assert detectors == ["kabuguard", "dnstwist-style", "phishing_catcher-style", "kabuguard+shared-indicators"]
    assert "<svg" in (out / "report.html").read_text(encoding="utf-8")
    assert "held-out" in (out / "report.md").read_text(encoding="utf-8")


def test_evaluate_command_needs_data(tmp_path: Path) -> None:
    result = CliRunner().invoke(phish, ["evaluate", "--data", str(tmp_path / "missing"), "--quiet"])
    assert result.exit_code == 2 and "--data" in result.output


@pytest.mark.skipif(not JPCERT.is_dir(), reason="JPCERT/CC data not beside the repository")
def test_securities_rows_of_the_real_feed() -> None:
    """Confirmation run on JPCERT/CC rows: no official domain flagged, and fewer than one false
    alert in 10,000 phishing URLs of other brands (securities rows are ~27 of 226,000)."""
    registry = load_registry("securities-jp")
    from kabuguard.intel.phish.score import Scorer

    scorer = Scorer(registry)

    def detect(target: Target) -> str | None:
        verdict = scorer.score_target(target)
        return verdict.brand if verdict.alert(scorer.threshold) else None

    (result,) = evaluate(read_jpcert(JPCERT), registry, {"kabuguard": detect})
    summary = result.to_dict()
    assert summary["official_domains_flagged"] == []
    assert all(y["official_rows_flagged"] == 0 for y in summary["years"])
    assert sum(y["positives"] for y in summary["years"]) >= 20
    flagged = sum(y["flagged"] for y in summary["years"])
    true = sum(round((y["precision"] or 0) * y["flagged"]) for y in summary["years"])
    assert true >= 3
    assert flagged - true <= 20


def _feed(tmp_path: Path, body: bytes, header: bytes = b"date,URL,description\n") -> Path:
    path = tmp_path / "feed" / "2021" / "202101.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(header + body)
    return tmp_path / "feed"


BAD_ROWS = ("2021/01/04 09:00:00,https://smbc-card-login.xyz/,三井住友カード\n"  # the one good row
            '2021/01/04 09:01:00,"https://bad host,x/",三井住友カード\n'  # no host: was skipped unseen
            "2021/01/04 09:02:00\n"  # short: its URL was None and stopped the run
            "2021/01/04 09:03:00,https://eposcrad.top/,エポスカード,extra\n").encode()  # long: the label would shift


def test_rows_without_a_host_are_counted_per_year_and_named(tmp_path: Path) -> None:
    """Rows without a host left every denominator unseen (raising recall), and a short row stopped the run."""
    data = _feed(tmp_path, BAD_ROWS + "2021/01/04 09:04:00,https://jcb-login.top/\xff,JCB\n".encode("latin-1"))
    registry = load_registry("cards-jp")
    rejected: list[tuple[str, str]] = []
    [result] = evaluate(read_jpcert(data), registry, {"always": lambda target: "smbc-card"},
                        on_reject=lambda row, why: rejected.append((f"{row.file}:{row.line}", why)))
    [year] = result.to_dict()["years"]
    assert year["positives"] == 1 and year["rejected_rows"] == 4
    assert [where for where, _ in rejected] == [f"2021/202101.csv:{n}" for n in (3, 4, 5, 6)]
    assert "no host name" in rejected[0][1] and "1 field where the header has 3" in rejected[1][1]
    assert "4 fields" in rejected[2][1] and "not valid UTF-8" in rejected[3][1]


def test_evaluate_command_reports_rejected_rows_and_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(phish, ["evaluate", "--data", str(_feed(tmp_path, BAD_ROWS)), "--out", str(out), "--quiet"])
    assert result.exit_code == 1, result.output
    sections = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert [(r["file"], r["line"]) for r in sections[0]["rejected_rows"]] == [("2021/202101.csv", n) for n in (3, 4, 5)]
    assert sections[0]["detectors"][0]["years"][0]["rejected_rows"] == 3
    assert "`2021/202101.csv:4`: 1 field where the header has 3" in (out / "report.md").read_text(encoding="utf-8")
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert [{k: log[k] for k in ("file", "line", "reason")} for log in logs if log["event"] == "rejected"] == sections[0]["rejected_rows"]


@pytest.mark.parametrize(("header", "body", "named"), [
    (b"when,link,label\n", b"2021/01/04,https://smbc-card-login.xyz/,x\n", "2021/202101.csv: no column date, URL, description"),
    (b"date,URL,description\n", b"2021/01/04,https://x.top/" + b"a" * 200_000 + b",x\n", "2021/202101.csv:2: not CSV"),
])
def test_a_feed_file_that_is_no_feed_is_a_usage_error_naming_it(tmp_path: Path, header: bytes, body: bytes, named: str) -> None:
    """A missing column was a KeyError traceback; any ValueError was reported as a bad --years."""
    result = CliRunner().invoke(phish, ["evaluate", "--data", str(_feed(tmp_path, body, header)), "--out", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 2 and named in result.output and "--years" not in result.output, result.output


def test_only_a_bad_years_value_is_reported_as_one(data_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(phish, ["evaluate", "--data", str(data_dir), "--years", "2021,20x3", "--out", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 2 and "--years must be comma-separated years, got '2021,20x3'" in result.output
