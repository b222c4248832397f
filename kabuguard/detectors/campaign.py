"""Cross-account campaign: many accounts in risky sessions buying the same thin symbol at once.

The 2025 signature: dozens of hijacked accounts, each looking only mildly odd, all buying one
illiquid stock within an hour or two. Per symbol, the buyers of a window form a cluster of
accounts whose sessions stage 1 found risky, joined by accounts that share their IP address or
device. When the cluster reaches `min_accounts` a `campaign_alert` names its accounts, symbols
and IPs; later buys from risky or linked sessions score `campaign_buy`, and sells by accounts that
bought the symbol shortly before the campaign began score `dump_into_pump` (the attackers' own
accounts cashing out); sells by other holders who are not among the campaign's buyers score
`sell_into_pump`. News-driven crowds buy from their own devices and homes, so their
sessions are not risky and they do not form a cluster. Known false positives: a social-media
tip followed by many customers on new phones.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors._window import drop_expired, renew
from kabuguard.detectors.base import Evidence, Finding, count, duration_us, number, param, share
from kabuguard.detectors.money import thin
from kabuguard.events.model import account_key


class Buyer(msgspec.Struct, array_like=True):
    ts_us: int
    risky: bool
    ip: str
    device: str


_BUY_TIME = attrgetter("ts_us")


def _itself(ts_us: int) -> int:
    return ts_us


class CampaignState(msgspec.Struct):
    buyers: dict[str, Buyer] = {}  # account -> its latest buy in the window
    earlier: dict[str, int] = {}  # account -> time of its latest buy, over the lookback
    campaign_id: str = ""
    started_us: int = 0
    last_us: int = 0
    members: list[str] = []


class Campaign:
    name: ClassVar[str] = "campaign"
    stage: ClassVar[str] = "symbol"
    types: ClassVar[frozenset[str]] = frozenset({"order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.window_us = duration_us(params, "window_minutes", self.name)
        self.lookback_us = duration_us(params, "lookback_days", self.name)
        self.min_accounts = count(params, "min_accounts", self.name)
        self.min_share = share(params, "min_share", self.name)
        self.risky_llr = number(params, "risky_session_llr", self.name)
        self.buy_weight = number(params, "buy_weight", self.name)
        self.dump_weight = number(params, "dump_weight", self.name)
        self.sell_weight = number(params, "sell_weight", self.name)
        self.max_adv_value = number(params, "max_adv_value_jpy", self.name)
        self.fx_jpy = param(params, "fx_jpy", self.name)

    def initial(self) -> CampaignState:
        return CampaignState()

    def _active(self, state: CampaignState, now: int) -> bool:
        return bool(state.campaign_id) and now - state.last_us <= self.window_us

    def _thin(self, ev: Evidence) -> bool:
        return thin(ev.instrument, self.fx_jpy, self.max_adv_value, unknown=True)  # do not rule an unknown out

    def score(self, event: Any, state: CampaignState, ev: Evidence) -> None:
        now = event.ts_us
        if not self._thin(ev):
            return
        if event.side == "sell":
            key = account_key(event)
            if not self._active(state, now) or key in state.members:
                return
            bought = state.earlier.get(key)
            # `earlier` is pruned only now and then (memory): its times a lookback or more before
            # now still sit there, and must read as they would once pruned, however many others
            # bought the name since.
            kept = bought is not None and bought > now - self.lookback_us
            if kept and state.started_us - self.lookback_us <= bought < state.started_us:
                ev.findings.append(Finding("dump_into_pump", self.dump_weight))
            else:  # a position held from before the lookback: who sells into the pump profits from it
                ev.findings.append(Finding("sell_into_pump", self.sell_weight))
            return
        key = account_key(event)
        window = {**{a: b for a, b in state.buyers.items() if b.ts_us > now - self.window_us}, key: self._buyer(event, ev)}
        cluster = self._cluster(window)
        if key not in cluster:
            return
        # A news crowd has a few odd sessions among many ordinary buyers; a campaign is mostly odd.
        formed = len(cluster) >= self.min_accounts and len(cluster) >= self.min_share * len(window)
        if formed or self._active(state, now):
            ev.findings.append(Finding("campaign_buy", self.buy_weight))
        if formed:
            new = not self._active(state, now)
            campaign_id = f"cmp-{event.symbol}-{event.event_id}" if new else state.campaign_id
            members = sorted(cluster if new else set(cluster) | set(state.members))
            known = {**state.buyers, key: window[key]}  # members may reach back past the window
            ips = sorted({b.ip for a, b in known.items() if a in members and b.ip})
            ev.alerts.append({
                "type": "campaign_alert", "campaign_id": campaign_id, "accounts": members,
                "symbols": [event.symbol], "ips": ips,
                "score": round(min(1.0, len(members) / (2 * self.min_accounts)), 4),
                "reasons": ["campaign_buy"],
            })
            ev.notes.append(("campaign_member", (campaign_id, members)))

    def learn(self, event: Any, state: CampaignState, ev: Evidence) -> None:
        now = event.ts_us
        if event.side != "buy" or not self._thin(ev):
            return
        buyers, earlier = state.buyers, state.earlier
        key = account_key(event)
        # Both kept oldest first: a name with many buyers costs only its expired head per buy.
        drop_expired(buyers, now - self.window_us, _BUY_TIME)
        renew(buyers, key, self._buyer(event, ev))
        if len(earlier) > 4 * len(buyers) + 64:
            drop_expired(earlier, now - self.lookback_us, _itself)
        for alert in ev.alerts:
            if alert["type"] == "campaign_alert":
                if alert["campaign_id"] != state.campaign_id:
                    state.campaign_id, state.started_us = alert["campaign_id"], now
                state.members = alert["accounts"]
        if any(f.reason == "campaign_buy" for f in ev.findings):
            state.last_us = now
        elif key not in state.members:
            renew(earlier, key, now)

    def _buyer(self, event: Any, ev: Evidence) -> Buyer:
        return Buyer(event.ts_us, ev.session_llr >= self.risky_llr, event.ip or "", event.device_id or "")

    @staticmethod
    def _cluster(window: dict[str, Buyer]) -> list[str]:
        """The window's risky buyers, plus buyers sharing an IP or device with one of them."""
        risky = {a for a, b in window.items() if b.risky}
        ips = {window[a].ip for a in risky if window[a].ip}
        devices = {window[a].device for a in risky if window[a].device}
        linked = {a for a, b in window.items() if (b.ip and b.ip in ips) or (b.device and b.device in devices)}
        return sorted(risky | linked)
