"""`kabuguard intel export`: valid STIX 2.1, marked, and nothing that names or locates a customer."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from stix2validator import ValidationOptions, validate_string

from conftest import Stream
from kabuguard.cli import main
from kabuguard.intel.pseudonym import KEY_ENV, MissingKey, Pseudonymiser
from kabuguard.intel.stix import TLP, definitions, parse_pattern, pattern

KEY = "test-only-key-not-a-secret-0123456789"


def _export(root: Path, tmp_path: Path, *extra: str, events: Path | None = None, firm: str = "firm-a") -> dict:
    out = tmp_path / "bundle.json"
    result = CliRunner().invoke(main, ["intel", "export", "--quiet", "--run", str(root / "run"), "--events",
                                       str(events or root / "sim" / "events"), "--firm", firm, "--out", str(out), *extra],
                                env={KEY_ENV: KEY})
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def _flagged_run(tmp_path: Path, stream: Stream) -> Path:
    """A run folder as `replay` writes it, with every event of `stream` decided `review`."""
    run = tmp_path / "run"
    run.mkdir(parents=True)
    decisions = [{"event_id": e["event_id"], "ts": e["ts"], "type": e["type"], "account_id": e["account_id"],
                  "decision": "review", "score": 0.9, "reasons": ["new_device"],
                  **({"notional_jpy": 1_000_000.0} if e["type"] == "order" else {}),
                  **({"firm": e["firm"]} if "firm" in e else {})} for e in stream.events]
    (run / "decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions))
    (run / "alerts.jsonl").write_text("")
    return run


def _invoke(run: Path, events: Path, out: Path, *extra: str, firm: str = "firm-a"):  # -> click.testing.Result
    return CliRunner().invoke(main, ["intel", "export", "--quiet", "--run", str(run), "--events", str(events),
                                     "--firm", firm, "--out", str(out), *extra], env={KEY_ENV: KEY})


def _two_hijacks(ip: str = "203.0.113.7") -> Stream:
    """Two accounts logging in from one address and buying: enough to share the address."""
    s = Stream()
    for n, account in enumerate(("A1", "A2")):
        s.login(f"2025-04-10T10:0{n}:00+09:00", account, ip, "dev-x")
        s.order(f"2025-04-10T10:1{n}:00+09:00", account, "9999", "buy", 100, ip, "dev-x")
    return s


def test_the_bundle_passes_the_oasis_validator_and_marks_every_object(three_firms: Path, tmp_path: Path) -> None:
    bundle = _export(three_firms, tmp_path, "--tlp", "green")
    results = validate_string(json.dumps(bundle), ValidationOptions(version="2.1"))
    assert results.is_valid
    assert not results.warnings
    kinds = {o["type"] for o in bundle["objects"]}
    assert {"indicator", "sighting", "campaign", "relationship", "identity", "x-kabuguard-targeted-symbol",
            "x-kabuguard-monthly-report"} <= kinds
    public = {o.id for o in definitions()}  # Kabuguard's type definitions: the same in every bundle
    assert public < {o["id"] for o in bundle["objects"]}
    for obj in bundle["objects"]:
        if obj["type"] != "marking-definition" and obj["id"] not in public:
            assert obj["object_marking_refs"] == [TLP["green"].id], obj["id"]
    sightings = [o for o in bundle["objects"] if o["type"] == "sighting"]
    assert all(s["count"] >= 1 and s["first_seen"] <= s["last_seen"] for s in sightings)
    # The symbols firm A's campaigns pumped are among its targeted symbols.
    targeted = {o["symbol"] for o in bundle["objects"] if o["type"] == "x-kabuguard-targeted-symbol"}
    campaign_symbols = {o["description"].split("symbols: ")[1] for o in bundle["objects"] if o["type"] == "campaign"}
    assert targeted & {s for text in campaign_symbols for s in text.split(", ")}
    # Exporting again at a pinned `modified` gives the same objects (stable ids), so peers deduplicate.
    pinned = [_export(three_firms, tmp_path, "--tlp", "green", "--modified", "2025-05-01T09:00:00+09:00") for _ in (1, 2)]
    assert pinned[0] == pinned[1]
    assert [o["id"] for o in pinned[0]["objects"]] == [o["id"] for o in bundle["objects"]]


def test_no_account_id_email_phone_or_customer_address_leaves(three_firms: Path, tmp_path: Path) -> None:
    sim = three_firms / "sim"
    # The export's input also carries contact details outside the contract (kept as extras).
    events = tmp_path / "events"
    events.mkdir()
    for path in (sim / "events").iterdir():
        if path.name.startswith("activity-"):
            with gzip.open(path, "rt") as src, gzip.open(events / path.name, "wt") as dst:
                for line in src:
                    event = json.loads(line)
                    event.update(email=f"{event['account_id'].lower()}@mail.example.jp", phone="090-1234-5678")
                    dst.write(json.dumps(event) + "\n")
    bundles = [_export(three_firms, tmp_path, events=events, firm=firm) for firm in ("firm-a", "firm-b", "firm-c")]
    text = json.dumps(bundles)
    accounts, customer_ips = set(), set()
    labels = {}
    for line in (sim / "labels.jsonl").open():
        label = json.loads(line)
        if "event_id" not in label:  # pump episodes
            continue
        labels[label["event_id"]] = label
        if label.get("account_id"):
            accounts.add(label["account_id"])
    for path in (sim / "events").glob("activity-*.jsonl.gz"):
        for line in gzip.open(path, "rt"):
            event = json.loads(line)
            if event["type"] == "login" and not labels[event["event_id"]]["fraud"]:
                customer_ips.add(event["ip"])
    assert len(accounts) > 400 and len(customer_ips) > 300
    assert "acc-" in text  # accounts appear, as pseudonyms
    assert not [a for a in accounts if a in text]
    assert "@" not in text and not re.search(r"0[789]0-?\d{4}-?\d{4}", text)
    shared_ips = {parse_pattern(o["pattern"])[1] for bundle in bundles for o in bundle["objects"]
                  if o["type"] == "indicator" and o["pattern"].startswith("[ipv")}
    assert shared_ips and not shared_ips & customer_ips


def test_pseudonyms_are_keyed_and_a_missing_key_is_a_usage_error(three_firms: Path, tmp_path: Path) -> None:
    one, other = Pseudonymiser(b"k" * 32), Pseudonymiser(b"j" * 32)
    assert one("account", "A1") == one("account", "A1") != other("account", "A1")
    assert one("account", "A1") != one("device", "A1")
    with pytest.raises(MissingKey, match="at least 16"):
        Pseudonymiser(b"short")
    result = CliRunner().invoke(main, ["intel", "export", "--run", str(three_firms / "run"), "--firm", "firm-a",
                                       "--out", str(tmp_path / "b.json")], env={KEY_ENV: ""})
    assert result.exit_code == 2 and KEY_ENV in result.output


def test_an_accounts_pseudonym_is_its_own_whether_or_not_the_events_name_the_firm(tmp_path: Path) -> None:
    """Events carrying `firm` had 'firm-a:A1' hashed, others 'A1': one victim under two pseudonyms
    in the same firm's exports, against the promise of one pseudonym in every export."""
    reported = []
    for named in (False, True):
        stream = _two_hijacks()
        for event in stream.events:
            event.update({"firm": "firm-a"} if named else {})
        run = _flagged_run(tmp_path / str(named), stream)
        result = _invoke(run, stream.write(run / "e.jsonl"), run / "b.json")
        assert result.exit_code == 0, result.output
        objects = json.loads((run / "b.json").read_text())["objects"]
        reported.append([o["accounts"] for o in objects if o["type"].startswith("x-kabuguard-")])
    one = Pseudonymiser(KEY.encode())
    assert reported[0] == reported[1] == [sorted(one("account", a) for a in ("A1", "A2"))] * 2


def test_a_firms_ids_are_keyed_so_no_other_firm_can_predict_them(tmp_path: Path) -> None:
    """Ids were a public UUIDv5 of firm, type and value: anyone could compute another firm's."""
    from kabuguard.intel.stix import stable_id

    stream = _two_hijacks()
    run = _flagged_run(tmp_path, stream)
    events = stream.write(tmp_path / "e.jsonl")
    ids = []
    for key in (KEY, KEY, "another-key-of-the-same-firm-0123"):
        result = CliRunner().invoke(main, ["intel", "export", "--quiet", "--run", str(run), "--events", str(events),
                                           "--firm", "firm-a", "--out", str(tmp_path / "b.json")], env={KEY_ENV: key})
        assert result.exit_code == 0, result.output
        objects = json.loads((tmp_path / "b.json").read_text())["objects"]
        ids.append({o["id"] for o in objects if o["type"] != "marking-definition"} - {o.id for o in definitions()})
    same, again, other = ids
    assert same == again and not same & other  # stable under the firm's key, another key: other ids
    report = next(i for i in same if i.startswith("x-kabuguard-monthly-report--"))
    start = "2025-04-10T01:00:00.000Z"  # the run's first decision: its window's start
    assert report == Pseudonymiser(KEY.encode()).object_id("x-kabuguard-monthly-report", "firm-a", "2025-04", start)
    assert stable_id("x-kabuguard-monthly-report", "firm-a", "2025-04") not in same | other


def test_a_run_folder_without_decisions_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["intel", "export", "--run", str(tmp_path), "--firm", "firm-a",
                                       "--out", str(tmp_path / "b.json")], env={KEY_ENV: KEY})
    assert result.exit_code == 2 and "decisions.jsonl: not found" in result.output


@pytest.mark.parametrize("kind,value", [
    ("ip", "203.0.113.9"), ("ip", "2001:db8::1"), ("domain", "kabu-login.example"),
    ("url", "https://x.example/a?b='c'"), ("asn", "AMAZON-02"), ("user_agent", "Mozilla/5.0 \\ 'x'"),
    ("device", "dv-0b259d835bbe")])
def test_patterns_read_back_as_they_were_written(kind: str, value: str) -> None:
    assert parse_pattern(pattern(kind, value)) == (kind, value)
    assert parse_pattern("[ipv4-addr:value = '1.2.3.4' OR ipv4-addr:value = '5.6.7.8']") is None


def test_a_resent_event_counts_once(tmp_path: Path) -> None:
    """The same event_id in two files is one event, as in the replay: it was counted twice in the
    monthly report, the targeted symbol and the sightings."""
    stream = _two_hijacks()
    events = tmp_path / "events"
    events.mkdir()
    stream.write(events / "a.jsonl")
    stream.write(events / "b-resent.jsonl")
    result = _invoke(_flagged_run(tmp_path, stream), events, tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    objects = json.loads((tmp_path / "b.json").read_text())["objects"]
    report = next(o for o in objects if o["type"] == "x-kabuguard-monthly-report")
    assert (report["unauthorised_access_count"], report["unauthorised_trade_count"], report["buy_amount_jpy"]) == \
        (2, 2, 2_000_000.0)
    symbol = next(o for o in objects if o["type"] == "x-kabuguard-targeted-symbol")
    assert (symbol["buy_orders"], symbol["buy_notional_jpy"]) == (2, 2_000_000.0)
    # The address and the device: two logins and two orders; the user agent: two logins.
    assert sorted(o["count"] for o in objects if o["type"] == "sighting") == [2, 4, 4]


def test_an_ip_that_is_not_an_address_is_left_out_and_counted(tmp_path: Path) -> None:
    """The reader keeps any text in `ip`; the export stopped on it with a ValueError."""
    stream = _two_hijacks(ip="unknown")
    result = _invoke(_flagged_run(tmp_path, stream), stream.write(tmp_path / "e.jsonl"), tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    assert "left out the `ip` of 4 flagged events, not an IP address: 'unknown'" in result.stderr
    patterns = [o["pattern"] for o in json.loads((tmp_path / "b.json").read_text())["objects"] if o["type"] == "indicator"]
    assert pattern("device", "dev-x") in patterns and not [p for p in patterns if p.startswith("[ipv")]


def test_rejected_event_lines_are_listed_and_exit_1(tmp_path: Path) -> None:
    """They were dropped silently with exit 0, leaving the figures short without a word."""
    stream = _two_hijacks()
    events = tmp_path / "events"
    events.mkdir()
    stream.write(events / "a.jsonl")
    (events / "b.jsonl").write_text('{"event_id": "o9", "type": "order", broken\n')
    result = _invoke(_flagged_run(tmp_path, stream), events, tmp_path / "b.json")
    assert result.exit_code == 1, result.output
    assert f"rejected {events / 'b.jsonl'}:1: invalid JSON" in result.stderr
    assert json.loads((tmp_path / "b.json").read_text())["objects"]  # what could be read is still exported


def test_events_without_an_event_file_are_a_usage_error(tmp_path: Path) -> None:
    """An empty bundle with exit 0 looked like a firm with nothing to report."""
    stream = _two_hijacks()
    events = tmp_path / "exports"
    events.mkdir()
    (events / "events.csv").write_text("event_id,type\n")
    result = _invoke(_flagged_run(tmp_path, stream), events, tmp_path / "b.json")
    assert result.exit_code == 2 and f"no event files (.jsonl, .jsonl.gz, .parquet) in {events}" in result.output
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("text,parsed", [
    ("[ipv4-addr:value = '45.32.7.7/32']", ("ip", "45.32.7.7")),
    ("[ipv6-addr:value = '2001:db8::1/128']", ("ip", "2001:db8::1")),
    ("[ipv4-addr:value = '45.32.7.0/24']", None), ("[ipv6-addr:value = '2001:db8::/32']", None),
    ("[ipv4-addr:value = 'unknown']", None)])
def test_an_address_pattern_reads_as_one_address_or_not_at_all(text: str, parsed: tuple[str, str] | None) -> None:
    """STIX allows CIDR blocks; '45.32.7.7/32' was read as an address with '/32' in it, matching nothing."""
    assert parse_pattern(text) == parsed


def test_an_object_exported_again_keeps_its_created_and_only_modified_moves(tmp_path: Path) -> None:
    """`created` was the run's last decision for every object, so a later export gave the same ids
    another `created`, which STIX 2.1 (3.6) forbids between versions of one object."""
    april = _two_hijacks()
    may = _two_hijacks()
    may.login("2025-05-20T10:00:00+09:00", "B9", "198.51.100.9", "dev-z")  # one more account, a month on
    bundles = []
    for name, stream in (("april", april), ("may", may)):
        run = _flagged_run(tmp_path / name, stream)
        result = _invoke(run, stream.write(run / "e.jsonl"), run / "b.json")
        assert result.exit_code == 0, result.output
        bundles.append({o["id"]: o for o in json.loads((run / "b.json").read_text())["objects"]})
    first, again = bundles
    shared = [i for i in first.keys() & again.keys() if first[i]["type"] != "marking-definition"]
    assert {first[i]["type"] for i in shared} >= {"identity", "indicator", "sighting", "x-kabuguard-monthly-report",
                                                   "x-kabuguard-targeted-symbol", "extension-definition"}
    assert [i for i in shared if first[i]["created"] != again[i]["created"]] == []
    report = next(o for o in first.values() if o["type"] == "x-kabuguard-monthly-report")
    assert report["created"] == report["period_start"] == "2025-04-10T01:00:00.000Z"  # the run's window in April
    for i in shared:
        if first[i]["type"] in ("indicator", "sighting"):
            assert again[i]["modified"] > first[i]["modified"] >= first[i]["created"]  # each export's own time


def test_firm_names_a_one_firm_run_and_a_firm_not_in_the_run_is_a_usage_error(tmp_path: Path) -> None:
    """The documented `--firm firm-a` on a one-firm run (whose events carry no firm) exported an
    empty bundle with exit 0, as did a misspelt firm on a multi-firm run."""
    stream = _two_hijacks()
    events = stream.write(tmp_path / "e.jsonl")
    result = _invoke(_flagged_run(tmp_path, stream), events, tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    objects = json.loads((tmp_path / "b.json").read_text())["objects"]
    assert [o["name"] for o in objects if o["type"] == "identity" and o["identity_class"] == "organization"] == ["firm-a"]
    assert any(o["type"] == "indicator" for o in objects)


def test_a_firm_the_run_does_not_hold_is_a_usage_error(three_firms: Path, tmp_path: Path) -> None:
    result = _invoke(three_firms / "run", three_firms / "sim" / "events", tmp_path / "b.json", firm="firm-z")
    assert result.exit_code == 2 and "--firm 'firm-z': the run's decisions are of firm-a" in result.output


def test_the_firm_is_required_so_that_each_firms_bundle_counts_as_its_own(tmp_path: Path) -> None:
    """Without --firm the bundle's firm was `kabuguard`: `intel stats` over two firms' bundles
    reported one firm affected."""
    stream = _two_hijacks()
    run, events = _flagged_run(tmp_path, stream), stream.write(tmp_path / "e.jsonl")
    unnamed = CliRunner().invoke(main, ["intel", "export", "--quiet", "--run", str(run), "--events", str(events),
                                        "--out", str(tmp_path / "b.json")], env={KEY_ENV: KEY})
    assert unnamed.exit_code == 2 and "Missing option '--firm'" in unnamed.output, unnamed.output
    assert not (tmp_path / "b.json").exists()
    bundles = [tmp_path / f"{firm}.json" for firm in ("firm-a", "firm-b")]
    for bundle in bundles:
        assert _invoke(run, events, bundle, firm=bundle.stem).exit_code == 0
    stats = CliRunner().invoke(main, ["intel", "stats", "--json", *map(str, bundles)])
    assert [m["firms"] for m in json.loads(stats.output)["months"]] == [["firm-a", "firm-b"]]


def test_no_event_id_or_account_id_of_the_run_leaves(three_firms: Path, tmp_path: Path) -> None:
    """A campaign was named `{firm} {campaign_id}`, and campaign ids carry the raw event id that
    opened them (`stuffing-LGN-K80000004-0001`): an account number embedded in an event id left
    the firm as it was."""
    from kabuguard.replay import replay

    stuffing = Stream()  # one address failing logins on many accounts: a credential stuffing alert
    for n in range(12):
        account = f"K8{n:07d}"
        stuffing.add("login", f"2025-04-10T10:{n:02d}:00+09:00", event_id=f"LGN-{account}-0001", account_id=account,
                     session_id=f"s{n}", success=False, ip="45.32.7.7", user_agent="python-requests/2.31",
                     device_id="atk", mfa="sms", channel="web")
    events = stuffing.write(tmp_path / "stuffing.jsonl")
    replay([events], tmp_path / "stuffing", quiet=True)
    runs = [(tmp_path / "stuffing", events, "firm-a")]
    runs += [(three_firms / "run", three_firms / "sim" / "events", firm) for firm in ("firm-a", "firm-b", "firm-c")]
    for run, source, firm in runs:
        decisions = [json.loads(line) for line in (run / "decisions.jsonl").read_text().splitlines()]
        alerts = [json.loads(line) for line in (run / "alerts.jsonl").read_text().splitlines()]
        assert any(a["type"] == "campaign_alert" and a.get("firm", firm) == firm for a in alerts), run
        out = tmp_path / f"{firm}.json"
        result = _invoke(run, source, out, firm=firm)
        assert result.exit_code == 0, result.output
        text = out.read_text()
        assert '"type": "campaign"' in text
        raw = {d["event_id"] for d in decisions} | {d["account_id"] for d in decisions if d.get("account_id")}
        assert len(raw) > 20 and [r for r in sorted(raw) if r in text] == [], (run, firm)


def test_a_corrected_export_supersedes_the_first_and_keeps_every_created(tmp_path: Path) -> None:
    """`modified` was the run's last decision: a re-export after correcting an earlier decision
    gave changed objects the version they had, so a TAXII server kept the old figures and
    `intel stats` over both files took whichever came first."""
    stream = _two_hijacks()
    run = _flagged_run(tmp_path, stream)
    events = stream.write(tmp_path / "e.jsonl")
    assert _invoke(run, events, tmp_path / "v1.json").exit_code == 0
    decisions = [json.loads(line) for line in (run / "decisions.jsonl").read_text().splitlines()]
    cleared = next(d for d in decisions if d["type"] == "order")  # the first buy: not the run's last decision
    cleared.update(decision="allow", reasons=[])
    (run / "decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions))
    assert _invoke(run, events, tmp_path / "v2.json").exit_code == 0  # modified: each export's own time
    first, second = ({o["id"]: o for o in json.loads((tmp_path / f"{v}.json").read_text())["objects"]} for v in ("v1", "v2"))
    changed = [i for i in first.keys() & second.keys() if first[i] != second[i]]
    assert {second[i]["type"] for i in changed} >= {"x-kabuguard-monthly-report", "x-kabuguard-targeted-symbol"}
    assert [i for i in changed if not second[i]["modified"] > first[i]["modified"]] == []
    assert [i for i in first.keys() & second.keys() if first[i].get("created") != second[i].get("created")] == []
    figures = [json.loads(CliRunner().invoke(main, ["intel", "stats", "--json", *map(str, files)]).output)["months"]
               for files in ([tmp_path / "v1.json", tmp_path / "v2.json"], [tmp_path / "v2.json", tmp_path / "v1.json"])]
    assert figures[0] == figures[1] and figures[0][0]["buy_amount_jpy"] == 1_000_000.0


@pytest.mark.parametrize("modified,reason", [
    ("2025-04-10T10:00:00+09:00", "before the run's last decision (2025-04-10T01:11:00.000Z)"),
    ("2025-05-01T00:00:00", "give its offset"), ("next week", "not an RFC 3339 timestamp")])
def test_a_modified_that_cannot_version_the_export_is_a_usage_error(tmp_path: Path, modified: str, reason: str) -> None:
    stream = _two_hijacks()
    result = _invoke(_flagged_run(tmp_path, stream), stream.write(tmp_path / "e.jsonl"), tmp_path / "b.json",
                     "--modified", modified)
    assert result.exit_code == 2 and f"--modified {modified!r}: {reason}" in result.output, result.output
    assert not (tmp_path / "b.json").exists()
