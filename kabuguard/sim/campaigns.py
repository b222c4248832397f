"""Labelled account-takeover campaigns in four styles, each pumping a thin stock.

pump_2025            phished credentials used from cloud/VPS addresses on fresh devices;
                     holdings sold, the cash put into one thin name within the hour, while the
                     attackers' own (pre-existing) accounts sell into the rise.
stealth_proxy        residential-proxy addresses, browser-like agents and the victim's usual
                     order sizes, over a whole session; still buying the campaign's name.
change_first         the attacker session first takes over email, phone or MFA; trading follows
                     hours or a day later.
credential_stuffing  bursts of failed logins across many accounts from a few addresses; the few
                     that succeed trade.

With several firms a campaign reaches them in sequence (hours to a day apart) with the same
addresses and the same target, which is what cross-firm indicator sharing can exploit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np

from kabuguard.sim import calibration
from kabuguard.sim.brokerage import Brokerage, Session, Tag
from kabuguard.sim.clock import (
    AFTERNOON_OPEN,
    MS_PER_MIN,
    PRE_CLOSE,
    day_start_ms,
    in_session_or_next_open,
    is_trading_day,
    jst_date,
    random_session_ms,
    session_minute,
)
from kabuguard.sim.customers import Customer
from kabuguard.sim.devices import Device, new_device, tool_device
from kabuguard.sim.habits import Habits, Job
from kabuguard.sim.instruments import Universe
from kabuguard.sim.networks import Networks

HOUR = 60 * MS_PER_MIN
T = TypeVar("T")

# Victims per campaign (all firms together), by style.
MEAN_VICTIMS: dict[str, int] = {"pump_2025": 12, "stealth_proxy": 6, "change_first": 5, "credential_stuffing": 5}
# Failed accounts tried per account that falls, in a stuffing burst.
STUFFING_ATTEMPTS_PER_SUCCESS = (15, 40)
MIN_WEALTH_JPY = 100_000  # attackers skip accounts with nothing to trade
MIN_CAMPAIGNS = 2  # per style and run, so that every style can be evaluated on its own


@dataclass
class Episode:
    """The market footprint of one wave: the campaign's first buy to its last sale. A wave whose
    victims bought nothing (no cash left after their sales) pumped nothing: the attackers' sales
    alone are no pump episode, though they are still labelled fraud."""

    campaign_id: str
    symbol: int
    firm: str | None
    start: int | None = None
    end: int | None = None

    def bought(self, ms: int) -> None:
        self.start = ms if self.start is None else min(self.start, ms)
        self.sold(ms)

    def sold(self, ms: int) -> None:
        self.end = ms if self.end is None else max(self.end, ms)


@dataclass
class Campaign:
    campaign_id: str
    style: str
    symbol: int
    infra: list[str]  # the addresses the attackers' tooling runs from
    tools: list[Device]  # the tooling's browser fingerprints, shared across victims
    attackers: list[Customer] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    wave_starts: list[int] = field(default_factory=list)  # one per firm, in the order reached

    def tag(self, role: str) -> Tag:
        return Tag(fraud=True, campaign_id=self.campaign_id, attack_style=self.style, role=role)


class Campaigns:
    """Plans every campaign up front (victims, attackers, targets, times), then acts day by day."""

    def __init__(
        self, customers: list[Customer], universe: Universe, networks: Networks, broker: Brokerage,
        habits: Habits, days: list[dt.date], firms: list[str | None], rng: np.random.Generator,
        history_days: int = 0,
    ) -> None:
        self.customers, self.universe, self.networks = customers, universe, networks
        self.broker, self.habits, self.rng = broker, habits, rng
        self.days, self.firms = days, firms
        self.history_days = history_days
        self.campaigns: list[Campaign] = []
        self._jobs: dict[dt.date, list[Job]] = {}
        self._used: set[int] = set()
        self._targets = np.flatnonzero(universe.thin)
        self._members = {f: [c for c in customers if c.firm == f] for f in firms}
        # Per firm: victims, victims without MFA (stuffing), attackers' own accounts.
        # Phished accounts lean to the well-off (more to sell); attackers' own accounts do not.
        wealth = {c.index: np.sqrt(max(1.0, c.cash + sum(q * universe.price[s] for s, q in c.holdings.items()))) for c in customers}
        self._pools = {
            (f, purpose): _Pool(self._members[f], rng, [wealth[c.index] for c in self._members[f]] if purpose != "attacker" else None)
            for f in firms for purpose in ("victim", "no_mfa", "attacker")
        }

    # -- planning -----------------------------------------------------------------------------

    def plan(self) -> None:
        rng, n = self.rng, len(self.customers)
        rates = np.array([calibration.daily_hijack_rate(d) for d in self.days])
        trading = np.array([is_trading_day(d) for d in self.days])
        # Campaigns start after the history period, as in a firm whose profiles carry months of
        # history; a run too short for both and the default history keeps its trading days (Config
        # refuses a history given explicitly that leaves none).
        eligible = trading & (np.arange(len(self.days)) >= self.history_days)
        if not eligible.any():
            eligible = trading
        p_day = rates * eligible / (rates * eligible).sum()
        expected = rates.sum() * n
        for style, share in calibration.STYLE_MIX.items():
            count = max(MIN_CAMPAIGNS, int(rng.poisson(expected * share / MEAN_VICTIMS[style])))
            for _ in range(count):
                day = self.days[int(rng.choice(len(self.days), p=p_day))]
                victims = max(2, int(rng.poisson(MEAN_VICTIMS[style])))
                self._plan_campaign(style, day, victims)

    def _plan_campaign(self, style: str, day: dt.date, victims: int) -> None:
        rng = self.rng
        campaign = Campaign(
            campaign_id=f"cmp-{len(self.campaigns) + 1:04d}-{int(rng.integers(1 << 24)):06x}",
            style=style,
            symbol=int(rng.choice(self._targets)),
            infra=[self._infra_address(style) for _ in range(int(rng.integers(2, 7)))],
            tools=[tool_device(rng) for _ in range(int(rng.integers(1, 5)))],
        )
        self.campaigns.append(campaign)
        start = random_session_ms(day, rng, 5, AFTERNOON_OPEN + 120)
        if style in ("change_first", "credential_stuffing"):
            start = day_start_ms(day) + int(rng.uniform(7, 23.5) * HOUR)  # any time of day
        for k, firm in enumerate(self.firms):
            if style in ("pump_2025", "stealth_proxy"):  # these trade as soon as they log in
                start = self._when_open(start)
            campaign.wave_starts.append(start)
            if k:  # the next firm, hours later: most addresses kept, a few new, new fingerprints
                campaign.infra = [ip for ip in campaign.infra if rng.random() < 0.7] + [
                    self._infra_address(style) for _ in range(int(rng.integers(1, 3)))
                ]
                campaign.tools = [tool_device(rng) for _ in campaign.tools]
            share = victims // len(self.firms) + (1 if k < victims % len(self.firms) else 0)
            purpose = "no_mfa" if style == "credential_stuffing" else "victim"
            chosen = self._pools[firm, purpose].take(share, self._victim_ok if purpose == "victim" else self._no_mfa_ok, self._used)
            if chosen:
                self._plan_wave(campaign, firm, start, chosen)
            start += int(rng.uniform(2, 24) * HOUR)

    def _victim_ok(self, c: Customer) -> bool:
        """An ordinary customer with something to steal and no phishing-resistant login."""
        wealth = c.cash + sum(q * self.universe.price[s] for s, q in c.holdings.items())
        return c.role is None and c.group is None and c.mfa != "passkey" and wealth >= MIN_WEALTH_JPY

    def _no_mfa_ok(self, c: Customer) -> bool:
        return c.mfa == "none" and self._victim_ok(c)

    def _infra_address(self, style: str) -> str:
        if style == "stealth_proxy" or (style == "change_first" and self.rng.random() < 0.5):
            return self.networks.address("residential_jp", self.rng)
        return self.networks.address("hosting", self.rng)

    def _plan_wave(self, campaign: Campaign, firm: str | None, start: int, victims: list[Customer]) -> None:
        rng = self.rng
        self._used.update(c.index for c in victims)
        episode = Episode(campaign.campaign_id, campaign.symbol, firm)
        campaign.episodes.append(episode)
        trade_p = calibration.trade_ratio(jst_date(start))
        traders = [v for v in victims if rng.random() < trade_p]
        if not traders and campaign.style != "credential_stuffing":
            traders = victims[:1]
        plan = getattr(self, f"_plan_{campaign.style}")
        last_buy = plan(campaign, episode, start, victims, traders)
        self._plan_attackers(campaign, episode, firm, start, last_buy, traders)
        for v in traders:  # half the owners notice within two days and lock the account again
            if rng.random() < 0.5:
                ms = last_buy + int(rng.uniform(2, 48) * HOUR)
                fields = ("password", "mfa") if rng.random() < 0.5 else ("password",)
                self._schedule(ms, partial(self.habits.session, v, ms, changes=fields))

    def _when_open(self, ms: int) -> int:
        """`ms` if the market is open then, else a little after the next open (not on the bell)."""
        opened = in_session_or_next_open(ms)
        return ms if opened == ms else opened + int(self.rng.integers(1, 40 * MS_PER_MIN))

    def _schedule(self, ms: int, action: Callable[[], None]) -> None:
        self._jobs.setdefault(jst_date(ms), []).append((ms, action))

    def day_jobs(self, day: dt.date) -> list[Job]:
        return self._jobs.pop(day, [])

    # -- the styles ----------------------------------------------------------------------------

    def _plan_pump_2025(self, cp: Campaign, ep: Episode, start: int, victims: list[Customer], traders: list[Customer]) -> int:
        rng = self.rng
        window = int(rng.uniform(20, 60) * MS_PER_MIN)
        # Credential checks come the evening before, yet after the previous firm's wave began.
        earliest = cp.wave_starts[-2] + HOUR if len(cp.wave_starts) > 1 else 0  # past its 20-60 min window
        last = start
        for v in victims:
            ms = start + int(rng.integers(window))
            device, ip = _one(rng, cp.tools), _one(rng, cp.infra)
            check = max(earliest, day_start_ms(jst_date(ms)) - int(rng.uniform(1, 6) * HOUR))
            if rng.random() < 0.3 and check < start:
                self._schedule(check, partial(self._visit, cp, ep, v, check, ip, device, trade=False))
            self._schedule(ms, partial(self._visit, cp, ep, v, ms, ip, device, trade=v in traders))
            last = max(last, ms)
        return last + 10 * MS_PER_MIN

    def _plan_stealth_proxy(self, cp: Campaign, ep: Episode, start: int, victims: list[Customer], traders: list[Customer]) -> int:
        rng = self.rng
        day = jst_date(start)
        first = session_minute(start - day_start_ms(day)) or 0
        last = start
        for i, v in enumerate(victims):  # the first at the wave's start, the others over the rest of the day
            ms = start if i == 0 else max(start, random_session_ms(day, rng, first=min(first, PRE_CLOSE - 1)))
            ip = self.networks.pick("residential_jp", rng, exclude=v.home).address(rng)
            device = new_device(rng, "phone" if v.devices[0].kind == "phone" else "pc")  # looks like theirs
            self._schedule(ms, partial(self._visit, cp, ep, v, ms, ip, device, trade=v in traders, stealthy=True))
            last = max(last, ms)
        return last + 15 * MS_PER_MIN

    def _plan_change_first(self, cp: Campaign, ep: Episode, start: int, victims: list[Customer], traders: list[Customer]) -> int:
        rng = self.rng
        last = start
        for v in victims:
            ms = start + int(rng.integers(90 * MS_PER_MIN))
            device, ip = tool_device(rng), _one(rng, cp.infra)
            fields = ["email"] + [f for f, p in (("phone", 0.6), ("mfa", 0.7), ("password", 0.3)) if rng.random() < p]
            self._schedule(ms, partial(self._takeover, cp, v, ms, ip, device, fields))
            if v in traders:
                later = self._when_open(ms + int(rng.uniform(2, 24) * HOUR))
                mfa = "totp" if "mfa" in fields else None  # the attacker's own authenticator now
                self._schedule(later, partial(self._visit, cp, ep, v, later, ip, device, trade=True, mfa=mfa))
                last = max(last, later)
        return last + 10 * MS_PER_MIN

    def _plan_credential_stuffing(self, cp: Campaign, ep: Episode, start: int, victims: list[Customer], traders: list[Customer]) -> int:
        rng = self.rng
        members = self._members[victims[0].firm]
        tried = int(len(victims) * rng.integers(*STUFFING_ATTEMPTS_PER_SUCCESS))
        drawn = rng.choice(len(members), size=min(2 * tried, len(members)), replace=False)
        others = [c for c in (members[int(i)] for i in drawn) if c.role is None and c.index not in self._used][:tried]
        self._used.update(c.index for c in others)  # one part per account: no later victim or attacker
        duration = rng.uniform(0.5, 2.0) * HOUR
        device, infra = cp.tools[0], list(cp.infra)
        for c in others:
            ms = start + int(rng.integers(int(duration)))
            self._schedule(ms, partial(self._stuff, cp, c, ms, device, infra))
        last = start
        for v in victims:
            ms = start + int(rng.integers(int(duration)))
            ip = _one(rng, cp.infra)
            self._schedule(ms, partial(self._visit, cp, ep, v, ms, ip, device, trade=False))
            if v in traders:
                later = self._when_open(ms + int(rng.uniform(2, 40) * MS_PER_MIN))
                self._schedule(later, partial(self._visit, cp, ep, v, later, ip, device, trade=True))
                last = max(last, later)
        return last + 10 * MS_PER_MIN

    def _plan_attackers(self, cp: Campaign, ep: Episode, firm: str | None, start: int, last_buy: int, traders: list[Customer]) -> None:
        """The attackers' own accounts at this firm: they hold the target already (bought before
        the run), add a little in the days before, and sell into the campaign's buying."""
        rng = self.rng
        price = self.universe.price[cp.symbol]
        stolen = sum(v.cash + sum(q * self.universe.price[s] for s, q in v.holdings.items()) for v in traders)
        accounts = self._pools[firm, "attacker"].take(int(rng.integers(1, 3)), lambda c: c.role is None and c.group is None, self._used)
        for a in accounts:
            self._used.add(a.index)
            a.role = "attacker"
            # Opened for the scheme weeks to a year before (under a bought or borrowed identity),
            # so younger than most accounts, yet no younger than many real new customers.
            a.opened_ms = day_start_ms(self.days[0]) - int(rng.uniform(20, 400) * 24 * HOUR) // 1000 * 1000
            lots = max(1, int(stolen * rng.uniform(0.3, 0.6) / len(accounts) / price / 100))
            a.holdings[cp.symbol] = a.holdings.get(cp.symbol, 0) + lots * 100
            a.cash = max(a.cash, lots * price * 100 * 0.3)
            cp.attackers.append(a)
            ip = a.home_ip if rng.random() < 0.5 else _one(rng, cp.infra)
            device = a.devices[0]
            for back in range(1, int(rng.integers(1, 4))):
                ms = self._when_open(start - back * 24 * HOUR - int(rng.integers(4 * HOUR)))
                self._schedule(ms, partial(self._accumulate, cp, a, ms, ip, device))
            ms = self._when_open(last_buy - int(rng.uniform(0, 15) * MS_PER_MIN))
            self._schedule(ms, partial(self._dump, cp, ep, a, ms, ip, device))

    # -- actions at run time -------------------------------------------------------------------

    def _login(self, cp: Campaign, c: Customer, ms: int, ip: str, device: Device, mfa: str | None = None,
               role: str = "victim") -> Session:
        tag = cp.tag(role)
        where = {"ip": ip, "user_agent": device.web_ua, "device_id": device.device_id, "channel": "web"}
        if role == "victim" and self.rng.random() < 0.08:  # the phished password, mistyped once, just before
            self.broker.login(c, ms - int(self.rng.integers(3_000, 20_000)), tag, success=False, **where)
        return self.broker.login(c, ms, tag, mfa=mfa, **where)

    def _visit(self, cp: Campaign, ep: Episode, v: Customer, ms: int, ip: str, device: Device,
               trade: bool, stealthy: bool = False, mfa: str | None = None) -> None:
        """A hijacked session: log in; if trading, sell (everything, or like the victim would)
        and put the cash into the campaign's symbol."""
        rng, broker, tag = self.rng, self.broker, cp.tag("victim")
        session = self._login(cp, v, ms, ip, device, mfa)
        if not stealthy and rng.random() < 0.2:  # silence the trade notifications first
            ms += int(rng.integers(20_000, 90_000))
            broker.change(v, ms, tag, session, "notification_settings")
        if not trade:
            return
        held = [s for s, q in v.holdings.items() if q > 0 and s != cp.symbol]
        for s in held[: int(rng.integers(0, 3))] if stealthy else held:
            ms += int(rng.integers(5_000, 40_000))
            if stealthy:
                self.habits.sell(v, ms, tag, session, s)
            else:
                broker.order(v, ms, tag, session, symbol=s, buy=False, qty=v.holdings[s])
        # Market sales are buying power at once; a stealthy buy stays near the victim's habit.
        # Sized as a market order, at the upper price limit: no piece, limit or not, reserves more.
        value = max(0.0, v.cash) * (min(1.0, v.buy_fraction * 2.5) if stealthy else 1.0)
        lots = broker.lots_for(cp.symbol, value, ms) // 100
        pieces = 1 if stealthy else int(rng.integers(1, 4))
        for part in _split(lots, pieces):
            ms += int(rng.integers(8_000, 60_000))
            offset = None if rng.random() < 0.5 else float(rng.uniform(0.02, 0.08))
            broker.order(v, ms, tag, session, symbol=cp.symbol, buy=True, qty=part * 100, limit_offset=offset)
            ep.bought(ms)

    def _takeover(self, cp: Campaign, v: Customer, ms: int, ip: str, device: Device, fields: list[str]) -> None:
        """Change first: email, then phone and MFA, sometimes the password, minutes apart."""
        rng, tag = self.rng, cp.tag("victim")
        session = self._login(cp, v, ms, ip, device)
        for f in fields:
            ms += int(rng.integers(30_000, 240_000))
            self.broker.change(v, ms, tag, session, f)

    def _stuff(self, cp: Campaign, c: Customer, ms: int, device: Device, infra: list[str]) -> None:
        """One or two wrong passwords against an account the attackers do not get into."""
        tag = cp.tag("victim")
        for _ in range(1 + int(self.rng.random() < 0.3)):
            ip = _one(self.rng, infra)
            fingerprint = device.device_id if self.rng.random() < 0.5 else None
            self.broker.login(c, ms, tag, success=False, ip=ip, user_agent=device.web_ua, device_id=fingerprint, channel="web")
            ms += int(self.rng.integers(1_000, 15_000))

    def _accumulate(self, cp: Campaign, a: Customer, ms: int, ip: str, device: Device) -> None:
        session = self._login(cp, a, ms, ip, device, role="attacker")
        qty = max(100, a.holdings.get(cp.symbol, 0) // 8 // 100 * 100)
        self.broker.order(a, ms + int(self.rng.integers(20_000, 120_000)), cp.tag("attacker"), session,
                          symbol=cp.symbol, buy=True, qty=qty, limit_offset=0.0)

    def _dump(self, cp: Campaign, ep: Episode, a: Customer, ms: int, ip: str, device: Device) -> None:
        """Sell the position in a few limit orders above the last price, into the buying."""
        rng = self.rng
        session = self._login(cp, a, ms, ip, device, role="attacker")
        for lots in _split(a.holdings.get(cp.symbol, 0) // 100, int(rng.integers(2, 5))):
            # Any instant, not whole minutes after the login: a script's clock would be a tell.
            ms += int(rng.uniform(2, 12) * MS_PER_MIN)
            self.broker.order(a, ms, cp.tag("attacker"), session, symbol=cp.symbol, buy=False, qty=lots * 100,
                              limit_offset=float(rng.uniform(0.0, 0.06)))
            ep.sold(ms)


def _split(lots: int, pieces: int) -> list[int]:
    """`lots` in `pieces` near-equal non-empty parts (fewer when there are not enough lots)."""
    return [q for q in np.diff(np.linspace(0, lots, pieces + 1).round().astype(int)).tolist() if q > 0]


def _one(rng: np.random.Generator, items: list[T]) -> T:
    return items[int(rng.integers(len(items)))]


class _Pool:
    """One firm's customers in a fixed random order (weighted, if given), each handed out at most once."""

    def __init__(self, members: list[Customer], rng: np.random.Generator, weights: list[float] | None = None) -> None:
        if weights is None:
            order = rng.permutation(len(members))
        else:  # weighted sampling without replacement (Efraimidis-Spirakis): sort Exp(1) / w
            order = np.argsort(rng.exponential(size=len(members)) / np.asarray(weights, dtype=float), kind="stable")
        self._order = [members[int(i)] for i in order]
        self._next = 0

    def take(self, k: int, ok: Callable[[Customer], bool], used: set[int]) -> list[Customer]:
        out: list[Customer] = []
        while len(out) < k and self._next < len(self._order):
            c = self._order[self._next]
            self._next += 1
            if c.index not in used and ok(c):
                out.append(c)
        return out
