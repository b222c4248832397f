"""The detection core: one event in, its decision and alerts out, in the total order.

Every runner (replay, service, Spark) drives this same code; they differ only in how events
arrive and where the `Store` keeps state. A decision reads state built from strictly earlier
events, so replaying history decides exactly as production would have.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import attrgetter
from typing import Any

import msgspec

from kabuguard.detectors import ALL
from kabuguard.detectors.base import Evidence, Finding
from kabuguard.detectors.liquidity import DAY_US, TradedDays, lacks_liquidity, with_liquidity
from kabuguard.detectors.market_factor import MARKET_KEY
from kabuguard.detectors.money import to_jpy
from kabuguard.detectors.shared_indicator import intel_key
from kabuguard.detectors.session_risk import SessionMemory
from kabuguard.engine.stages import KeyedStage
from kabuguard.engine.store import MemoryStore, Store
from kabuguard.events.model import Event, MarketBar, account_key, firm_account_key, ip_key
from kabuguard.netintel import UNKNOWN, NetIntel, netintel
from kabuguard.policy import Policy, at_least, load_policy

_ACTIVITY = frozenset({"login", "account_change", "order"})
# Notes for final-stage keys, each (note, (tag, keys)): campaign membership and containment.
_KEYED_NOTES = frozenset({"campaign_member", "contain"})
# The events that read an instrument (reference data) as of their place in the order.
_PRICED = frozenset({"order", "execution"})
_MIN_US = 60_000_000


def bar_batches(bars: Sequence[Event]) -> Iterator[Sequence[Event]]:
    """Consecutive bars cut into batches a stage decides at once (`KeyedStage.run_batch`): of one
    minute, as the market factor reads whole minutes, and of distinct symbols."""
    start, symbols, last = 0, set(), None
    minute = (bars[0].ts_us - 1) // _MIN_US if bars else 0
    for i, bar in enumerate(bars):
        if bar.ts_us != last:  # a minute's bars mostly share their ts
            last = bar.ts_us
            at = (last - 1) // _MIN_US
        if at != minute or bar.symbol in symbols:
            yield bars[start:i]
            start, minute, symbols = i, at, set()
        symbols.add(bar.symbol)
    if start < len(bars):
        yield bars[start:]


class AccountStatus(msgspec.Struct):
    """What the final stage keeps per account beyond its detectors: containment and campaigns."""

    contained: bool = False
    campaign_id: str = ""
    last_alert_us: int = 0


def _status_in(state: dict[str, Any]) -> AccountStatus:
    """An account's status in its final-stage state, created when first needed (made only then:
    the final stage asks on every activity event)."""
    status = state.get("status")
    if status is None:
        status = state["status"] = AccountStatus()
    return status


def _quote(event: Any, state: dict[str, Any], ev: Evidence) -> None:
    """The symbol's last traded price: bars and executions move it, orders read it. Bars also
    add up the symbol's volume per day (`detectors.liquidity`)."""
    kind = event.kind
    if kind == "order":
        ev.price = state.get("quote")
    elif kind == "market_bar":
        state["quote"] = close = event.close
        traded = state.get("traded")
        if traded is None:
            traded = state["traded"] = TradedDays()
        if traded.day == (event.ts_us - 1) // DAY_US:  # `utc_day` and `TradedDays.add` inline: every bar
            traded.volume += event.volume
            traded.close = close
        else:
            traded.add(event)
    elif kind == "execution":
        state["quote"] = event.price


class Pipeline:
    """The keyed stages wired together over one store."""

    def __init__(self, policy: Policy | None = None, store: Store | None = None,
                 net: NetIntel | None = None) -> None:
        self.policy = policy or load_policy()
        self.store = store if store is not None else MemoryStore()
        self.net = net or netintel()
        # Policy-wide parameters reach every detector beside its own section.
        detectors = [cls(self.policy.detector_params(cls.name)) for cls in ALL]
        self._session_ttl_us = next(d for d in detectors if d.name == "risky_session").ttl_us

        def of(stage: str) -> list[Any]:
            return [d for d in detectors if d.stage == stage]

        self.account = KeyedStage("account", of("account"), account_key,
                                  kinds=_ACTIVITY, between=self._session_evidence)
        self.ip = KeyedStage("ip", of("ip"), ip_key)
        self.device = KeyedStage("device", of("device"), attrgetter("device_id"))
        self.intel = KeyedStage("intel", of("intel"), intel_key)
        # One key: the whole market's minute-by-minute factor, read by the symbol stage.
        self.market = KeyedStage("market", of("market"), lambda e: MARKET_KEY)
        self.symbol = KeyedStage("symbol", of("symbol"), attrgetter("symbol"),
                                 kinds=frozenset({"market_bar", "execution"}), between=_quote)
        self.final = KeyedStage("final", of("final"), account_key, kinds=_ACTIVITY, between=self._decide)
        stages = (self.account, self.ip, self.device, self.intel, self.market, self.symbol, self.final)
        self.stages = stages
        # Per event type, the stages that handle it, in stage order.
        self._routes = {kind: tuple(st.run for st in stages if kind in st.by_kind)
                        for kind in ("account", "login", "account_change", "order", "execution", "market_bar",
                                     "indicator")}
        self._bar_stages = tuple(st for st in stages if "market_bar" in st.by_kind)
        self._decision: dict[str, Any] | None = None

    @property
    def horizons_us(self) -> dict[str, int]:
        """Per stage that forgets idle keys, how long a key matters after its last event."""
        return {st.name: st.horizon_us for st in self.stages if st.horizon_us is not None}

    def process(self, event: Event) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """One event's decision and the alerts it raised; the decision is None for every event but
        an activity event (login, account_change, order): the others only feed state."""
        kind = event.kind
        if kind == "instrument":
            # Reference data, broadcast to every stage: the latest record before each event.
            self.store.put("reference", event.symbol, {"instrument": event})
            return None, []
        ev = Evidence(self.net.lookup(event.ip) if kind in _ACTIVITY else UNKNOWN,
                      self._instrument(event) if kind in _PRICED else None)
        self._decision = None
        store = self.store
        for run in self._routes[kind]:
            run(event, ev, store)
        if ev.alerts:
            self._fire_playbooks(event, ev, 0)
        if ev.notes:
            self.apply_notes(ev)
        return self._decision, self.stamp(event, ev.alerts) if ev.alerts else []

    def process_bars(self, bars: Sequence[Event]) -> list[dict[str, Any]]:
        """Decide consecutive `market_bar`s of the total order as `process` would one by one,
        in batches (`bar_batches`), and return the alerts they raised, in order."""
        out: list[dict[str, Any]] = []
        for batch in bar_batches(bars):
            evs = [Evidence() for _ in batch]
            for stage in self._bar_stages:
                stage.run_batch(batch, evs, self.store)
            for event, ev in zip(batch, evs):
                if ev.alerts:
                    self._fire_playbooks(event, ev, 0)
                if ev.notes:
                    self.apply_notes(ev)
                if ev.alerts:
                    out += self.stamp(event, ev.alerts)
        return out

    def warm_up(self) -> None:
        """Load the compiled bar kernels (numba compiles them once, then reads its cache) with one
        made-up bar on a throwaway store, so that no real request waits for them."""
        bar = MarketBar(event_id="warm-up", ts="1970-01-01T00:01:00Z", symbol="-", open=1.0, high=1.0, low=1.0,
                        close=1.0, volume=1)
        bar.ts_us = _MIN_US
        Pipeline(self.policy, MemoryStore(), self.net).process_bars([bar])

    # -- stage-wise execution: the same steps as `process`, one stage at a time ---------------
    # A distributed runner (kabuguard.spark) runs each stage over its own keyed partitions, carries
    # the Evidence from stage to stage, and delivers notes to the keys they name.

    def evidence(self, event: Event, instrument: Any = None) -> Evidence:
        """A fresh Evidence for a non-reference event; `instrument` is the latest record before it."""
        return Evidence(self.net.lookup(event.ip) if event.kind in _ACTIVITY else UNKNOWN, instrument)

    def run_stage(self, stage: KeyedStage, event: Event, ev: Evidence) -> dict[str, Any] | None:
        """Run one stage on `event`; returns its decision when `stage` is the final stage."""
        self._decision = None
        raised = len(ev.alerts)
        stage.run(event, ev, self.store)
        if len(ev.alerts) > raised:
            self._fire_playbooks(event, ev, raised)
        return self._decision

    def run_stage_bars(self, stage: KeyedStage, bars: Sequence[Event], evs: Sequence[Evidence]) -> None:
        """`run_stage` over consecutive market bars, in the batches `process_bars` makes."""
        at = 0
        for batch in bar_batches(bars):
            mine = evs[at:at + len(batch)]
            at += len(batch)
            raised = [len(ev.alerts) for ev in mine]
            stage.run_batch(batch, mine, self.store)
            for event, ev, before in zip(batch, mine, raised):
                if len(ev.alerts) > before:
                    self._fire_playbooks(event, ev, before)

    def _fire_playbooks(self, event: Any, ev: Evidence, start: int) -> None:
        """The policy's playbooks on the alerts from `start` on, right after the stage that raised
        them: each names itself in the alert, and a live one contains the accounts it names
        through a note, so every runner contains them at the same place in the order. An alert
        naming no one to contain fires none."""
        for alert in ev.alerts[start:]:
            matching = [playbook for playbook in self.policy.playbooks if playbook.matches(alert)]
            accounts = self._containable(event, ev, alert) if matching else []
            if not accounts:
                continue
            for playbook in matching:
                alert.setdefault(playbook.field, []).append(playbook.name)
                if not playbook.dry_run:
                    ev.notes.append(("contain", (playbook.name, list(accounts))))

    def _containable(self, event: Any, ev: Evidence, alert: dict[str, Any]) -> list[str]:
        """The accounts a playbook contains on `alert` (an account or campaign alert, the kinds
        playbooks match): its account, or a campaign's members, as its detector made them by a
        note beside the alert. A credential-stuffing alert makes none: the accounts its list
        only tried are their owners' to use."""
        if alert["type"] == "account_alert":
            return [account_key(event)]
        return next((self.note_targets(note, payload) for note, payload in ev.notes
                     if note == "campaign_member" and payload[0] == alert["campaign_id"]), [])

    @staticmethod
    def note_targets(note: str, payload: Any) -> list[str]:
        """The final-stage keys a cross-stage note is for (campaign members, contained accounts)."""
        return list(payload[1]) if note in _KEYED_NOTES else []

    def apply_note(self, key: str, note: str, payload: Any) -> None:
        """Deliver a note to one final-stage key; its later events see it."""
        state, status = self._status(key)
        if note == "campaign_member":
            status.campaign_id = payload[0]
        elif note == "contain":
            status.contained = True
        self.store.put("final", key, state)

    def apply_notes(self, ev: Evidence) -> None:
        """Deliver every note an event raised, after all its stages ran."""
        for note, payload in ev.notes:
            for key in self.note_targets(note, payload):
                self.apply_note(key, note, payload)

    def _instrument(self, event: Any) -> Any:
        """The latest instrument record of the event's symbol; for an order, with the liquidity
        the market's bars gave up to its day where the record has none (`detectors.liquidity`)."""
        reference = self.store.get("reference", event.symbol)
        instrument = reference["instrument"] if reference else None
        if event.kind == "order" and lacks_liquidity(instrument):
            symbol = self.store.get("symbol", event.symbol)
            traded = symbol.get("traded") if symbol else None
            if traded is not None:
                instrument = with_liquidity(instrument, traded.liquidity(event.ts_us), event)
        return instrument

    def contain(self, firm: str | None, account_id: str) -> None:
        """Containment: every later event of the account is blocked with reason `contained`."""
        key = firm_account_key(firm, account_id)
        self.apply_note(key, "contain", ("console", [key]))

    def _status(self, key: str) -> tuple[dict[str, Any], AccountStatus]:
        """An account's final-stage state and its status, created when first needed."""
        state = self.store.get("final", key) or {}
        return state, _status_in(state)

    # -- stage hooks --------------------------------------------------------------------

    def _session_evidence(self, event: Any, state: dict[str, Any], ev: Evidence) -> None:
        """Stage 1's session risk: a login's own evidence, or the login behind the session."""
        memory = state.get("session")
        if memory is None:
            memory = state["session"] = SessionMemory()
        if event.kind == "login":
            ev.session_llr = sum(f.weight for f in ev.findings)
            memory.open(event, ev.session_llr, self._session_ttl_us)
        elif event.kind in _ACTIVITY:
            ev.session_llr = memory.risk(event, self._session_ttl_us)

    def _decide(self, event: Any, state: dict[str, Any], ev: Evidence) -> None:
        policy = self.policy
        status = _status_in(state)
        # Membership follows the campaign's sessions, not the owner's own recognised ones.
        if status.campaign_id and ev.session_llr > policy.own_session_llr:
            ev.findings.append(Finding("campaign_member", policy.campaign_member_weight))
        ev.llr = sum(f.weight for f in ev.findings)
        kind = event.kind
        score = policy.score(kind, ev.llr)
        reasons = policy.reasons(ev.findings)
        decision = policy.decide(kind, score)
        if status.contained:
            decision, reasons = "block", ["contained", *reasons]
        out: dict[str, Any] = {
            "event_id": event.event_id, "ts": event.ts, "type": kind,
            "account_id": event.account_id,
        }
        if event.firm:
            out["firm"] = event.firm
        out.update(decision=decision, score=round(score, 6), reasons=reasons)
        if kind == "order":
            inst = ev.instrument
            price = event.limit_price or ev.price or (inst.last_price if inst else None)
            value = to_jpy(price * event.qty if price else None, inst.currency if inst else None, policy.fx_jpy)
            out["notional_jpy"] = round(value, 2) if value is not None else None
        self._decision = out
        # An account alert is for what got through: a refused password is decided (and counts
        # towards the stuffing campaign's alert) but alerts nobody about the account, so that it
        # cannot use up the cooldown the takeover's own login needs minutes later.
        if at_least(decision, "review") and (kind != "login" or event.success) \
                and event.ts_us - status.last_alert_us >= policy.alert_cooldown_us:
            status.last_alert_us = event.ts_us
            ev.alerts.append({"type": "account_alert", "account_id": event.account_id,
                              "score": out["score"], "reasons": reasons})

    @staticmethod
    def stamp(event: Any, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Alerts as written: an id from the event and their place in it, its ts, firm and event_id."""
        stamped = []
        for n, alert in enumerate(alerts):
            head = {"alert_id": f"al-{event.event_id}-{n}", "type": alert["type"], "ts": event.ts,
                    "event_id": event.event_id}
            if event.firm:
                head["firm"] = event.firm
            stamped.append({**head, **{k: v for k, v in alert.items() if k != "type"}})
        return stamped
