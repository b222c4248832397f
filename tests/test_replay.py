"""The replay runner and the core's invariants: one decision per event, no look-ahead."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import kabuguard.policy
from conftest import Stream, brokerage, ts
from kabuguard.cli import main
from kabuguard.engine import Pipeline
from kabuguard.events import read_file, total_order
from kabuguard.events.order import TotalOrder
from kabuguard.replay import collector_off, decide, read_events, replay


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_decision_per_distinct_activity_event(tmp_path: Path, stream: Stream) -> None:
    stream.events.append(dict(stream.events[-1]))  # a duplicate event_id is the same event
    src = stream.write(tmp_path / "e.jsonl")
    summary = replay([src], tmp_path / "out", quiet=True)
    decisions = _jsonl(tmp_path / "out" / "decisions.jsonl")
    activity = {e["event_id"] for e in stream.events if e["type"] in ("login", "account_change", "order")}
    assert sorted(d["event_id"] for d in decisions) == sorted(activity)
    assert summary.duplicates == 1
    assert all(0.0 <= d["score"] <= 1.0 for d in decisions)


def test_no_look_ahead_a_cut_stream_decides_its_prefix_identically(tmp_path: Path, stream: Stream) -> None:
    src = stream.write(tmp_path / "e.jsonl")
    ordered = total_order(e for e in read_file(src)).events
    whole = Pipeline()
    full = [whole.process(e) for e in ordered]
    for cut in (50, len(ordered) - 10, len(ordered) - 2):
        part = Pipeline()
        assert [part.process(e) for e in ordered[:cut]] == full[:cut]


def test_a_replay_sorting_on_disk_writes_the_same_bytes(tmp_path: Path, three_firms: Path) -> None:
    summary = replay([three_firms / "sim" / "events"], tmp_path / "out", quiet=True, spill_after=9_973)
    for name in ("decisions.jsonl", "alerts.jsonl", "rejected.jsonl"):
        assert (tmp_path / "out" / name).read_bytes() == (three_firms / "run" / name).read_bytes(), name
    assert summary.events > 5 * 9_973
    assert not list((tmp_path / "out").glob("kabuguard-run-*"))


def test_the_2025_pattern_is_stopped_and_habits_are_not(tmp_path: Path, stream: Stream) -> None:
    replay([stream.write(tmp_path / "e.jsonl")], tmp_path / "out", quiet=True)
    decisions = {d["event_id"]: d for d in _jsonl(tmp_path / "out" / "decisions.jsonl")}
    attack = [e for e in stream.events if e.get("ip", "").startswith("45.32.")]
    habit = [e for e in stream.events if e.get("ip", "").startswith("126.1.") and e["ts"] > ts(10, 0, 0)]
    assert all(decisions[e["event_id"]]["decision"] in ("review", "block") for e in attack if e["type"] == "order")
    assert all(decisions[e["event_id"]]["decision"] != "allow" for e in attack if e["type"] == "login")
    assert all(decisions[e["event_id"]]["decision"] == "allow" for e in habit)
    alerts = _jsonl(tmp_path / "out" / "alerts.jsonl")
    campaign = [a for a in alerts if a["type"] == "campaign_alert"]
    assert campaign and campaign[-1]["symbols"] == ["9999"]
    assert set(campaign[-1]["accounts"]) == {f"A{a}" for a in range(6)}


def test_contained_account_is_blocked_with_reason_contained(tmp_path: Path) -> None:
    s = brokerage(attack=False)
    src = s.write(tmp_path / "e.jsonl")
    pipeline = Pipeline()
    events = total_order(e for e in read_file(src)).events
    for event in events:
        pipeline.process(event)
    pipeline.contain(None, "A3")
    later = Stream()
    later.login(ts(21, 20, 3), "A3", "126.1.3.5", "dev-3")
    (event,) = read_file(later.write(tmp_path / "later.jsonl"))
    decision, _ = pipeline.process(event)
    assert decision["decision"] == "block" and decision["reasons"][0] == "contained"


def test_cli_exit_codes_and_help(tmp_path: Path, stream: Stream) -> None:
    runner = CliRunner()
    good = stream.write(tmp_path / "good.jsonl")
    assert runner.invoke(main, ["replay", str(good), "--out", str(tmp_path / "a"), "--quiet"]).exit_code == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + "{oops\n")
    result = runner.invoke(main, ["replay", str(bad), "--out", str(tmp_path / "b"), "--quiet"])
    assert result.exit_code == 1
    (rejection,) = _jsonl(tmp_path / "b" / "rejected.jsonl")
    assert rejection["file"] == str(bad) and rejection["line"] == len(stream.events) + 1
    assert runner.invoke(main, ["replay", "--out", str(tmp_path / "c")]).exit_code == 2
    for command in ("replay", "simulate", "evaluate", "demo", "phish"):
        assert runner.invoke(main, [command, "--help"]).exit_code == 0, command


def test_rejected_lines_are_counted_by_file_and_a_simulator_answer_key_is_named(tmp_path: Path, stream: Stream) -> None:
    """A simulator's folder replayed whole reads labels.jsonl as events: the exit says which files
    the rejected lines came from and what labels.jsonl is, not only a count."""
    sim = tmp_path / "sim"
    (sim / "events").mkdir(parents=True)
    good = stream.write(sim / "events" / "e.jsonl")
    (sim / "events" / "bad.jsonl").write_text(good.read_text().splitlines()[0] + "\n{oops\n")
    (sim / "labels.jsonl").write_text("".join(json.dumps({"event_id": e["event_id"], "fraud": False}) + "\n"
                                              for e in stream.events[:5]))
    result = CliRunner().invoke(main, ["replay", str(sim), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1
    assert f"6 rejected lines (5 in {sim / 'labels.jsonl'}, 1 in {sim / 'events' / 'bad.jsonl'})" in result.stderr
    assert "replay its events/ folder" in result.stderr


def test_a_malformed_policy_is_a_usage_error_naming_the_key(tmp_path: Path, stream: Stream) -> None:
    raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
    del raw["bias"]["account_change"]
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["replay", str(stream.write(tmp_path / "e.jsonl")), "--out",
                                       str(tmp_path / "o"), "--policy", str(policy)])
    assert result.exit_code == 2
    assert "bias.account_change" in result.output


@pytest.mark.parametrize(("key", "value", "named"), [
    ("bias.order", float("nan"), "bias.order"),  # loaded before: blocked every order
    ("decisions.order.block", "high", "decisions.order.block"),  # a traceback before
    ("account_alert_cooldown_hours", -5, "account_alert_cooldown_hours"),  # loaded: no cooldown at all
    ("detectors.campaign.window_minutes", -120, "detectors.campaign.window_minutes"),
    ("detectors.login_profile.attributes.device.alpha", 0, "alpha"),  # failed mid-replay, per login
    ("detectors.login_profile.distrust_on_change", "email", "distrust_on_change"),  # became {e, m, a, i, l}
    ("detectors.market_factor.bucket_minutes", 0, "bucket_minutes"),  # failed mid-replay, per bar
    ("fx_jpy.USD", float("inf"), "fx_jpy.USD"),
    ("failmode", "fail_closed", "failmode"),  # a typo that loaded as fail_open
    # Each of these loaded, then failed on the first event it met (division by zero, log of 0).
    ("detectors.failed_login_burst.min_failures", 0, "min_failures"),
    ("detectors.shared_ip.min_accounts", 0, "min_accounts"),
    ("detectors.credential_stuffing.min_accounts", 0, "min_accounts"),
    ("detectors.thin_stock_buy.min_adv_share", 0, "min_adv_share"),
    ("detectors.unusual_trading.alpha", 0, "alpha"),
    ("detectors.unusual_trading.p_new_symbol_customer", 0, "p_new_symbol_customer"),
    ("detectors.hosting_network.p_hosting_customer", 1.0, "p_hosting_customer"),
    ("detectors.login_profile.hour_alpha", 0, "hour_alpha"),
    # Fractions of a whole number were cut to the number below it, silently.
    ("detectors.campaign.min_accounts", 2.5, "min_accounts"),
    ("detectors.takeover_wave.min_accounts", 3.5, "min_accounts"),
    ("detectors.suspect_flow.min_buyers", 1.5, "min_buyers"),
    ("detectors.owners_crowd.min_owners", 2.5, "min_owners"),
    ("detectors.unusual_trading.min_orders", 4.5, "min_orders"),
    ("detectors.login_profile.hour_min_logins", 9.9, "hour_min_logins"),
    ("detectors.login_profile.unfamiliar.min_logins", 2.5, "min_logins"),
    ("detectors.login_profile.hour_min_logins", -1, "hour_min_logins"),
    # Lists written as one string became sets of letters: the detector never fired.
    ("detectors.sensitive_change.contact_fields", "email", "contact_fields"),
    ("detectors.owner_session.habit_findings", "new_symbol", "habit_findings"),
    # Numbers in quotes passed the load's checks as text, then float() read them: a NaN weight
    # scored 1.0, a carry of -inf let the attack's orders through, a window was negative.
    ("detectors.holdings_liquidation.weight", "nan", "weight"),
    ("detectors.risky_session.carry", "-inf", "carry"),
    ("detectors.shared_ip.window_hours", "-24", "window_hours"),
    ("detectors.shared_indicator.weights.ip", "4.0", "weights"),
    ("detectors.sensitive_change.field_weights.email", "nan", "field_weights"),
    ("detectors.login_profile.unfamiliar.weight", "2", "unfamiliar"),
    # Each of these loaded, then failed on the first market bars (division by zero, empty median).
    ("detectors.market_factor.market_min_symbols", 0, "market_min_symbols"),
    ("detectors.pump_surveillance.max_gap_minutes", 0, "max_gap_minutes"),
    ("detectors.pump_surveillance.onset_price_z", 0, "onset_price_z"),
    ("detectors.pump_surveillance.onset_volume_z", 0, "onset_volume_z"),
    ("detectors.pump_surveillance.min_risky_buyers", 2.5, "min_risky_buyers"),
    # Typos loaded, leaving the setting meant at its old value: now each is an unknown key.
    ("detectors.campaign.min_acounts", 5, "min_acounts"),
    ("detectors.login_profile.attributes.contry", {"alpha": 1.0, "p_new_attack": 0.5}, "attributes.contry"),
    ("detectors.shared_indicator.weights.devcie", 5.0, "weights.devcie"),
    ("detectors.login_profile.local_utc_ofset_hours", 5.5, "local_utc_ofset_hours"),
    ("detectors.shared_ipp", {"window_hours": 24}, "shared_ipp"),
    ("bias.oder", 0.0, "oder"),
    ("containment.campaign_member_wieght", 1.0, "campaign_member_wieght"),
    ("decisions.oder", {"block": 0.1}, "oder"),
    # Thresholds out of order loaded: block is checked first, so no order was ever reviewed.
    ("decisions.order.block", 0.4, "`block` (0.4) must be above `review` (0.5)"),
    ("decisions.login.review", 0.03, "`review` (0.03) must be above `challenge` (0.05)"),
    # Names from a closed vocabulary (the contract's account-change fields, the reason codes): a
    # misspelt one loaded and matched nothing (contact_takeover never fired; email changes weighed 0).
    ("detectors.sensitive_change.contact_fields", ["emial", "phone"], "unknown name(s) ['emial']"),
    ("detectors.sensitive_change.field_weights.emial", 1.5, "unknown name(s) ['emial']"),
    ("detectors.login_profile.distrust_on_change", ["emial", "phone"], "unknown name(s) ['emial']"),
    ("detectors.owner_session.habit_findings", ["new_symbl"], "unknown name(s) ['new_symbl']"),
    ("detectors.sensitive_change.field_weights", ["email"], "`field_weights` must map names"),  # "list indices..."
    # Outside the range their formula means anything in: each loaded, and its finding never fired,
    # fired always, or turned evidence around.
    ("detectors.campaign.min_share", 1.5, "`min_share` must be a number in [0, 1]"),
    ("detectors.shared_ip.min_share", -0.5, "`min_share` must be a number in [0, 1]"),
    ("detectors.owner_session.share", 2.0, "`share` must be a number in [0, 1]"),
    ("detectors.risky_session.carry", -0.5, "`carry` must be a number in [0, 1]"),
    ("detectors.holdings_liquidation.min_fraction", 1.2, "`min_fraction` must be a number in [0, 1]"),
    ("detectors.pump_surveillance.min_risky_share", 2, "`min_risky_share` must be a number in [0, 1]"),
    ("detectors.login_profile.attributes.ip_range.discount", 1.0, "`discount` must be a number in [0, 1)"),
    ("detectors.hosting_network.p_hosting_attack", 5, "p_hosting_attack"),
    ("detectors.unusual_trading.p_new_symbol_attack", 0, "p_new_symbol_attack"),  # was "math domain error"
    ("detectors.login_profile.local_utc_offset_hours", 99, "`local_utc_offset_hours` must be a number in [-12, 14]"),
    ("detectors.takeover_wave.surge", -1, "`surge` must be a number in [1, inf)"),
    ("detectors.impossible_travel.max_kmh", 0, "max_kmh"),
    ("version", 99, "`version` must be 1"),
])
def test_a_bad_policy_value_stops_at_load_naming_it(tmp_path: Path, stream: Stream, key: str, value: object,
                                                    named: str) -> None:
    raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
    *path, last = key.split(".")
    node = raw
    for part in path:
        node = node[part]
    node[last] = value
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["replay", str(stream.write(tmp_path / "e.jsonl")), "--out",
                                       str(tmp_path / "o"), "--policy", str(policy)])
    assert result.exit_code == 2 and named in result.output, result.output


def test_an_older_copy_of_the_default_policy_is_told_every_key_it_lacks_at_once(tmp_path: Path) -> None:
    """A firm's copy of an older default lacks each key added since; the load named only the
    first one a detector read, one load per key."""
    def lacking(*keys: str) -> str:
        raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
        for key in keys:
            *path, last = key.split(".")
            node = raw["detectors"]
            for part in path:
                node = node[part]
            del node[last]
        policy = tmp_path / "p.yaml"
        policy.write_text(yaml.safe_dump(raw))
        with pytest.raises(kabuguard.policy.PolicyError) as raised:
            kabuguard.policy.load_policy(policy)
        return str(raised.value)

    told = lacking("pump_surveillance.spike_volume_multiple", "pump_surveillance.spike_price_z",
                   "pump_surveillance.spike_price_move")
    assert all(f"`{key}`" in told for key in ("spike_volume_multiple", "spike_price_z", "spike_price_move")), told
    told = lacking("login_profile.attributes.device.alpha", "login_profile.hour_alpha")
    assert "`attributes.device.alpha`" in told and "`hour_alpha`" in told, told


def test_a_policy_lacking_top_level_keys_is_told_them_all_and_where_to_look(tmp_path: Path) -> None:
    """A copy of a default from before `foreign_session_llr` stopped on a bare "missing", one key a load."""
    raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
    for key in ("version", "own_session_llr", "foreign_session_llr"):
        del raw[key]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(kabuguard.policy.PolicyError) as raised:
        kabuguard.policy.load_policy(path)
    assert "missing `version`, `own_session_llr`, `foreign_session_llr`" in str(raised.value)
    assert "docs/policy.md, \"Upgrading a policy file of your own\"" in str(raised.value)


def test_the_edges_of_each_checked_range_load(tmp_path: Path) -> None:
    """The checks refuse only what a formula cannot mean: each range's edges load, and so do a
    field weighed that is no contact and no contact fields (contact_takeover off, on purpose)."""
    raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
    detectors = raw["detectors"]
    detectors["campaign"]["min_share"] = 1
    detectors["shared_ip"]["min_share"] = 0
    detectors["login_profile"]["attributes"]["ip_range"]["discount"] = 0.0
    detectors["login_profile"]["local_utc_offset_hours"] = 14
    detectors["takeover_wave"]["surge"] = 1
    detectors["sensitive_change"].update(field_weights={"address": 0.5}, contact_fields=[])
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert kabuguard.policy.load_policy(path).detectors["campaign"]["min_share"] == 1


def test_no_volatility_floor_and_no_prior_stops_the_load(tmp_path: Path) -> None:
    """Both zero divided a bar's move by zero on the first bar: a crash mid-replay, per bar."""
    raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
    raw["detectors"]["pump_surveillance"].update(min_sigma_per_minute=0, prior_sigma_per_minute=0)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(kabuguard.policy.PolicyError, match="min_sigma_per_minute` or `prior_sigma_per_minute"):
        kabuguard.policy.load_policy(path)


def test_a_fractional_local_time_offset_is_kept_to_the_minute(tmp_path: Path) -> None:
    """5.5 (India) was cut to 5: a login's hour was judged half an hour off."""
    raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
    raw["detectors"]["login_profile"]["local_utc_offset_hours"] = 5.5
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    built = {type(d).__name__: d for stage in Pipeline(kabuguard.policy.load_policy(path)).stages
             for ds in stage.by_kind.values() for d in ds}
    # 03:40 UTC is 09:10 in India: the tenth hour of its day, not the ninth.
    assert built["LoginProfile"]._hour(3 * 3_600_000_000 + 40 * 60_000_000) == 9


def test_a_local_time_west_of_greenwich_loads(tmp_path: Path) -> None:
    """-5 (New York) was refused as a negative duration, for its name ends in `_hours`."""
    raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
    raw["detectors"]["login_profile"]["local_utc_offset_hours"] = -5
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    built = {type(d).__name__: d for stage in Pipeline(kabuguard.policy.load_policy(path)).stages
             for ds in stage.by_kind.values() for d in ds}
    assert built["LoginProfile"]._hour(3 * 3_600_000_000) == 22  # 03:00 UTC is 22:00 the day before


def test_whole_numbers_written_as_floats_and_zero_where_it_means_from_the_first_login_load(tmp_path: Path) -> None:
    raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
    detectors = raw["detectors"]
    detectors["campaign"]["min_accounts"] = 5.0
    detectors["login_profile"]["hour_min_logins"] = 0
    detectors["login_profile"]["unfamiliar"]["min_logins"] = 0
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    built = {type(d).__name__: d for stage in Pipeline(kabuguard.policy.load_policy(path)).stages
             for ds in stage.by_kind.values() for d in ds}
    assert built["Campaign"].min_accounts == 5 and isinstance(built["Campaign"].min_accounts, int)
    assert built["LoginProfile"].hour_min_logins == built["LoginProfile"].unfamiliar_min_logins == 0


def test_the_collector_is_off_while_deciding_and_deciding_makes_no_reference_cycles(three_firms: Path) -> None:
    """`collector_off` leaves a cycle dropped while deciding to the end of the replay: there must be none."""
    events = total_order(read_events([three_firms / "sim" / "events"], quiet=True)[0]).events
    pipeline = Pipeline()
    pipeline.warm_up()  # the compiled bar kernels' one-off load makes some, outside the loop
    assert gc.isenabled()
    with collector_off():
        assert not gc.isenabled()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage to be named
        try:
            kinds = {e.kind for e in events}
            for _ in decide(pipeline, events):
                pass
            gc.collect()
            found = [type(o).__name__ for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert gc.isenabled()
    assert {"login", "account_change", "order", "execution", "market_bar", "instrument"} <= kinds
    assert found == []


def test_a_folder_without_event_files_is_a_usage_error_and_a_broken_link_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "exports"
    empty.mkdir()
    (empty / "events.json").write_text("{}\n")  # not a contract suffix
    result = CliRunner().invoke(main, ["replay", str(empty), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "no event files" in result.output
    (empty / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    result = CliRunner().invoke(main, ["replay", str(empty), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    [rejected] = [json.loads(line) for line in (tmp_path / "run" / "rejected.jsonl").read_text().splitlines()]
    assert rejected["file"].endswith("gone.jsonl") and "unreadable" in rejected["reason"]
    assert not (tmp_path / "run" / "INCOMPLETE").exists()
    spark_spill = CliRunner().invoke(main, ["replay", str(empty), "--out", str(tmp_path / "s"), "--engine", "spark",
                                            "--spill-after", "10"])
    assert spark_spill.exit_code == 2 and "--spill-after is for --engine local" in spark_spill.output


def test_an_interrupted_replay_keeps_its_decisions_beside_its_alerts_and_says_it_is_incomplete(
        tmp_path: Path, stream: Stream, monkeypatch: pytest.MonkeyPatch) -> None:
    events = stream.write(tmp_path / "e.jsonl")
    process, calls = Pipeline.process, [0]

    def stop_midway(self: Pipeline, event: object) -> tuple:  # the real core, then Ctrl-C at event 200
        calls[0] += 1
        if calls[0] == 200:
            raise KeyboardInterrupt
        return process(self, event)

    monkeypatch.setattr(Pipeline, "process", stop_midway)
    with pytest.raises(KeyboardInterrupt):
        replay([events], tmp_path / "run", quiet=True)
    out = tmp_path / "run"
    assert (out / "INCOMPLETE").exists() and (out / "rejected.jsonl").exists()
    decided = {json.loads(line)["event_id"] for line in (out / "decisions.jsonl").read_text().splitlines()}
    alerted = {json.loads(line)["event_id"] for line in (out / "alerts.jsonl").read_text().splitlines()}
    assert decided and {a for a in alerted if a.startswith(("lo", "or"))} <= decided
    monkeypatch.undo()
    replay([events], out, quiet=True)
    assert not (out / "INCOMPLETE").exists()


def test_a_replay_interrupted_while_reading_leaves_no_earlier_runs_decisions(
        tmp_path: Path, stream: Stream, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder kept the previous run's decisions and alerts, for other input, beside the new
    run's INCOMPLETE marker and rejections: "the decisions made so far" were not this run's."""
    out = tmp_path / "run"
    replay([stream.write(tmp_path / "e.jsonl")], out, quiet=True)
    assert (out / "decisions.jsonl").stat().st_size > 0
    add, calls = TotalOrder.add, [0]

    def stop_reading(self: TotalOrder, event: object) -> None:  # the real sort, then Ctrl-C at event 50
        calls[0] += 1
        if calls[0] == 50:
            raise KeyboardInterrupt
        add(self, event)

    monkeypatch.setattr(TotalOrder, "add", stop_reading)
    with pytest.raises(KeyboardInterrupt):
        replay([stream.write(tmp_path / "other.jsonl")], out, quiet=True)
    assert (out / "INCOMPLETE").exists()
    assert (out / "decisions.jsonl").read_bytes() == (out / "alerts.jsonl").read_bytes() == b""


def test_a_replay_interrupted_while_reading_still_writes_the_lines_it_rejected(
        tmp_path: Path, stream: Stream, monkeypatch: pytest.MonkeyPatch) -> None:
    """rejected.jsonl was written from what the read returned, so Ctrl-C during the second file
    wrote it empty: the first file's bad line, already found, went unsaid."""
    first = stream.write(tmp_path / "a.jsonl")
    with first.open("a") as fh:
        fh.write("not json\n")
    second = stream.write(tmp_path / "b.jsonl")

    def ctrl_c_at_second(file: Path, *args: object, **kwargs: object) -> object:  # Ctrl-C as it opens b.jsonl
        if Path(file) == second:
            raise KeyboardInterrupt
        return open(file, *args, **kwargs)

    monkeypatch.setattr("kabuguard.events.reader.open", ctrl_c_at_second, raising=False)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        replay([first, second], out, quiet=True)
    assert (out / "INCOMPLETE").exists()
    assert [(r["file"], r["line"]) for r in _jsonl(out / "rejected.jsonl")] == [(str(first), len(stream.events) + 1)]


def test_an_input_that_is_an_output_of_the_replay_is_a_usage_error(tmp_path: Path, stream: Stream) -> None:
    """`replay feed/ --out feed/` emptied feed/alerts.jsonl before reading it and decided 0 events."""
    feed = tmp_path / "feed"
    feed.mkdir()
    stream.write(feed / "alerts.jsonl")  # an export that happens to have the name
    result = CliRunner().invoke(main, ["replay", str(feed), "--out", str(feed)])
    assert result.exit_code == 2 and "is an output of a replay into" in result.output, result.output
    assert (feed / "alerts.jsonl").stat().st_size > 0 and not (feed / "INCOMPLETE").exists()
    assert CliRunner().invoke(main, ["replay", str(feed), "--out", str(tmp_path / "run")]).exit_code == 0
