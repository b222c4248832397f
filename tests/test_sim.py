"""The simulator writes valid, labelled, deterministic runs whose market answers the pumps."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import ipaddress
import json
from pathlib import Path

import msgspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from kabuguard.cli import main
from kabuguard.events.model import DECIDABLE, Event
from kabuguard.sim import Config, simulate
from kabuguard.sim.instruments import load_tse

SMALL = Config(accounts=1500, days=6, seed=3, symbols=80)
STYLES = {"pump_2025", "stealth_proxy", "change_first", "credential_stuffing"}
GROUPS = {"travel", "new_phone", "dormant_return", "smallcap_enthusiast", "shared_ip", "news_burst"}


def _digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*")) if p.is_file()}


def _events(out: Path, bars: bool = True) -> list[dict]:
    rows = []
    for path in sorted((out / "events").glob("*.jsonl.gz")):
        with gzip.open(path) as f:
            rows += [json.loads(line) for line in f]
    return rows + (pq.read_table(out / "events" / "market_bars.parquet").to_pylist() if bars else [])


def _labels(out: Path) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    return [x for x in lines if "kind" not in x], [x for x in lines if x.get("kind") == "pump_episode"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    simulate(SMALL, out)
    return out


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("default")
    result = CliRunner().invoke(main, ["simulate", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_same_seed_same_bytes_other_seed_differs(small_run: Path, tmp_path: Path) -> None:
    simulate(SMALL, tmp_path / "again")
    simulate(Config(**{**SMALL.__dict__, "seed": SMALL.seed + 1}), tmp_path / "other")
    assert _digest(tmp_path / "again") == _digest(small_run)
    other = _digest(tmp_path / "other")
    assert other.keys() == _digest(small_run).keys()
    assert other["labels.jsonl"] != _digest(small_run)["labels.jsonl"]


def test_every_event_fits_the_contract(small_run: Path) -> None:
    events = _events(small_run)
    assert {e["type"] for e in events} == {"instrument", "account", "market_bar", "login", "account_change", "order", "execution"}
    for e in events:
        assert "ts_us" not in e and "extra" not in e
        msgspec.convert(e, Event)
        assert dt.datetime.fromisoformat(e["ts"]).utcoffset() == dt.timedelta(hours=9)
        assert e["ts"][-6:] == "+09:00" and len(e["ts"]) == len("2025-03-21T09:14:03.120+09:00")
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    orders = {e["order_id"] for e in events if e["type"] == "order"}
    assert {e["order_id"] for e in events if e["type"] == "execution"} <= orders


def test_labels_cover_every_decided_event(small_run: Path) -> None:
    labels, episodes = _labels(small_run)
    decided = {e["event_id"]: e for e in _events(small_run, bars=False) if e["type"] in DECIDABLE}
    assert {x["event_id"] for x in labels} == decided.keys()
    for x in labels:
        e = decided[x["event_id"]]
        assert (x["account_id"], x["type"], x["ts"]) == (e["account_id"], e["type"], e["ts"])
        assert x["fraud"] == (x["campaign_id"] is not None) == (x["attack_style"] is not None) == (x["role"] is not None)
        assert not (x["fraud"] and x["group"])
    assert any(ep["news"] for ep in episodes) and any(ep["campaign_id"] for ep in episodes)


def test_default_run_has_every_style_and_group(default_run: Path) -> None:
    labels, _ = _labels(default_run)
    assert {x["attack_style"] for x in labels if x["fraud"]} == STYLES
    assert {x["group"] for x in labels if x["group"]} == GROUPS
    assert {x["role"] for x in labels if x["fraud"]} == {"victim", "attacker"}
    victims = {x["account_id"] for x in labels if x["role"] == "victim" and x["type"] == "order"}
    assert 20 <= len(victims) <= 500  # enough hijacked accounts that trade to evaluate on


def test_thin_small_caps_are_thin() -> None:
    tse = load_tse()
    small = (tse.market_cap < 5e9) & np.array([m != "TSE Prime" for m in tse.markets])
    assert 1_000 <= np.median(tse.adv[small]) <= 20_000
    assert np.median(tse.adv[tse.market_cap > 1e12]) > 1_000_000
    assert tse.thin.sum() > 500


def test_bars_answer_the_pump(default_run: Path) -> None:
    """On a campaign's pump day its symbol trades a multiple of its usual volume."""
    bars = pq.read_table(default_run / "events" / "market_bars.parquet", columns=["symbol", "ts", "volume"]).to_pylist()
    adv = {e["symbol"]: e["adv_shares"] for e in _events_of(default_run, "instrument")}
    volume: dict[tuple[str, str], int] = {}
    for b in bars:
        key = (b["symbol"], b["ts"][:10])
        volume[key] = volume.get(key, 0) + b["volume"]
    _, episodes = _labels(default_run)
    pumps = [ep for ep in episodes if ep["campaign_id"] and ep["start"][:10] == ep["end"][:10]]
    multiples = [volume.get((ep["symbol"], ep["start"][:10]), 0) / adv[ep["symbol"]] for ep in pumps]
    assert pumps and np.median(multiples) > 3


def test_ordinary_days_trade_about_their_adv_and_thin_names_skip_minutes(small_run: Path) -> None:
    adv = {e["symbol"]: e["adv_shares"] for e in _events_of(small_run, "instrument")}
    bars = pq.read_table(small_run / "events" / "market_bars.parquet", columns=["symbol", "ts", "volume"]).to_pylist()
    volume: dict[tuple[str, str], int] = {}
    minutes: dict[tuple[str, str], int] = {}
    for b in bars:
        key = (b["symbol"], b["ts"][:10])
        volume[key] = volume.get(key, 0) + b["volume"]
        minutes[key] = minutes.get(key, 0) + 1
    assert 0.6 < np.median([v / adv[s] for (s, _), v in volume.items()]) < 1.6
    thin = [m for (s, _), m in minutes.items() if adv[s] < 3000]
    assert thin and np.median(thin) < 150  # of 330 session minutes


def _events_of(out: Path, event_type: str) -> list[dict]:
    return [e for e in _events(out, bars=False) if e["type"] == event_type]


def test_parquet_is_readable(small_run: Path) -> None:
    table = pq.read_table(small_run / "events" / "market_bars.parquet")
    assert table.num_rows > 1000
    assert set(table.column_names) >= {"event_id", "type", "ts", "symbol", "open", "high", "low", "close", "volume"}
    rows = table.slice(0, 500).to_pylist()
    assert all(r["low"] <= min(r["open"], r["close"]) <= max(r["open"], r["close"]) <= r["high"] for r in rows)


def test_multi_firm_tags_firms_and_campaigns_reach_them_in_turn(tmp_path: Path) -> None:
    simulate(Config(accounts=1500, days=8, seed=5, symbols=40, firms=3), tmp_path)
    activity = [e for e in _events(tmp_path, bars=False) if e["type"] in DECIDABLE | {"account", "execution"}]
    assert {e["firm"] for e in activity} == {"firm-a", "firm-b", "firm-c"}
    labels, _ = _labels(tmp_path)
    first: dict[tuple[str, str], dt.datetime] = {}
    for x in labels:
        if x["fraud"] and x["role"] == "victim":
            key, ts = (x["campaign_id"], x["firm"]), dt.datetime.fromisoformat(x["ts"])
            first[key] = min(first.get(key, ts), ts)
    pairs = [(first[c, "firm-a"], first[c, "firm-b"]) for c, f in first if f == "firm-b" and (c, "firm-a") in first]
    assert pairs and all(a < b for a, b in pairs)


def test_campaign_rate_follows_the_fsa_months() -> None:
    from kabuguard.sim.calibration import daily_hijack_rate

    april = daily_hijack_rate(dt.date(2025, 4, 10)) * 5000 * 14
    assert 50 <= april <= 200  # a default run: dozens to hundreds of hijacked accounts
    assert daily_hijack_rate(dt.date(2025, 1, 10)) < daily_hijack_rate(dt.date(2025, 3, 10)) < daily_hijack_rate(dt.date(2025, 4, 10))


def test_network_blocks_are_what_they_claim() -> None:
    """Every block's sampled addresses geolocate to the declared country and AS (geoip2fast)."""
    from geoip2fast import GeoIP2Fast

    from kabuguard.sim.networks import Networks

    geo = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn.dat.gz")
    rng = np.random.default_rng(0)
    for category, nets in Networks().pools.items():
        for net in nets:
            for _ in range(20):
                ip = net.address(rng)
                found = geo.lookup(ip)
                assert net.asn.lower() in (found.asn_name or "").lower(), (category, net.isp, ip, found.asn_name)
                assert net.country in (None, found.country_code), (category, net.isp, ip, found.country_code)
                assert not ipaddress.ip_address(ip).is_private


def test_cli_refuses_an_existing_run(small_run: Path) -> None:
    result = CliRunner().invoke(main, ["simulate", "--out", str(small_run)])
    assert result.exit_code == 2 and "already holds a run" in result.output


def test_history_days_that_leave_no_day_for_campaigns_are_a_usage_error(tmp_path: Path) -> None:
    """`--days 3 --history-days 10` planned campaigns from the first day anyway, silently."""
    result = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path / "s"), "--days", "3", "--history-days", "10"])
    assert result.exit_code == 2 and "--history-days 10 leaves no trading day" in result.output
    assert not (tmp_path / "s").exists()


def test_an_interrupted_simulation_says_so_and_exits_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It exited 1 (which means rejected input) and left days that replay as a shorter, complete run."""
    from kabuguard.sim.writer import RunWriter

    activity, days = RunWriter.activity, [0]

    def stop_on_day_two(self: RunWriter, day: dt.date, events: list) -> None:  # the real writer, then Ctrl-C
        days[0] += 1
        if days[0] == 2:
            raise KeyboardInterrupt
        activity(self, day, events)

    monkeypatch.setattr(RunWriter, "activity", stop_on_day_two)
    out = tmp_path / "s"
    result = CliRunner().invoke(main, ["simulate", "--out", str(out), "--accounts", "100", "--days", "4",
                                       "--symbols", "20", "--quiet"])
    assert result.exit_code == 130 and "INCOMPLETE" in result.output
    assert (out / "INCOMPLETE").exists() and not (out / "simulation.json").exists()
    monkeypatch.undo()
    again = CliRunner().invoke(main, ["simulate", "--out", str(out)])
    assert again.exit_code == 2 and "already holds a run" in again.output


def test_an_interrupted_demo_exits_130_and_the_next_replaces_its_folder(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """It exited 1, which means rejected input."""
    from kabuguard.sim.writer import RunWriter

    def interrupted(self: RunWriter, day: dt.date, events: list) -> None:  # Ctrl-C while simulating
        raise KeyboardInterrupt

    monkeypatch.setattr(RunWriter, "activity", interrupted)
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--accounts", "100", "--days", "2", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130 and "the next demo replaces it" in result.output
    monkeypatch.undo()
    assert CliRunner().invoke(main, args).exit_code == 0


def test_no_one_sells_shares_they_do_not_hold(small_run: Path) -> None:
    events = _events(small_run, bars=False)
    held = {(a["account_id"], h["symbol"]): h["qty"] for a in events if a["type"] == "account" for h in a["holdings"]}
    for e in sorted((e for e in events if e["type"] == "execution"), key=lambda e: dt.datetime.fromisoformat(e["ts"])):
        key = (e["account_id"], e["symbol"])
        held[key] = held.get(key, 0) + (e["qty"] if e["side"] == "buy" else -e["qty"])
        assert held[key] >= 0, e


def test_a_session_acts_only_after_its_login_succeeded(default_run: Path) -> None:
    """Orders and account changes come after the successful login of their session: a session
    whose first attempt failed (a mistyped password) opens at the retry."""
    events = _events(default_run, bars=False)
    opened = {}
    for e in events:
        if e["type"] == "login" and e["success"]:
            at = dt.datetime.fromisoformat(e["ts"])
            opened[e["session_id"]] = min(at, opened.get(e["session_id"], at))
    acts = [e for e in events if e["type"] in ("order", "account_change")]
    early = [e["event_id"] for e in acts if dt.datetime.fromisoformat(e["ts"]) < opened[e["session_id"]]]
    assert acts and not early


def test_attackers_leave_no_simulator_tells(default_run: Path) -> None:
    """Every agent an attacker sends, customers send too; ids look alike whoever made them."""
    labels = {x["event_id"]: x for x in _labels(default_run)[0]}
    logins = [e for e in _events(default_run, bars=False) if e["type"] == "login"]
    benign_agents = {e["user_agent"] for e in logins if not labels[e["event_id"]]["fraud"]}
    fraud = [e for e in logins if labels[e["event_id"]]["fraud"]]
    assert {e["user_agent"] for e in fraud} <= benign_agents
    for e in fraud:
        assert e["session_id"].startswith("s-") and len(e["session_id"]) == 18
        assert e["device_id"] is None or (e["device_id"].startswith("dv-") and len(e["device_id"]) == 15)
    assert any(e["device_id"] is None for e in logins if not labels[e["event_id"]]["fraud"])


def test_cli_defaults_are_the_config_defaults() -> None:
    from kabuguard.cli.simulate import _DEFAULTS

    config = Config()
    assert _DEFAULTS == {name: str(getattr(config, name)) if name == "start" else getattr(config, name) for name in _DEFAULTS}



def test_a_pump_episode_begins_with_its_hijacked_accounts_first_buy(tmp_path: Path) -> None:
    """An episode is buying that moves the market: it starts on a hijacked account's buy of the
    symbol, and a wave whose victims bought nothing (the attackers' sales alone) is none."""
    simulate(Config(accounts=1500, days=10, seed=1, symbols=80), tmp_path)
    labels, episodes = _labels(tmp_path)
    role_of = {x["event_id"]: (x["campaign_id"], x["role"]) for x in labels if x["fraud"]}
    orders = [(*role_of[e["event_id"]], e) for e in _events_of(tmp_path, "order") if e["event_id"] in role_of]
    buys = {(cid, e["symbol"], e["ts"]) for cid, role, e in orders if role == "victim" and e["side"] == "buy"}
    dumped_only = {cid for cid, role, e in orders if role == "attacker" and e["side"] == "sell"} - {b[0] for b in buys}
    pumps = [ep for ep in episodes if ep["campaign_id"]]
    assert dumped_only, "the run should hold a campaign whose victims bought nothing"
    assert pumps and not {ep["campaign_id"] for ep in pumps} & dumped_only
    assert all((ep["campaign_id"], ep["symbol"], ep["start"]) in buys for ep in pumps), \
        [ep for ep in pumps if (ep["campaign_id"], ep["symbol"], ep["start"]) not in buys]


# Two days of 300 accounts on the full 300 symbols: on 17d0ab4 a name above ¥3,000 went
# limit-up there (bars beyond its limit, off the tick grid, close above high), and an account was
# both a campaign's attacker and a credential-stuffing target.
TINY = Config(accounts=300, days=2, seed=0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    simulate(TINY, out)
    return out


def test_every_bar_is_a_possible_print(tiny_run: Path) -> None:
    """Prices on the tick grid, within the day's limit from the previous close, low <= open,
    close <= high. A limit-up name above ¥3,000 printed close 3165 over high 3163 (its limit,
    which is no tick)."""
    from kabuguard.sim.market import daily_limit, round_tick

    prev = {e["symbol"]: float(round_tick(np.array(e["last_price"]))) for e in _events_of(tiny_run, "instrument")}
    bars = sorted(pq.read_table(tiny_run / "events" / "market_bars.parquet").to_pylist(), key=lambda b: b["ts"])
    day, closes, nearest = "", {}, 0.0
    for b in bars:
        if b["ts"][:10] != day:
            day, prev = b["ts"][:10], prev | closes
        close, limit = prev[b["symbol"]], daily_limit(prev[b["symbol"]])
        prices = np.array([b["open"], b["high"], b["low"], b["close"]])
        assert b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"], b
        assert (round_tick(prices) == prices).all() and close - limit <= b["low"] and b["high"] <= close + limit, b
        closes[b["symbol"]] = b["close"]
        nearest = max(nearest, (b["high"] - close) / limit)
    assert nearest > 0.99  # some name went limit-up


def test_every_execution_falls_in_the_minute_of_the_bar_that_priced_it(small_run: Path) -> None:
    """An order sent in a minute's last 1.5 s was stamped in the next minute, priced by the
    earlier bar: the bar of its timestamp did not print its price or cover its volume."""
    bars = {(b["symbol"], b["ts"]): b for b in pq.read_table(small_run / "events" / "market_bars.parquet").to_pylist()}
    traded: dict[tuple[str, str], int] = {}
    for e in _events_of(small_run, "execution"):
        at = dt.datetime.fromisoformat(e["ts"])
        # The bar's ts is the end of its minute; the closing auction prints on it, at 15:30.
        end = at if at.time() == dt.time(15, 30) else at.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        key = (e["symbol"], end.isoformat(timespec="milliseconds"))
        assert key in bars and bars[key]["close"] == e["price"], e
        traded[key] = traded.get(key, 0) + e["qty"]
    assert traded and all(qty <= bars[key]["volume"] for key, qty in traded.items())


def test_an_account_plays_one_role_in_the_whole_run(tiny_run: Path) -> None:
    """Credential-stuffing targets were never marked used, so the campaign's attackers could be
    picked among them: one account labelled both attacker and victim."""
    roles: dict[str, set[str]] = {}
    for x in _labels(tiny_run)[0]:
        if x["fraud"]:
            roles.setdefault(x["account_id"], set()).add(x["role"])
    assert {"attacker", "victim"} <= set().union(*roles.values())
    assert all(len(r) == 1 for r in roles.values()), {a: r for a, r in roles.items() if len(r) > 1}


def test_history_days_that_leave_no_trading_day_are_a_usage_error(tmp_path: Path) -> None:
    """A Monday start, 7 days, 5 of history: only the weekend is left, and campaigns were placed
    in the history instead, silently."""
    out = tmp_path / "s"
    result = CliRunner().invoke(main, ["simulate", "--out", str(out), "--accounts", "100", "--symbols", "20",
                                       "--days", "7", "--history-days", "5", "--seed", "5", "--quiet"])
    assert result.exit_code == 2 and "--history-days 5" in result.output and "no trading day" in result.output
    assert not out.exists()


def test_no_account_spends_cash_it_does_not_have(small_run: Path) -> None:
    """Buys were sized at the quote before their own impact and filled at the bar close with no
    check of buying power: pump victims ended hundreds of thousands of yen short."""
    events = _events(small_run, bars=False)
    cash = {a["account_id"]: a["cash"] for a in events if a["type"] == "account"}
    lowest = dict(cash)
    for e in (e for e in events if e["type"] == "execution"):  # files in day order, each in time order
        cash[e["account_id"]] -= (1 if e["side"] == "buy" else -1) * e["qty"] * e["price"]
        lowest[e["account_id"]] = min(lowest[e["account_id"]], cash[e["account_id"]])
    assert min(lowest.values()) >= -0.01, sorted(lowest.values())[:3]  # opening cash is written rounded to the sen
    bought = {x["account_id"] for x in _labels(small_run)[0] if x["role"] == "victim" and x["type"] == "order"}
    assert any(e["account_id"] in bought and e["side"] == "buy" for e in events if e["type"] == "execution")
