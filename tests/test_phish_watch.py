"""The watch loop: certstream-style records in, alerts and indicators out, bad records survived."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kabuguard.cli.phish import phish
from kabuguard.intel.phish.domains import parse_target
from kabuguard.intel.phish.indicators import IndicatorStore, takedown_text
from kabuguard.intel.phish.registry import load_registry
from kabuguard.intel.phish.score import Scorer
from kabuguard.intel.phish.watch import Monitor, domains_of, load_known, watch


def cert(*domains: object, seen: float = 1735689600.0) -> str:
    return json.dumps({"message_type": "certificate_update", "data": {"seen": seen, "leaf_cert": {"all_domains": list(domains)}}})


RECORDS = [
    cert("www.example.com", "example.com"),
    "{not json",
    cert("*.sbisec-login.top", "sbisec-login.top"),
    json.dumps({"data": {"leaf_cert": {"all_domains": []}}}),
    json.dumps({"domain": "rnonex.co.jp", "first_seen": "2025-03-01T00:00:00Z"}),
    "sbisec.co.jp",
    json.dumps([1, 2, 3]),
    "rakuten-sec.co.jp.account-verify.xyz",
]


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer(load_registry("securities-jp"))


def test_domains_of_reads_the_record_shapes() -> None:
    assert domains_of(cert("a.com", "b.com"))[0] == ["a.com", "b.com"]
    assert domains_of(cert("a.com", seen=0))[1] == "1970-01-01T00:00:00+00:00"
    assert domains_of('{"domains": ["x.jp"]}')[0] == ["x.jp"]
    assert domains_of("plain.example.jp")[0] == ["plain.example.jp"]


def test_watch_survives_malformed_records_and_alerts(scorer: Scorer) -> None:
    alerts, rejected = [], []
    stats = watch(RECORDS, Monitor(scorer, scorer.threshold), lambda v, i: alerts.append(i), lambda n, why: rejected.append(n))
    assert stats.records == len(RECORDS) and stats.rejected == 3 and rejected == [2, 4, 7]
    assert [a.domain for a in alerts] == ["sbisec-login.top", "rnonex.co.jp", "account-verify.xyz"]
    assert [a.brand for a in alerts] == ["sbi-sec", "monex", "rakuten-sec"]
    assert alerts[0].first_seen == "2025-01-01T00:00:00+00:00"  # the wildcard and the bare name alert once
    assert alerts[1].first_seen == "2025-03-01T00:00:00Z"


def test_the_monitor_remembers_a_bounded_number_of_hosts_oldest_forgotten_first(scorer: Scorer) -> None:
    """It kept every host of the stream for the life of the watch: millions a day on a certificate stream."""
    monitor = Monitor(scorer, scorer.threshold, remember=2)
    phish, when = "www.sbisec.co.jp.verify-account.top", "2025-04-01T00:00:00Z"
    assert monitor.check(phish, when) is not None and monitor.check(phish, when) is None  # once while remembered
    for host in ("example.com", "example.org"):
        monitor.check(host, when)
    assert len(monitor.seen) == 2 and phish not in monitor.seen
    assert monitor.check(phish, when) is not None  # forgotten, so scored again


def test_alerts_become_indicators_and_takedown_evidence(scorer: Scorer) -> None:
    hit = Monitor(scorer, scorer.threshold).check("www.sbisec.co.jp.verify-account.top", "2025-04-01T00:00:00Z")
    assert hit is not None
    verdict, ind = hit
    record = ind.to_dict()
    assert record["domain"] == "verify-account.top" and record["brand"] == "sbi-sec" and record["first_seen"] == "2025-04-01T00:00:00Z"
    assert 0.5 <= record["score"] <= 1.0 and record["url"] == "https://www.sbisec.co.jp.verify-account.top/"
    text = takedown_text(ind, verdict, scorer.registry.brand("sbi-sec").official_domains)
    assert "SBI証券" in text and "verify-account.top" in text and "sbisec.co.jp" in text


@pytest.mark.parametrize(("host", "domain_line", "host_line"), [
    ("xn--sbsec-login-0vj.com", "Domain: xn--sbsec-login-0vj.com (sb\u0456sec-login.com)", None),
    ("\u0455bisec.evil.com", "Domain: evil.com", "Host: xn--bisec-g2e.evil.com (\u0455bisec.evil.com)"),
])
def test_an_idn_alert_names_its_a_label_for_the_registrar(scorer: Scorer, host: str, domain_line: str, host_line: str | None) -> None:
    """Indicators and takedown texts named only the Unicode homoglyph, which no registrar or DNS looks up."""
    hit = Monitor(scorer, scorer.threshold).check(host, "2025-04-01T00:00:00Z")
    assert hit is not None
    verdict, ind = hit
    record = ind.to_dict()
    assert record["domain_ascii"].isascii() and record["host_ascii"].isascii() and record["host_ascii"].endswith(record["domain_ascii"])
    assert verdict.to_dict()["host_ascii"] == record["host_ascii"]
    lines = takedown_text(ind, verdict, ()).splitlines()
    assert lines[0] == domain_line
    assert (lines[1] if lines[1].startswith("Host:") else None) == host_line


def test_shared_indicators_catch_hosts_without_a_brand_token(scorer: Scorer, tmp_path: Path) -> None:
    known = tmp_path / "known.jsonl"
    known.write_text(json.dumps({"url": "https://qsader.icu/", "brand": "gmo-click"}) + "\n", encoding="utf-8")
    plain = Monitor(scorer, scorer.threshold)
    shared = Monitor(scorer, scorer.threshold, load_known(known, scorer.config))
    assert plain.check("www.qsader.icu", "t") is None
    hit = shared.check("www.qsader.icu", "t")
    assert hit is not None and hit[1].brand == "gmo-click" and hit[1].reasons[0].startswith("shared-indicator")


def test_a_shared_feed_of_every_brand_names_only_unambiguous_registry_brands(scorer: Scorer, tmp_path: Path) -> None:
    known = tmp_path / "known.jsonl"
    shared_rows = [
        {"url": "https://sndc-sec-log.x1.cn/", "brand": "smbc-nikko"},  # a campaign's host template
        {"url": "https://amzn-check.x2.cn/", "brand": "Amazon"},  # another brand's phish, as JPCERT/CC shares it
        {"url": "https://secure-login.x3.cn/", "brand": "gmo-click"},
        {"url": "https://secure-login.x4.cn/", "brand": "Amazon"},  # the same template for two brands: no brand
    ]
    known.write_text("".join(json.dumps(row) + "\n" for row in shared_rows), encoding="utf-8")
    shared = Monitor(scorer, scorer.threshold, load_known(known, scorer.config))
    hit = shared.check("sndc-sec-log.y9.cn", "t")
    assert hit is not None and hit[1].brand == "smbc-nikko"
    assert shared.check("amzn-check.y9.cn", "t") is None
    assert shared.check("secure-login.y9.cn", "t") is None


def test_a_shared_url_names_neither_its_common_subdomain_nor_its_provider(tmp_path: Path) -> None:
    known = tmp_path / "known.jsonl"
    known.write_text("".join(json.dumps(row) + "\n" for row in [
        {"url": "https://secure.qsader.icu/", "brand": "sbi-sec"},  # `secure` stands before countless hosts
        {"url": "https://sites.google.com/view/sbi-login", "brand": "sbi-sec"},  # one customer of google.com
        {"url": "https://bit.ly/3xYz", "brand": "monex"},  # one link of bit.ly
        {"url": "https://sndc-sec-log.x1.cn/", "brand": "smbc-nikko"},  # a campaign's host template
    ]), encoding="utf-8")
    stream = tmp_path / "stream.txt"
    stream.write_text("\n".join(["secure.google.com", "secure.example.co.jp", "secure.other.icu", "www.google.com",
                                  "docs.google.com", "sites.google.com", "bit.ly", "www.qsader.icu",
                                  "sndc-sec-log.y9.cn", "sndc-sec-log.y9.com"]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(phish, ["watch", str(stream), "--quiet", "--known", str(known)])
    assert result.exit_code == 0, result.output
    alerts = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"type"')]
    assert [(a["domain"], a["brand"]) for a in alerts] == [("qsader.icu", "sbi-sec"), ("y9.cn", "smbc-nikko")]
    urls = "https://sites.google.com/view/sbi-login/home\nhttps://bit.ly/3xYz\nhttps://foo.weebly.com/x\nhttps://docs.google.com/x\n"
    scored = CliRunner().invoke(phish, ["score", "-"], input=urls)
    assert [json.loads(line)["registered_domain"] for line in scored.stdout.splitlines()] == [
        "sites.google.com/view/sbi-login", "bit.ly/3xYz", "foo.weebly.com", "google.com"]


def test_a_shortener_link_keeps_the_case_of_its_code(scorer: Scorer) -> None:
    """`bit.ly/3xYz` was shared as `bit.ly/3xyz`, another link; a peer's `3xYz` then marked `3xyz` too."""
    store = IndicatorStore(scorer.config)
    store.confirm(parse_target("https://bit.ly/3xYz?utm=x"), "monex")
    assert scorer.score("bit.ly/3xYz").registered_domain == "bit.ly/3xYz"
    assert store.brand_for(parse_target("HTTPS://BIT.LY/3xYz")) == "monex"
    assert store.brand_for(parse_target("https://bit.ly/3xyz")) is None
    assert scorer.score("https://sites.google.com/VIEW/SBI-Login").registered_domain == "sites.google.com/view/sbi-login"


def test_watch_command_on_a_file_exits_1_on_rejected_records(tmp_path: Path) -> None:
    stream = tmp_path / "certs.jsonl"
    stream.write_text("\n".join(RECORDS) + "\n", encoding="utf-8")
    evidence = tmp_path / "evidence.txt"
    evidence.write_text("Domain: kept-from-yesterday.top\n\n", encoding="utf-8")
    result = CliRunner().invoke(phish, ["watch", str(stream), "--quiet", "--evidence", str(evidence)])
    assert result.exit_code == 1, result.output
    alerts = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"type"')]
    assert [a["domain"] for a in alerts] == ["sbisec-login.top", "rnonex.co.jp", "account-verify.xyz"]
    text = evidence.read_text(encoding="utf-8")  # appended: an earlier run's evidence is kept
    assert text.startswith("Domain: kept-from-yesterday.top") and text.count("Domain: ") == 4


def test_watch_command_usage_errors() -> None:
    result = CliRunner().invoke(phish, ["watch", "/no/such/file"])
    assert result.exit_code == 2 and "neither a file" in result.output


@pytest.fixture()
def websocket_url() -> Iterator[str]:
    """A certstream-like server on 127.0.0.1 that sends the records, then closes."""
    from websockets.sync.server import ServerConnection, serve

    def handler(ws: ServerConnection) -> None:
        for record in RECORDS:
            ws.send(record)

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()
    thread.join(timeout=5)


def test_watch_follows_a_websocket(websocket_url: str) -> None:
    result = CliRunner().invoke(phish, ["watch", websocket_url, "--quiet"])
    alerts = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"type"')]
    assert [a["brand"] for a in alerts] == ["sbi-sec", "monex", "rakuten-sec"]
    assert result.exit_code == 1  # the malformed records were counted


def test_websocket_reconnects_after_a_drop(websocket_url: str) -> None:
    from kabuguard.intel.phish.watch import read_lines

    lines = list(read_lines(websocket_url, io.StringIO(), reconnects=1, backoff=0.01))
    assert lines == RECORDS + RECORDS  # the server closed after one pass; the second came on reconnect


def test_a_bad_time_a_bad_name_or_a_heartbeat_costs_only_itself(scorer: Scorer) -> None:
    records = [
        json.dumps({"domain": "sbisec-login3.top", "seen": 1e20}),  # past any calendar
        json.dumps({"domain": "sbisec-login4.top", "first_seen": "yesterday"}),
        json.dumps({"message_type": "heartbeat", "timestamp": 1}),  # certstream's keep-alive
        json.dumps({"domains": ["", "sbisec-login5.top"], "seen": 1735689600}),  # one empty name, one good
        # One name that is no string: the record was rejected whole, its good name never scored.
        cert("sbisec-login6.top", {"cn": "x"}, 7),
    ]
    alerts, rejected = [], []
    stats = watch(records, Monitor(scorer, scorer.threshold), lambda v, i: alerts.append(i),
                  lambda n, why: rejected.append((n, why)))
    assert [a.domain for a in alerts] == ["sbisec-login5.top", "sbisec-login6.top"]
    assert [n for n, _ in rejected] == [1, 2, 4, 5, 5] and "not an instant" in rejected[0][1]
    assert [why for _, why in rejected[3:]] == ['{"cn": "x"}: not a name (a JSON string)', "7: not a name (a JSON string)"]
    assert stats.records == 5 and stats.rejected == 5


def test_urls_are_read_as_a_browser_reads_them(scorer: Scorer) -> None:
    def verdict(url: str):
        return scorer.score(url)

    assert verdict("http://sbisec-login.com\\@www.sbisec.co.jp/etgate").registered_domain == "sbisec-login.com"
    for official in ("https://ＳＢＩＳＥＣ.co.jp/etgate", "https://www.sbisec.co.jp。/etgate",
                     "https://sbi\u200bsec.co.jp/etgate", "http://sbisec%2eco%2ejp/etgate"):
        assert verdict(official).score == 0.0, official
    assert verdict("http://sbisec.co.jp。evil.com/").registered_domain == "evil.com"
    assert verdict("phish-kit.公司.香港").registered_domain == "phish-kit.公司.香港"  # a Unicode public suffix
    with pytest.raises(ValueError, match="at most 253"):
        verdict("sbi-x." * 100 + "com")


def test_a_brand_before_the_at_sign_alerts_though_the_browser_goes_elsewhere(scorer: Scorer) -> None:
    for url in ("https://www.sbisec.co.jp@evil.example/", "sbisec.co.jp@evil.example",
                "https://www.sbisec.co.jp:pw@evil.example/", "https://sbisec@evil.example/login"):
        verdict = scorer.score(url)
        assert verdict.registered_domain == "evil.example" and verdict.brand == "sbi-sec", url
        assert verdict.alert(scorer.threshold) and verdict.reasons[0].code == "userinfo-in-url", url
    assert scorer.score("https://user:pass@example.com/").score == 0.0


def test_a_repeated_bad_name_is_rejected_each_time(scorer: Scorer) -> None:
    """The name was remembered before it was parsed: rejected once, then skipped without a word."""
    rejected: list[int] = []
    stats = watch(['"sbisec-login.top,2024"'] * 2, Monitor(scorer, scorer.threshold), lambda v, i: None,
                  lambda n, why: rejected.append(n))
    assert stats.rejected == 2 and rejected == [1, 2]


@pytest.mark.parametrize("stamp", [{"t": 1}, [2024, 1, 2], True, ""])
def test_a_first_seen_of_the_wrong_type_is_a_record_error(stamp: object) -> None:
    """It was replaced by the time of reading, dating an old phish as new."""
    with pytest.raises(ValueError, match="first-seen time"):
        domains_of(json.dumps({"domain": "sbisec-login.top", "seen": stamp}))
    assert domains_of(json.dumps({"domain": "sbisec-login.top"}))[1]  # absent: now


def test_a_domain_field_carrying_a_path_keeps_it_in_the_url(scorer: Scorer) -> None:
    """The path alerted (`/SbiSec/`), but the indicator's url was `https://evil.top/` without it."""
    hit = Monitor(scorer, scorer.threshold).check("evil.top/SbiSec/login", "2025-04-01T00:00:00Z")
    assert hit is not None and hit[1].url == "https://evil.top/SbiSec/login" and hit[1].domain == "evil.top"
    bare = Monitor(scorer, scorer.threshold).check("*.SBISEC-login.top", "2025-04-01T00:00:00Z")
    assert bare is not None and bare[1].url == "https://sbisec-login.top/"
