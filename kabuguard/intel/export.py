"""`kabuguard intel export`: what a firm's decisions established, as a STIX 2.1 bundle to share.

From a replay's (or the service's) decisions and alerts, and the events they were made on:

- indicators for the attackers' addresses, networks (AS names of hosting providers), device
  fingerprints of their tooling, user agents, the phishing domains and URLs their victims came
  from (or that the phishing monitor reported), each with a sighting at this firm (count, first
  and last seen);
- campaigns from the firm's campaign alerts, which the address indicators `indicate`;
- the targeted symbols and a monthly report in the FSA's terms (custom objects, `stix.py`).

What never leaves: account ids and device ids appear only as keyed pseudonyms (`pseudonym.py`);
a customer's address, device or user agent is never an indicator. An address, device or agent
is shared only when it served flagged events on at least `min_accounts` accounts (or, for an
address, belongs to a hosting network or a campaign alert) and no account ever used it in a
recognised session (a login allowed without a single reason). Every object of the firm carries
the TLP marking chosen (Kabuguard's type definitions, public, carry none).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from stix2 import v21

from kabuguard.detectors.shared_indicator import parent_domains
from kabuguard.events import Event, Rejection
from kabuguard.events.model import event_key, firm_account_key
from kabuguard.events.order import SPILL_AFTER, TotalOrder
from kabuguard.events.reader import event_files
from kabuguard.intel.pseudonym import Pseudonymiser
from kabuguard.intel.stix import JST, TLP, MonthlyReport, TargetedSymbol, definitions, is_address, month_span, pattern
from kabuguard.netintel import netintel
from kabuguard.replay import read_into

_FLAGGED = frozenset({"review", "block"})
_ACTIVITY = frozenset({"login", "account_change", "order"})
# `created` of what is about no time (the firm's identity) or outlives a run: the same in every export.
_TIMELESS = "1970-01-01T00:00:00.000Z"
# An account in the findings: (its firm, "" in a one-firm run; its id), so that two firms' accounts
# of one id stay two in a pooled run. Only the id is pseudonymised: the key is the firm's own.
Account = tuple[str, str]
_PHISH_WATCH: Account = ("", "")  # the phishing monitor's findings: no account has an empty id


class RunError(ValueError):
    """The run folder lacks what the export needs; the message names the file."""


@dataclass
class Sighting:
    """One indicator value at this firm: the accounts and times of the flagged events that carried it."""

    accounts: dict[Account, str] = field(default_factory=dict)  # account -> its first flagged event's ts
    count: int = 0
    first: str = ""
    last: str = ""

    def add(self, account: Account, ts: str) -> None:
        self.accounts[account] = min(self.accounts.get(account, ts), ts)
        self.count += 1
        self.first = min(self.first, ts) if self.first else ts
        self.last = max(self.last, ts)

    def known_since(self, accounts: int) -> str:
        """When the firm had seen it on `accounts` accounts: the earliest it could have shared it."""
        times = sorted(self.accounts.values())
        return times[min(accounts, len(times)) - 1]


@dataclass
class Findings:
    """What the run established at one firm, before it becomes STIX."""

    values: dict[tuple[str, str], Sighting] = field(default_factory=lambda: defaultdict(Sighting))
    habits: set[tuple[str, str]] = field(default_factory=set)  # values seen in recognised sessions
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    symbols: dict[str, dict[str, Any]] = field(default_factory=dict)
    months: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_ts: str = ""  # the firm's first and last decisions: the window the run covers
    last_ts: str = ""
    not_addresses: dict[str, int] = field(default_factory=dict)  # flagged events per `ip` that is no address
    rejected: list[Rejection] = field(default_factory=list)  # event lines that could not be read


@dataclass
class Exported:
    """The bundle, and what the export left out of it, for the command to say."""

    bundle: dict[str, Any]
    not_addresses: dict[str, int]  # `ip` text that is not an IP address -> flagged events carrying it
    rejected: list[Rejection]  # event lines that could not be read: what they held is missing


def export_bundle(run_dir: str | Path, events: Iterable[str | Path], firm: str, tlp: str,
                  pseudonymise: Pseudonymiser, phish: str | Path | None = None, min_accounts: int = 2,
                  quiet: bool = False, modified: str | None = None) -> Exported:
    """The STIX bundle (as a dict) of `firm`'s findings in `run_dir`, `firm` named as its identity.

    Always a firm's own: a bundle of every firm in a run, or one named by no firm, was counted
    as one firm by `intel stats` however many firms' bundles it read. `modified` (RFC 3339 with
    offset) is the version every object of the firm gets; by default the export's own time, so
    that a corrected export supersedes what it corrects wherever it is posted."""
    found = gather(Path(run_dir), list(events), firm, quiet)
    if phish is not None:
        _phishing(Path(phish), found)
    version = _version(modified, found)
    return Exported(build(found, firm, tlp, pseudonymise, min_accounts, version), found.not_addresses, found.rejected)


def _version(modified: str | None, found: Findings) -> str:
    """The export's `modified`: now, or the time given, which must not precede the decisions it reports."""
    if modified is None:
        return _stix_ts(datetime.now(timezone.utc).isoformat())
    try:
        moment = datetime.fromisoformat(modified)
    except ValueError:
        raise RunError(f"--modified {modified!r}: not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise RunError(f"--modified {modified!r}: give its offset (e.g. +09:00 or Z)")
    version = _stix_ts(modified)
    if version < found.last_ts:
        raise RunError(f"--modified {modified!r}: before the run's last decision ({found.last_ts}); "
                       "an export's version is made after what it reports")
    return version


def gather(run_dir: Path, events: list[str | Path], firm: str, quiet: bool) -> Findings:
    decisions = _jsonl(run_dir / "decisions.jsonl")
    alerts = _jsonl(run_dir / "alerts.jsonl")
    event_files(events)
    named = {d["firm"] for d in decisions if d.get("firm")}
    if named and firm not in named:  # a typo would export nothing, silently
        raise RunError(f"--firm {firm!r}: the run's decisions are of {', '.join(sorted(named))}")
    # A one-firm run's events carry no `firm`: there `firm` only names the bundle's firm.
    mine = (lambda line: line.get("firm") == firm) if named else (lambda line: True)
    # By the event's id at its firm: a pooled run's firms number their events alike.
    verdicts = {firm_account_key(d.get("firm"), d["event_id"]): d for d in decisions if mine(d)}
    found = Findings()
    times = sorted(_stix_ts(d["ts"]) for d in verdicts.values())
    found.first_ts, found.last_ts = (times[0], times[-1]) if times else ("", "")
    for alert in alerts:
        if not mine(alert):
            continue
        if alert["type"] == "campaign_alert":
            when = _stix_ts(alert["ts"])
            campaign = found.campaigns.setdefault(alert["campaign_id"], {
                "ips": set(), "symbols": set(), "first": when, "last": when, "style": _style(alert)})
            campaign["ips"].update(alert.get("ips") or ())
            campaign["symbols"].update(alert.get("symbols") or ())
            campaign["last"] = max(campaign["last"], when)
    net = netintel()
    with TotalOrder(SPILL_AFTER) as order:

        def add(event: Event) -> None:
            if event_key(event) in verdicts:  # every copy of an id or none: the order still picks the first
                order.add(event)

        read_into(events, add, found.rejected, quiet)
        # A resent event (the same event_id again at its firm) is one event, the first in the total order,
        # as the replay that made the verdicts took it.
        for event in order:
            if event.kind in _ACTIVITY and (not named or event.firm == firm):
                _note(found, event, verdicts[event_key(event)], net)
    return found


def _note(found: Findings, event: Any, verdict: dict[str, Any], net: Any) -> None:
    ip = event.ip if event.ip and is_address(event.ip) else None
    identities = [("ip", ip), ("device", event.device_id)]
    if event.kind == "login":
        identities.append(("user_agent", event.user_agent))
        if event.referrer:
            identities.append(("url", event.referrer))
            identities.extend(("domain", d) for d in parent_domains(event.referrer)[:1])
    identities = [(k, v) for k, v in identities if v]
    account = (event.firm or "", event.account_id)
    if verdict["decision"] not in _FLAGGED:
        if event.kind == "login" and verdict["decision"] == "allow" and not verdict["reasons"]:
            found.habits.update(identities)
        return
    if event.ip and ip is None:
        found.not_addresses[event.ip] = found.not_addresses.get(event.ip, 0) + 1
    network = net.lookup(ip) if ip else None
    if network is not None and network.kind == "hosting" and network.asn:
        identities.append(("asn", network.asn))
    when = _stix_ts(event.ts)  # UTC: times from different offsets compare as instants
    for identity in identities:
        found.values[identity].add(account, when)
    month = datetime.fromisoformat(event.ts).astimezone(JST).strftime("%Y-%m")
    report = found.months.setdefault(month, _month())
    if event.kind != "login" or event.success:  # accessed: a failed login's target was not
        report["accounts"].add(account)
    if event.kind == "login" and event.success:  # the FSA counts accesses, not attempts
        report["access"].add(event.session_id or event.event_id)
    elif event.kind == "order":
        value = verdict.get("notional_jpy") or 0.0
        report["traders"].add(account)  # the FSA counts accounts with unauthorised trades
        report[event.side] += value
        symbol = found.symbols.setdefault(event.symbol, {"accounts": set(), "orders": 0, "buy": 0.0, "sell": 0.0,
                                                         "first": when, "last": when})
        symbol["accounts"].add(account)
        symbol["orders"] += event.side == "buy"
        symbol[event.side] += value
        symbol["first"], symbol["last"] = min(symbol["first"], when), max(symbol["last"], when)


def _style(alert: dict[str, Any]) -> str:
    """What kind of campaign an alert reports, from its reasons (`credential stuffing`, `campaign buy`)."""
    return " ".join(reason.replace("_", " ") for reason in alert.get("reasons") or ()) or "unnamed"


def _phishing(path: Path, found: Findings) -> None:
    """Alerts of `kabuguard phish watch` (JSON lines with `domain`, `url`, `first_seen`)."""
    for n, line in enumerate(_jsonl(path), start=1):
        try:
            seen = _stix_ts(line["first_seen"])
            found.values[("domain", line["domain"].lower())].add(_PHISH_WATCH, seen)
            found.values[("url", line["url"])].add(_PHISH_WATCH, seen)
        except (KeyError, AttributeError, TypeError, ValueError):
            raise RunError(f"{path}:{n}: expected a phishing alert with `domain`, `url` and `first_seen`") from None


def _shareable_since(kind: str, value: str, sighting: Sighting, found: Findings, campaign_ips: dict[str, str],
                     min_accounts: int) -> str | None:
    """When the value became shareable (`valid_from`), or None when it must not leave.

    Attackers' infrastructure only: never what a customer used in a recognised session.
    """
    if (kind, value) in found.habits:
        return None
    if _PHISH_WATCH in sighting.accounts:  # the phishing monitor's own finding
        return sighting.first
    if kind == "ip" and value in campaign_ips:
        return min(sighting.known_since(min_accounts), max(sighting.first, campaign_ips[value]))
    if kind == "ip" and netintel().lookup(value).kind == "hosting":
        return sighting.first
    return sighting.known_since(min_accounts) if len(sighting.accounts) >= min_accounts else None


def build(found: Findings, firm: str, tlp: str, pseudonymise: Pseudonymiser, min_accounts: int,
          modified: str) -> dict[str, Any]:
    marking = TLP[tlp]
    marks = [marking.id]
    object_id = pseudonymise.object_id  # under the firm's key: no other firm can take or probe its ids

    def dated(created: str = _TIMELESS) -> dict[str, str]:
        """`created` that no export can change, as STIX 2.1 (3.6) asks of the versions of one object:
        what outlives a run (an indicator, a campaign: one id for a value however many runs saw it)
        takes the timeless one, since no run knows when another first saw it; `modified` is the
        export's, so that whatever may have changed since supersedes what was shared before."""
        return {"created": created, "modified": modified}

    identity = v21.Identity(id=object_id("identity", firm), name=firm, identity_class="organization",
                            sectors=["financial-services"], object_marking_refs=marks, **dated())
    common = {"created_by_ref": identity.id, "object_marking_refs": marks}
    objects: list[Any] = [marking, identity, *definitions()]

    campaign_ids = {}
    campaign_ips: dict[str, str] = {}  # address -> its first campaign alert
    for name, c in sorted(found.campaigns.items()):
        # Named by its style and first alert, never by its id: detectors make campaign ids of the
        # event that opened them, and a brokerage's event ids often embed account numbers.
        campaign = v21.Campaign(id=object_id("campaign", firm, name),
                                name=f"{firm} {c['style']} campaign first seen {c['first']}",
                                description=f"Campaign alert at {firm}; symbols: {', '.join(sorted(c['symbols'])) or 'none'}",
                                first_seen=c["first"], last_seen=c["last"], **common, **dated())
        campaign_ids[name] = campaign.id
        for ip in c["ips"]:
            campaign_ips[ip] = min(campaign_ips.get(ip, c["first"]), c["first"])
        objects.append(campaign)

    for (kind, value), sighting in sorted(found.values.items()):
        since = _shareable_since(kind, value, sighting, found, campaign_ips, min_accounts)
        if since is None:
            continue
        indicator = v21.Indicator(
            id=object_id("indicator", firm, kind, value), name=f"{kind.replace('_', ' ')} seen in account takeovers",
            description=f"Served {sighting.count} flagged events on {len(sighting.accounts.keys() - {_PHISH_WATCH})} accounts at {firm}.",
            indicator_types=["malicious-activity"], pattern=pattern(kind, value), pattern_type="stix",
            valid_from=since, **common, **dated())
        objects.append(indicator)
        objects.append(v21.Sighting(
            id=object_id("sighting", firm, kind, value), sighting_of_ref=indicator.id, count=sighting.count,
            first_seen=sighting.first, last_seen=sighting.last,
            where_sighted_refs=[identity.id], **common, **dated()))
        for name, c in sorted(found.campaigns.items()):
            if kind == "ip" and value in c["ips"]:
                objects.append(v21.Relationship(
                    id=object_id("relationship", firm, kind, value, name), relationship_type="indicates",
                    source_ref=indicator.id, target_ref=campaign_ids[name], **common, **dated()))

    # Figures cover the run's window, and say so: each export's are its own, keyed by where its
    # window starts, so that a regulator sums a firm's separate windows (`intel stats`) and an
    # export of the same window again (a correction) supersedes the one before.
    for symbol, s in sorted(found.symbols.items()):
        if not s["orders"]:  # sold only: a victim's holdings, not a target
            continue
        objects.append(TargetedSymbol(
            id=object_id("x-kabuguard-targeted-symbol", firm, symbol, found.first_ts),
            name=f"{symbol} bought by hijacked accounts", symbol=symbol, first_seen=s["first"], last_seen=s["last"],
            period_start=found.first_ts, period_end=found.last_ts,
            campaign_refs=[campaign_ids[n] for n, c in sorted(found.campaigns.items()) if symbol in c["symbols"]] or None,
            accounts=_pseudonyms(pseudonymise, s["accounts"]), buy_orders=s["orders"],
            buy_notional_jpy=round(s["buy"], 2), sell_notional_jpy=round(s["sell"], 2), **common,
            **dated(found.first_ts)))
    for month, start, end in _months(found.first_ts, found.last_ts):  # a month with nothing flagged says so
        m = found.months.get(month) or _month()
        objects.append(MonthlyReport(
            id=object_id("x-kabuguard-monthly-report", firm, month, start), name=f"{firm} {month}", month=month,
            period_start=start, period_end=end,
            unauthorised_access_count=len(m["access"]), unauthorised_trade_count=len(m["traders"]),
            sell_amount_jpy=round(m["sell"], 2), buy_amount_jpy=round(m["buy"], 2),
            accounts=_pseudonyms(pseudonymise, m["accounts"]) or None,
            trading_accounts=_pseudonyms(pseudonymise, m["traders"]) or None, **common, **dated(start)))
    bundle = v21.Bundle(objects=objects, id=object_id("bundle", firm, tlp, modified), allow_custom=True)
    return json.loads(bundle.serialize())


def _month() -> dict[str, Any]:
    """A month's findings before any flagged event."""
    return {"access": set(), "accounts": set(), "traders": set(), "buy": 0.0, "sell": 0.0}


def _months(first: str, last: str) -> Iterator[tuple[str, str, str]]:
    """Each month (Japan time) the window from `first` to `last` touches: (YYYY-MM, the window's
    start and end within it)."""
    if not first:
        return
    month = datetime.fromisoformat(first).astimezone(JST).strftime("%Y-%m")
    start, stop = month_span(month)
    while start <= datetime.fromisoformat(last):
        yield month, max(first, _stix_ts(start.isoformat())), min(last, _stix_ts(stop.isoformat()))
        month = (stop + timedelta(microseconds=1)).strftime("%Y-%m")
        start, stop = month_span(month)


def _pseudonyms(pseudonymise: Pseudonymiser, accounts: Iterable[Account]) -> list[str]:
    """The accounts' pseudonyms, of the account id alone: the same whether or not the events carry
    `firm`, as every export of the firm promises (docs/intel.md)."""
    return sorted(pseudonymise("account", account_id) for _, account_id in accounts)


def _stix_ts(ts: str) -> str:
    """An RFC 3339 timestamp with offset as STIX wants it: UTC, `Z`, milliseconds."""
    return datetime.fromisoformat(ts).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise RunError(f"{path}: not found; --run must name the output folder of `kabuguard replay`")
    out = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise RunError(f"{path}:{n}: not JSON ({exc.msg})") from None
    return out
