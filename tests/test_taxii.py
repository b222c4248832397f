"""The TAXII 2.1 server of `kabuguard serve`, driven by the OASIS `taxii2-client` over loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests
import uvicorn
from click.testing import CliRunner
from taxii2client.exceptions import AccessError
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from kabuguard.cli import main
from kabuguard.intel.pseudonym import KEY_ENV
from kabuguard.intel.taxii.store import TaxiiStore
from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.settings import Settings
from kabuguard.service.storage.database import engine_for, migrate
from test_service_support import pg_url  # noqa: F401 - a fixture


class Running:
    """A `kabuguard serve` app on a free loopback port, in a thread, with keys and collections."""

    def __init__(self, tmp_path: Path) -> None:
        db = f"sqlite:///{tmp_path}/kg.db"
        app = create_app(Settings(db=db, rate_limit=1e9))
        self.keys = {firm: create_key(app.state.service.db, firm, "taxii")[1] for firm in ("firm-a", "firm-b", "firm-c", "fsa")}
        runner = CliRunner()
        for args in (["shared", "--title", "members' indicators", "--read", "*", "--write", "firm-a,fsa"],
                     ["regulator", "--title", "reports to the FSA", "--read", "fsa", "--write", "*"]):
            result = runner.invoke(main, ["intel", "collections", "create", *args, "--db", db])
            assert result.exit_code == 0, result.output
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port}/taxii2/"

    def collection(self, name: str, firm: str) -> Collection:
        return Collection(f"{self.url}kabuguard/collections/{name}/", user=firm, password=self.keys[firm])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def taxii(tmp_path: Path) -> Iterator[Running]:
    running = Running(tmp_path)
    yield running
    running.stop()


def _bundle(three_firms: Path, tmp_path: Path) -> dict:
    out = tmp_path / "bundle.json"
    result = CliRunner().invoke(main, ["intel", "export", "--quiet", "--run", str(three_firms / "run"), "--events",
                                       str(three_firms / "sim" / "events"), "--firm", "firm-a", "--out", str(out)],
                                env={KEY_ENV: "test-only-key-not-a-secret-0123456789"})
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_taxii2_client_discovers_posts_pages_and_filters(taxii: Running, three_firms: Path, tmp_path: Path) -> None:
    server = Server(taxii.url, user="firm-b", password=taxii.keys["firm-b"])
    assert server.title == "Kabuguard TAXII 2.1"
    root = server.default
    assert isinstance(root, ApiRoot) and "application/taxii+json;version=2.1" in root.versions
    visible = {c.id: (c.can_read, c.can_write) for c in root.collections}
    assert visible == {"shared": (True, False), "regulator": (False, True)}  # reports to the FSA: write only

    bundle = _bundle(three_firms, tmp_path)
    objects = bundle["objects"]
    status = taxii.collection("shared", "firm-a").add_objects(json.dumps({"objects": objects}))
    assert status.status == "complete" and status.success_count == len(objects) and status.failure_count == 0
    assert Server(taxii.url, user="firm-a", password=taxii.keys["firm-a"]).default.get_status(status.id).total_count == len(objects)

    shared = taxii.collection("shared", "firm-b")
    pages = list(as_pages(shared.get_objects, per_request=40))
    assert len(pages) == -(-len(objects) // 40)
    got = [o for page in pages for o in page.get("objects", [])]
    assert sorted(o["id"] for o in got) == sorted(o["id"] for o in objects)
    assert got[0] == objects[0]  # stored as posted

    manifest = shared.get_manifest()
    assert len(manifest["objects"]) == min(100, len(objects))
    last_added = max(m["date_added"] for m in manifest["objects"])
    indicators = shared.get_objects(**{"type": "indicator"})["objects"]
    assert indicators and all(o["type"] == "indicator" for o in indicators)
    assert shared.get_objects(added_after=last_added).get("objects", []) == \
        [o for o in got[len(manifest["objects"]):]][:100]

    # A newer version of an indicator: the default read returns it, versions lists both.
    first = dict(indicators[0])
    newer = dict(first, modified="2030-01-01T00:00:00.000Z", description="revoked by firm A", revoked=True)
    taxii.collection("shared", "firm-a").add_objects(json.dumps({"objects": [newer]}))
    assert shared.get_object(first["id"])["objects"] == [newer]
    assert len(shared.object_versions(first["id"])["versions"]) == 2
    assert shared.get_objects(**{"id": first["id"], "version": "first"})["objects"] == [first]


def test_rights_and_credentials_are_enforced(taxii: Running) -> None:
    envelope = json.dumps({"objects": [{"type": "identity", "spec_version": "2.1", "id": "identity--" + "1" * 8 + "-1111-4111-8111-" + "1" * 12,
                                        "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z",
                                        "name": "x"}]})
    with pytest.raises(AccessError):  # the client reads the rights from the collection resource...
        taxii.collection("shared", "firm-b").add_objects(envelope)
    refused = requests.post(f"{taxii.url}kabuguard/collections/shared/objects/", data=envelope,  # ...the server enforces them
                            auth=("firm-b", taxii.keys["firm-b"]), headers={"Content-Type": "application/taxii+json;version=2.1"})
    assert refused.status_code == 403 and "may not write" in refused.json()["description"]
    # Everyone may write to the regulator's inbox; only the regulator reads it.
    assert taxii.collection("regulator", "firm-b").add_objects(envelope).success_count == 1
    assert len(taxii.collection("regulator", "fsa").get_objects()["objects"]) == 1
    bare = requests.get(f"{taxii.url}kabuguard/collections/regulator/objects/", auth=("firm-b", taxii.keys["firm-b"]),
                        headers={"Accept": "application/taxii+json;version=2.1"})
    assert bare.status_code == 403 and bare.headers["content-type"] == "application/taxii+json;version=2.1"
    anonymous = requests.get(taxii.url, headers={"Accept": "application/taxii+json;version=2.1"})
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers["www-authenticate"]
    wrong = requests.get(taxii.url, auth=("firm-b", "kg_000000000000_" + "x" * 40))
    assert wrong.status_code == 401
    assert requests.get(taxii.url, auth=("firm-b", taxii.keys["firm-b"]), headers={"Accept": "text/html"}).status_code == 406
    bad = taxii.collection("regulator", "firm-b").add_objects(json.dumps({"objects": [{"type": "indicator", "id": "nope"}]}))
    assert bad.failure_count == 1 and "objects[0]" in bad.failures[0]["message"]


def test_intel_pull_writes_indicator_events_that_replay_reads(taxii: Running, three_firms: Path, tmp_path: Path) -> None:
    objects = _bundle(three_firms, tmp_path)["objects"]
    revoked = next(o for o in objects if o["type"] == "indicator")
    objects.append(dict(revoked, modified="2030-01-01T00:00:00.000Z", revoked=True))
    other = {"type": "indicator", "spec_version": "2.1", "id": "indicator--" + "2" * 8 + "-2222-4222-8222-" + "2" * 12,
             "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z", "pattern_type": "stix",
             "pattern": "[file:hashes.'SHA-256' = 'aa']", "valid_from": "2025-01-01T00:00:00Z"}
    malformed = [dict(other, id="indicator--" + "8" * 8 + "-8888-4888-8888-" + "8" * 12, valid_until="next week"),
                 dict(other, id="indicator--" + "8" * 8 + "-8888-4888-8888-" + "8" * 11 + "9", pattern=["a list"])]
    taxii.collection("shared", "firm-a").add_objects(json.dumps({"objects": objects + [other] + malformed}))
    out = tmp_path / "indicators.jsonl"
    result = CliRunner().invoke(main, ["intel", "pull", taxii.url, "--collection", "shared", "--out", str(out),
                                       "--user", "firm-b"], env={"KABUGUARD_TAXII_KEY": taxii.keys["firm-b"]})
    assert result.exit_code == 1, result.output  # two malformed indicators, named; the rest written
    assert "(1 withdrawing a value: revoked or expired)" in result.stdout
    assert "pattern Kabuguard cannot match 1" in result.stdout
    assert "`valid_until` 'next week'" in result.stderr and "`pattern` is not text" in result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    shared = {(o["pattern"]) for o in objects if o["type"] == "indicator"}
    assert len(lines) == len(shared) and {line["source"] for line in lines} == {"firm-a"}
    withdrawal = lines[0]  # the revoked version ends the value as it arrives: revoked is revoked now
    assert withdrawal["stix_id"] == revoked["id"]
    assert datetime.fromisoformat(withdrawal["valid_until"]) == datetime.fromisoformat(withdrawal["ts"])
    assert all(line["ts"] > "2026" for line in lines)  # arrival: now, never the sharer's first sighting
    from kabuguard.replay import replay

    summary = replay([out], tmp_path / "run", quiet=True)
    assert summary.events == len(lines) and summary.rejected == 0
    missing = CliRunner().invoke(main, ["intel", "pull", taxii.url, "--collection", "nope", "--out", str(out)],
                                 env={"KABUGUARD_TAXII_KEY": taxii.keys["firm-b"]})
    assert missing.exit_code == 2 and "offered: regulator, shared" in missing.output


def test_stats_endpoint_aggregates_what_firms_reported_for_the_regulator_only(taxii: Running, three_firms: Path,
                                                                               tmp_path: Path) -> None:
    from test_intel_stats import bundles

    paths = bundles(three_firms, tmp_path)
    for firm, path in zip(("firm-a", "firm-b", "firm-c"), paths):
        taxii.collection("regulator", firm).add_objects(json.dumps({"objects": json.loads(path.read_text())["objects"]}))
    url = taxii.url.replace("/taxii2/", "/v1/intel/stats")
    answer = requests.get(url, params={"collection": "regulator"}, headers={"Authorization": f"Bearer {taxii.keys['fsa']}"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    expected = CliRunner().invoke(main, ["intel", "stats", "--json", *map(str, paths)])
    assert answer.json() == json.loads(expected.output)
    assert requests.get(url, params={"collection": "regulator"}, auth=("firm-b", taxii.keys["firm-b"])).status_code == 403
    assert requests.get(url, params={"collection": "regulator"}).status_code == 401
    assert requests.get(url, auth=("fsa", taxii.keys["fsa"])).status_code == 422


def _post(taxii: Running, firm: str, objects: list, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{taxii.url}kabuguard/collections/regulator/objects/", data=json.dumps({"objects": objects}),
                         auth=(firm, taxii.keys[firm]), headers={"Content-Type": "application/taxii+json;version=2.1",
                                                                 "Accept": "application/taxii+json;version=2.1",
                                                                 **(headers or {})})


def test_a_firm_cannot_rewrite_or_sign_for_another_firms_reports(taxii: Running, three_firms: Path, tmp_path: Path) -> None:
    from test_intel_stats import bundles

    path = bundles(three_firms, tmp_path)[0]  # firm-a's bundle
    objects = json.loads(path.read_text())["objects"]
    assert _post(taxii, "firm-a", objects).json()["success_count"] == len(objects)
    url = taxii.url.replace("/taxii2/", "/v1/intel/stats")
    before = requests.get(url, params={"collection": "regulator"}, auth=("fsa", taxii.keys["fsa"])).json()
    report = next(o for o in objects if o["type"] == "x-kabuguard-monthly-report")
    forged = dict(report, modified="2030-01-01T00:00:00.000Z", unauthorised_access_count=0)
    status = _post(taxii, "firm-b", [forged]).json()
    assert status["success_count"] == 0 and "not this firm's to write" in status["failures"][0]["message"]
    # A new report signed with firm-a's identity, or with an identity of firm-b's named firm-a, is
    # refused (it was stored, and `intel pull` named firm-a as its source); signed as firm-b, it counts.
    fresh = dict(report, id="x-kabuguard-monthly-report--" + "3" * 8 + "-3333-4333-8333-" + "3" * 12,
                 unauthorised_access_count=5)
    posing = {"type": "identity", "spec_version": "2.1", "id": "identity--" + "5" * 8 + "-5555-4555-8555-" + "5" * 12,
              "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z", "name": "firm-a"}
    own = dict(posing, id=posing["id"].replace("5555-4555", "5556-4556"), name="firm-b")
    forged = _post(taxii, "firm-b", [fresh, posing, dict(fresh, created_by_ref=posing["id"])]).json()
    assert forged["success_count"] == 1 and [f["message"] for f in forged["failures"]] == [
        f"objects[{n}]: `created_by_ref` {signer!r}: not this firm's own identity (one it shared, named 'firm-b'); "
        "a firm signs only what it posts itself" for n, signer in ((0, report["created_by_ref"]), (2, posing["id"]))]
    assert _post(taxii, "firm-b", [own, dict(fresh, created_by_ref=own["id"])]).json()["failures"] == []
    after = requests.get(url, params={"collection": "regulator"}, auth=("fsa", taxii.keys["fsa"])).json()
    month = next(m for m in after["months"] if m["month"] == report["month"])
    was = next(m for m in before["months"] if m["month"] == report["month"])
    assert month["unauthorised_access_count"] == was["unauthorised_access_count"] + 5
    assert month["firms"] == sorted({*was["firms"], "firm-b"})


def test_intel_stats_over_taxii_counts_each_report_for_the_firm_that_posted_it(taxii: Running, three_firms: Path,
                                                                              tmp_path: Path) -> None:
    """`intel stats --taxii` counted a report for whatever identity its created_by_ref named, so
    firm-b reported in firm-a's name there, while GET /v1/intel/stats counted it for firm-b."""
    from test_intel_stats import bundles

    objects = json.loads(bundles(three_firms, tmp_path)[0].read_text())["objects"]  # firm-a's bundle, firm-b posts it
    unsigned = [{k: v for k, v in o.items() if k != "created_by_ref"} for o in objects if o["type"] != "identity"]
    assert _post(taxii, "firm-b", unsigned).json()["failure_count"] == 0  # signed as firm-a, they are refused
    url = taxii.url.replace("/taxii2/", "/v1/intel/stats")
    served = requests.get(url, params={"collection": "regulator", "top": 3}, auth=("fsa", taxii.keys["fsa"])).json()
    assert {firm for m in served["months"] for firm in m["firms"]} == {"firm-b"}
    for root in (taxii.url, f"{taxii.url}kabuguard/"):  # discovery or API root
        result = CliRunner().invoke(main, ["intel", "stats", "--taxii", root, "--collection", "regulator", "--top", "3",
                                           "--json"], env={"KABUGUARD_TAXII_KEY": taxii.keys["fsa"]})
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == served
    refused = CliRunner().invoke(main, ["intel", "stats", "--taxii", taxii.url, "--collection", "regulator"],
                                 env={"KABUGUARD_TAXII_KEY": taxii.keys["firm-b"]})
    assert refused.exit_code == 2 and "may not read it" in refused.output


def test_a_firm_can_neither_take_nor_probe_another_firms_ids(taxii: Running, three_firms: Path, tmp_path: Path) -> None:
    """Ids came from public inputs (firm, type, month or value): firm-b posted firm-a's April report
    id first, so firm-a's own report failed; and the failure to write an id, 'shared by another
    firm', told firm-b what firm-a had sent to an inbox firm-b may not read."""
    from test_intel_stats import bundles

    from kabuguard.intel.stix import stable_id

    objects = json.loads(bundles(three_firms, tmp_path)[0].read_text())["objects"]  # firm-a's bundle
    about = {"identity": (), "x-kabuguard-monthly-report": ("month",), "x-kabuguard-targeted-symbol": ("symbol",)}
    squats = [{k: v for k, v in o.items() if k != "created_by_ref"} | {"id": stable_id(o["type"], "firm-a", *(
        o[name] for name in about[o["type"]]))} for o in objects if o["type"] in about]  # the ids the export used to give them
    assert len(squats) > 2 and _post(taxii, "firm-b", squats).json()["success_count"] == len(squats)
    status = _post(taxii, "firm-a", objects).json()
    assert status["failure_count"] == 0 and status["success_count"] == len(objects)
    report = next(o for o in objects if o["type"] == "x-kabuguard-monthly-report")
    refused = _post(taxii, "firm-b", [dict(report, unauthorised_access_count=0)]).json()["failures"]
    assert refused == [{"id": report["id"], "message": f"objects[0]: `id` {report['id']!r}: not this firm's to write "
                                                       "(use the ids of its own export)"}]


def test_every_firm_posts_its_own_untouched_export_and_only_unchanged_copies_pass(taxii: Running, three_firms: Path,
                                                                                 tmp_path: Path) -> None:
    """The TLP marking and the type definitions have the same ids in every bundle, but the
    definitions carried each firm's identity and marking: the second firm's POST failed three."""
    from test_intel_stats import bundles

    paths = bundles(three_firms, tmp_path)
    green = CliRunner().invoke(main, ["intel", "export", "--quiet", "--run", str(three_firms / "run"), "--events",
                                      str(three_firms / "sim" / "events"), "--firm", "firm-b", "--tlp", "green",
                                      "--out", str(paths[1])], env={KEY_ENV: "firm-b-own-test-key-0123456789"})
    assert green.exit_code == 0, green.output
    for firm, path in zip(("firm-a", "firm-b", "firm-c"), paths):
        objects = json.loads(path.read_text())["objects"]
        status = _post(taxii, firm, objects).json()
        assert (status["success_count"], status["failures"]) == (len(objects), []), firm
    definition = next(o for o in objects if o["type"] == "extension-definition")
    changed = _post(taxii, "firm-b", [dict(definition, description="firm-b's")]).json()
    assert changed["success_count"] == 0 and "not this firm's to write" in changed["failures"][0]["message"]
    stats = requests.get(taxii.url.replace("/taxii2/", "/v1/intel/stats"), params={"collection": "regulator"},
                         auth=("fsa", taxii.keys["fsa"])).json()
    assert stats["months"][0]["firms"] == ["firm-a", "firm-b", "firm-c"]


def test_a_bad_object_fails_alone_and_bad_reports_are_left_out_of_the_figures(taxii: Running) -> None:
    good = {"type": "identity", "spec_version": "2.1", "id": "identity--" + "4" * 8 + "-4444-4444-8444-" + "4" * 12,
            "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z", "name": "firm-b"}
    bad = [dict(good, id=f"identity--{n}" + "5" * 7 + "-5555-4555-8555-" + "5" * 12, modified=value)
           for n, value in enumerate((5, "yesterday", "0001-01-01T00:00:00+01:00"))]
    long_type = "x-" + "a" * 120
    bad.append({"type": long_type, "spec_version": "2.1", "id": f"{long_type}--" + "6" * 8 + "-6666-4666-8666-" + "6" * 12})
    answer = _post(taxii, "firm-b", [*bad, good])
    assert answer.status_code == 202
    status = answer.json()
    assert status["success_count"] == 1 and status["failure_count"] == 4
    assert [f["message"].split(":")[0] for f in status["failures"]] == ["objects[0]", "objects[1]", "objects[2]", "objects[3]"]
    assert "out of range" in status["failures"][2]["message"] and "at most 100" in status["failures"][3]["message"]
    report = {"type": "x-kabuguard-monthly-report", "spec_version": "2.1",
              "id": "x-kabuguard-monthly-report--" + "7" * 8 + "-7777-4777-8777-" + "7" * 12,
              "created": "2025-05-01T00:00:00Z", "modified": "2025-05-01T00:00:00Z", "name": "firm-b 2025-04",
              "month": "2025-04", "unauthorised_access_count": "n/a", "unauthorised_trade_count": 1,
              "sell_amount_jpy": 1.0, "buy_amount_jpy": 2.0}
    refused = _post(taxii, "firm-b", [report]).json()
    assert refused["failure_count"] == 1 and "unauthorised_access_count" in refused["failures"][0]["message"]
    stats = requests.get(taxii.url.replace("/taxii2/", "/v1/intel/stats"), params={"collection": "regulator"},
                         auth=("fsa", taxii.keys["fsa"]))
    assert stats.status_code == 200 and stats.json()["skipped"] == []
    far = requests.get(f"{taxii.url}kabuguard/collections/regulator/objects/", params={"next": "9" * 20},
                       auth=("fsa", taxii.keys["fsa"]), headers={"Accept": "application/taxii+json;version=2.1"})
    assert far.status_code == 400 and "next" in far.json()["description"]


def test_a_report_whose_json_types_are_wrong_is_refused_and_the_figures_still_answer(taxii: Running) -> None:
    """stix2 coerces "5" to 5 and 202504 to "202504": the store took the first (GET /v1/intel/stats
    then answered 500 to everyone) and answered 500 to the second."""
    report = {"type": "x-kabuguard-monthly-report", "spec_version": "2.1",
              "id": "x-kabuguard-monthly-report--" + "7" * 8 + "-7777-4777-8777-" + "7" * 12,
              "created": "2025-05-01T00:00:00Z", "modified": "2025-05-01T00:00:00Z", "name": "firm-b 2025-04",
              "month": "2025-04", "unauthorised_access_count": 1, "unauthorised_trade_count": 1,
              "sell_amount_jpy": 1.0, "buy_amount_jpy": 2.0}
    answer = _post(taxii, "firm-b", [dict(report, unauthorised_access_count="5"), dict(report, month=202504)])
    assert answer.status_code == 202, answer.text
    failures = answer.json()["failures"]
    assert [f["message"] for f in failures] == ["objects[0]: `unauthorised_access_count` '5': not a whole number",
                                                "objects[1]: `month` 202504: not text"]
    stats = requests.get(taxii.url.replace("/taxii2/", "/v1/intel/stats"), params={"collection": "regulator"},
                         auth=("fsa", taxii.keys["fsa"]))
    assert stats.status_code == 200 and stats.json()["months"] == []


def test_nan_or_infinity_in_a_posted_object_is_refused_naming_it(taxii: Running) -> None:
    """Python's json reads NaN and Infinity: stored, they made the stats endpoint answer 500 and
    every page of the collection invalid JSON."""
    report = {"type": "x-kabuguard-monthly-report", "spec_version": "2.1",
              "id": "x-kabuguard-monthly-report--" + "a" * 8 + "-aaaa-4aaa-8aaa-" + "a" * 12,
              "created": "2025-05-01T00:00:00Z", "modified": "2025-05-01T00:00:00Z", "name": "firm-b 2025-04",
              "month": "2025-04", "unauthorised_access_count": 1, "unauthorised_trade_count": 1,
              "sell_amount_jpy": 1.0, "buy_amount_jpy": 2.0}
    for value in (float("nan"), float("inf")):
        refused = _post(taxii, "firm-b", [dict(report, sell_amount_jpy=value)])
        assert refused.status_code == 400, refused.text
        assert f"objects[0].sell_amount_jpy ({report['id']})" in refused.json()["description"]
    page = requests.get(f"{taxii.url}kabuguard/collections/regulator/objects/", auth=("fsa", taxii.keys["fsa"]),
                        headers={"Accept": "application/taxii+json;version=2.1"})
    assert page.status_code == 200 and "objects" not in page.json()  # nothing was stored
    stats = requests.get(taxii.url.replace("/taxii2/", "/v1/intel/stats"), params={"collection": "regulator"},
                         auth=("fsa", taxii.keys["fsa"]))
    assert stats.status_code == 200 and stats.json()["months"] == []


def test_intel_pull_reads_a_one_host_block_as_its_address_and_skips_wider_ones() -> None:
    """A /32 became an indicator whose value ended in '/32', matching no login, and was counted as written."""
    from kabuguard.intel.pull import PullSummary, indicator_events

    objects = [{"type": "indicator", "spec_version": "2.1", "id": f"indicator--{n}" + "3" * 7 + "-3333-4333-8333-" + "3" * 12,
                "modified": "2025-04-01T00:00:00.000Z", "pattern_type": "stix", "pattern": f"[ipv4-addr:value = '{value}']"}
               for n, value in enumerate(("45.32.7.7/32", "45.32.7.0/24", "45.32.8.8"))]
    summary = PullSummary()
    lines = indicator_events(objects, lambda _: "2025-04-01T00:00:00.000+00:00", summary)
    assert [line["value"] for line in lines] == ["45.32.7.7", "45.32.8.8"]
    assert summary.written == 2 and summary.skipped == {"pattern Kabuguard cannot match": 1}


def test_intel_pull_rejects_a_malformed_object_and_writes_the_rest() -> None:
    """A peer's object without an id, or not an object at all, stopped the pull with KeyError or AttributeError."""
    from kabuguard.intel.pull import PullSummary, indicator_events

    good = {"type": "indicator", "spec_version": "2.1", "id": "indicator--" + "3" * 8 + "-3333-4333-8333-" + "3" * 12,
            "modified": "2025-04-01T00:00:00.000Z", "pattern_type": "stix", "pattern": "[ipv4-addr:value = '45.32.8.8']"}
    summary = PullSummary()
    lines = indicator_events([{"type": "identity", "name": "firm-x"}, "not-an-object", good],
                             lambda _: "2025-04-01T00:00:00.000+00:00", summary)
    assert [line["value"] for line in lines] == ["45.32.8.8"]
    assert summary.rejected == [("objects[0]", "no STIX `id`"), ("objects[1]", "not a JSON object")]


def test_intel_pull_rejects_an_unreadable_creator_and_writes_the_rest() -> None:
    """An indicator whose created_by_ref was a list stopped the whole pull: unhashable type 'list'."""
    from kabuguard.intel.pull import PullSummary, indicator_events

    good = {"type": "indicator", "spec_version": "2.1", "id": "indicator--" + "3" * 8 + "-3333-4333-8333-" + "3" * 12,
            "modified": "2025-04-01T00:00:00.000Z", "pattern_type": "stix", "pattern": "[ipv4-addr:value = '45.32.8.8']"}
    listed = dict(good, id=good["id"].replace("3333-4333", "3334-4334"), created_by_ref=["identity--x"])
    nameless = {"type": "identity", "id": "identity--" + "4" * 8 + "-4444-4444-8444-" + "4" * 12, "name": {"en": "x"}}
    signed = dict(good, id=good["id"].replace("3333-4333", "3335-4335"), created_by_ref=nameless["id"])
    summary = PullSummary()
    lines = indicator_events([listed, nameless, good, signed], lambda _: "2025-04-01T00:00:00.000+00:00", summary)
    assert [(line["stix_id"], "source" in line) for line in lines] == [(good["id"], False), (signed["id"], False)]
    assert summary.rejected == [(nameless["id"], "identity `name` is not text"), (listed["id"], "`created_by_ref` is not text")]


def test_firms_posting_one_new_id_at_once_leave_it_one_owner(pg_url: str) -> None:
    """Six firms post versions of one new id at the same moment, ten times: the first add owns
    the id and the others are refused. Adds that each read "no owner yet" all claimed it."""
    engine = engine_for(pg_url)
    migrate(engine)
    store = TaxiiStore(engine)
    firms = [f"firm{n}" for n in range(6)]
    store.create_collection("inbox", "inbox", "", readers=[], writers=firms)
    try:
        for _ in range(10):
            stix_id = f"indicator--{uuid.uuid4()}"
            start, answers = threading.Barrier(len(firms)), {}

            def post(n: int) -> None:
                version = {"type": "indicator", "spec_version": "2.1", "id": stix_id, "pattern_type": "stix",
                           "created": "2025-04-01T00:00:00.000Z", "modified": f"2025-04-0{n + 1}T00:00:00.000Z",
                           "pattern": "[ipv4-addr:value = '203.0.113.7']", "valid_from": "2025-04-01T00:00:00Z"}
                start.wait()
                answers[n] = store.add(firms[n], "inbox", [version])["success_count"]

            posting = [threading.Thread(target=post, args=(n,)) for n in range(len(firms))]
            for thread in posting:
                thread.start()
            for thread in posting:
                thread.join(30)
            assert sorted(answers.values()) == [0] * (len(firms) - 1) + [1]
            page = store.page("inbox", None, 0, 100, [stix_id], [], ["all"])
            assert len(page.rows) == 1
    finally:
        engine.dispose()


def test_another_body_under_a_stored_version_fails_and_a_later_version_replaces_it(taxii: Running, three_firms: Path,
                                                                                   tmp_path: Path) -> None:
    """A known (id, version) was skipped and counted as a success whatever it held: a corrected
    report under its old `modified` changed nothing, and the firm was told it had."""
    from test_intel_stats import bundles

    objects = json.loads(bundles(three_firms, tmp_path)[0].read_text())["objects"]
    assert _post(taxii, "firm-a", objects).json()["success_count"] == len(objects)
    again = _post(taxii, "firm-a", objects).json()  # the same versions again: a success that stores nothing
    assert (again["success_count"], again["failures"]) == (len(objects), [])
    url = taxii.url.replace("/taxii2/", "/v1/intel/stats")
    before = requests.get(url, params={"collection": "regulator"}, auth=("fsa", taxii.keys["fsa"])).json()["months"]
    report = next(o for o in objects if o["type"] == "x-kabuguard-monthly-report")
    corrected = dict(report, unauthorised_access_count=report["unauthorised_access_count"] + 5)
    status = _post(taxii, "firm-a", [corrected]).json()
    assert status["success_count"] == 0 and status["failures"] == [{"id": report["id"], "message": (
        f"objects[0]: `id` {report['id']!r}: version {report['modified'][:-1]}000Z is stored with other content; "
        "a changed object needs a later `modified` (the stored version stays)")}]
    twice = _post(taxii, "firm-a", [dict(corrected, modified="2030-01-01T00:00:00.000Z"),
                                    dict(report, modified="2030-01-01T00:00:00.000Z")]).json()
    assert twice["success_count"] == 1 and "stored with other content" in twice["failures"][0]["message"]
    after = requests.get(url, params={"collection": "regulator"}, auth=("fsa", taxii.keys["fsa"])).json()["months"]
    month = next(m for m in after if m["month"] == report["month"])
    was = next(m for m in before if m["month"] == report["month"])
    assert month["unauthorised_access_count"] == was["unauthorised_access_count"] + 5


def test_an_object_without_modified_is_stored_once_and_anyones_to_post_again(taxii: Running) -> None:
    """A cyber-observable (no created or modified, an id derived from its value) got a new version
    at every POST (the request's time), and a second firm posting the same address was refused
    as writing another firm's object."""
    import stix2

    address = json.loads(stix2.v21.IPv4Address(value="203.0.113.7").serialize())
    answers = [_post(taxii, firm, [address]).json() for firm in ("firm-a", "firm-a", "firm-b")]
    assert [(a["success_count"], a["failures"]) for a in answers] == [(1, [])] * 3
    assert len({a["successes"][0]["version"] for a in answers}) == 1
    versions = requests.get(f"{taxii.url}kabuguard/collections/regulator/objects/{address['id']}/versions/",
                            auth=("fsa", taxii.keys["fsa"]), headers={"Accept": "application/taxii+json;version=2.1"})
    assert versions.json()["versions"] == [answers[0]["successes"][0]["version"]]


def test_the_regulator_sums_a_firms_consecutive_exports(taxii: Running, three_firms: Path, tmp_path: Path) -> None:
    """The second export's month report superseded the first's: the regulator saw the last run only."""
    from test_intel_stats import bundles, weekly_bundles

    whole = CliRunner().invoke(main, ["intel", "stats", "--json", *map(str, bundles(three_firms, tmp_path))])
    for n, path in enumerate(weekly_bundles(three_firms, tmp_path)):
        status = _post(taxii, ("firm-a", "firm-b", "firm-c")[n % 3], json.loads(path.read_text())["objects"]).json()
        assert status["failures"] == [], path
    served = requests.get(taxii.url.replace("/taxii2/", "/v1/intel/stats"), params={"collection": "regulator"},
                          auth=("fsa", taxii.keys["fsa"])).json()
    assert served == json.loads(whole.output)


def test_an_incremental_pull_keeps_the_source_and_says_where_to_resume(taxii: Running, three_firms: Path,
                                                                        tmp_path: Path) -> None:
    """`--added-after` lost `source` (the creator's identity was posted before, so it is not in the
    increment) and the command printed no X-TAXII-Date-Added-Last to resume from."""
    objects = _bundle(three_firms, tmp_path)["objects"]
    taxii.collection("shared", "firm-a").add_objects(json.dumps({"objects": objects}))
    out = tmp_path / "indicators.jsonl"

    def pull(*args: str) -> tuple[str, list[dict]]:
        result = CliRunner().invoke(main, ["intel", "pull", taxii.url, "--collection", "shared", "--out", str(out),
                                           "--user", "firm-b", *args], env={"KABUGUARD_TAXII_KEY": taxii.keys["firm-b"]})
        assert result.exit_code == 0, result.output
        resume = result.stdout.splitlines()[-1]
        assert resume.startswith("next pull: --added-after "), result.stdout
        return resume.split()[-1], [json.loads(line) for line in out.read_text().splitlines()]

    cut, everything = pull()
    assert len(everything) == sum(o["type"] == "indicator" for o in objects)
    signer = next(o for o in objects if o["type"] == "indicator")["created_by_ref"]
    fresh = {"type": "indicator", "spec_version": "2.1", "id": "indicator--" + "5" * 8 + "-5555-4555-8555-" + "5" * 12,
             "created": "2025-04-20T00:00:00.000Z", "modified": "2025-04-20T00:00:00.000Z", "pattern_type": "stix",
             "pattern": "[ipv4-addr:value = '198.51.100.99']", "valid_from": "2025-04-20T00:00:00Z",
             "created_by_ref": signer}
    taxii.collection("shared", "firm-a").add_objects(json.dumps({"objects": [fresh]}))
    resume, lines = pull("--added-after", cut)
    assert [(line["stix_id"], line.get("source")) for line in lines] == [(fresh["id"], "firm-a")]
    manifest = taxii.collection("shared", "firm-b").get_manifest(id=fresh["id"])["objects"]
    assert datetime.fromisoformat(resume) == datetime.fromisoformat(manifest[0]["date_added"]) > datetime.fromisoformat(cut)


def test_versions_of_taxii_and_stix_this_server_does_not_speak_are_refused(taxii: Running) -> None:
    """Any version in Accept or Content-Type was taken (2.0, 3.0, 9) and match[spec_version] was
    ignored; TAXII 2.1 answers 406 and 415, and filters by the STIX version."""
    ident = {"type": "identity", "spec_version": "2.1", "id": "identity--" + "1" * 8 + "-1111-4111-8111-" + "1" * 12,
             "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z", "name": "firm-b"}
    posted = {ctype: _post(taxii, "firm-b", [ident], headers={"Content-Type": ctype}) for ctype in (
        "application/taxii+json;version=2.0", "application/taxii+json; version=9", "application/taxii+json;version=2.1",
        "application/taxii+json")}
    assert [answer.status_code for answer in posted.values()] == [415, 415, 202, 202]
    assert "version 2.0" in posted["application/taxii+json;version=2.0"].json()["description"]

    def read(accept: str, **params: str) -> requests.Response:
        return requests.get(f"{taxii.url}kabuguard/collections/regulator/objects/", params=params,
                            auth=("fsa", taxii.keys["fsa"]), headers={"Accept": accept})

    answers = {accept: read(accept).status_code for accept in (
        "application/taxii+json;version=2.0", "application/taxii+json;version=3.0", "application/json",
        "application/taxii+json;version=2.1", "application/taxii+json", "*/*",
        "application/taxii+json;version=2.0, application/taxii+json;version=2.1")}
    assert list(answers.values()) == [406, 406, 406, 200, 200, 200, 200]
    assert "version 3.0" in read("application/taxii+json;version=3.0").json()["description"]
    taxii21 = "application/taxii+json;version=2.1"
    found = {spec: read(taxii21, **{"match[spec_version]": spec}).json().get("objects", [])
             for spec in ("2.0", "2.1", "2.0,2.1")}
    assert found == {"2.0": [], "2.1": [ident], "2.0,2.1": [ident]}
    bad = read(taxii21, **{"match[spec_version]": "latest"})
    assert bad.status_code == 400 and "match[spec_version] 'latest'" in bad.json()["description"]
    manifest = requests.get(f"{taxii.url}kabuguard/collections/regulator/manifest/", params={"match[spec_version]": "2.0"},
                            auth=("fsa", taxii.keys["fsa"]), headers={"Accept": taxii21})
    assert manifest.status_code == 200 and "objects" not in manifest.json()
