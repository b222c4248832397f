"""`kabuguard intel export`: valid STIX 2.1, marked, and nothing that names or locates a customer."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from stix2validator import ValidationOptions, validate_string

from kabuguard.cli import main
from kabuguard.intel.pseudonym import KEY_ENV, MissingKey, Pseudonymiser
from kabuguard.intel.stix import TLP, parse_pattern, pattern

KEY = "test-only-key-not-a-secret-0123456789"


def _export(root: Path, tmp_path: Path, *extra: str, events: Path | None = None) -> dict:
    out = tmp_path / "bundle.json"
    result = CliRunner().invoke(main, ["intel", "export", "--quiet", "--run", str(root / "run"), "--events",
                                       str(events or root / "sim" / "events"), "--out", str(out), *extra],
                                env={KEY_ENV: KEY})
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_the_bundle_passes_the_oasis_validator_and_marks_every_object(three_firms: Path, tmp_path: Path) -> None:
    bundle = _export(three_firms, tmp_path, "--firm", "firm-a", "--tlp", "green")
    results = validate_string(json.dumps(bundle), ValidationOptions(version="2.1"))
    assert results.is_valid
    assert not results.warnings
    kinds = {o["type"] for o in bundle["objects"]}
    assert {"indicator", "sighting", "campaign", "relationship", "identity", "x-kabuguard-targeted-symbol",
            "x-kabuguard-monthly-report"} <= kinds
    for obj in bundle["objects"]:
        if obj["type"] != "marking-definition":
            assert obj["object_marking_refs"] == [TLP["green"].id], obj["id"]
    sightings = [o for o in bundle["objects"] if o["type"] == "sighting"]
    assert all(s["count"] >= 1 and s["first_seen"] <= s["last_seen"] for s in sightings)
    # The symbols firm A's campaigns pumped are among its targeted symbols.
    targeted = {o["symbol"] for o in bundle["objects"] if o["type"] == "x-kabuguard-targeted-symbol"}
    campaign_symbols = {o["description"].split("symbols: ")[1] for o in bundle["objects"] if o["type"] == "campaign"}
    assert targeted & {s for text in campaign_symbols for s in text.split(", ")}
    # Exporting again gives the same objects (stable ids), so peers deduplicate.
    again = _export(three_firms, tmp_path, "--firm", "firm-a", "--tlp", "green")
    assert again == bundle


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
    text = json.dumps(_export(three_firms, tmp_path, events=events))
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
    shared_ips = {parse_pattern(o["pattern"])[1] for o in json.loads(text)["objects"]
                  if o["type"] == "indicator" and o["pattern"].startswith("[ipv")}
    assert shared_ips and not shared_ips & customer_ips


def test_pseudonyms_are_keyed_and_a_missing_key_is_a_usage_error(three_firms: Path, tmp_path: Path) -> None:
    one, other = Pseudonymiser(b"k" * 32), Pseudonymiser(b"j" * 32)
    assert one("account", "A1") == one("account", "A1") != other("account", "A1")
    assert one("account", "A1") != one("device", "A1")
    with pytest.raises(MissingKey, match="at least 16"):
        Pseudonymiser(b"short")
    result = CliRunner().invoke(main, ["intel", "export", "--run", str(three_firms / "run"),
                                       "--out", str(tmp_path / "b.json")], env={KEY_ENV: ""})
    assert result.exit_code == 2 and KEY_ENV in result.output


def test_a_run_folder_without_decisions_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["intel", "export", "--run", str(tmp_path), "--out", str(tmp_path / "b.json")],
                                env={KEY_ENV: KEY})
    assert result.exit_code == 2 and "decisions.jsonl: not found" in result.output


@pytest.mark.parametrize("kind,value", [
    ("ip", "203.0.113.9"), ("ip", "2001:db8::1"), ("domain", "kabu-login.example"),
    ("url", "https://x.example/a?b='c'"), ("asn", "AMAZON-02"), ("user_agent", "Mozilla/5.0 \\ 'x'"),
    ("device", "dv-0b259d835bbe")])
def test_patterns_read_back_as_they_were_written(kind: str, value: str) -> None:
    assert parse_pattern(pattern(kind, value)) == (kind, value)
    assert parse_pattern("[ipv4-addr:value = '1.2.3.4' OR ipv4-addr:value = '5.6.7.8']") is None
