"""The firm's customers and their stable personal habits (the baseline detectors learn)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from kabuguard.sim.clock import MS_PER_DAY, day_start_ms
from kabuguard.sim.devices import Device, new_device, with_update
from kabuguard.sim.instruments import Universe
from kabuguard.sim.networks import Network, Networks

MFA_MIX: dict[str, float] = {"none": 0.42, "sms": 0.22, "email": 0.14, "totp": 0.08, "push": 0.08, "passkey": 0.06}
DORMANT_SHARE = 0.2
API_SHARE, API_ON_VPS = 0.01, 0.4

# When people look at their portfolio (JST hours): two anchors per profile, each session near one.
HOUR_PROFILES: list[tuple[float, float]] = [
    (7.5, 20.5),  # office worker: before work and evening
    (9.3, 13.5),  # day trader / retiree: in the session
    (12.1, 21.5),  # lunch break and late evening
    (9.1, 15.0),  # the open and the close
    (22.5, 6.5),  # night owl: US market hours, early morning
]


@dataclass(slots=True)
class Trip:
    """A stay abroad: sessions come from a foreign network on the usual devices."""

    start_ms: int
    end_ms: int
    network: Network
    hotel_ip: str
    hour_shift: float  # local daytime lands at odd JST hours


@dataclass(slots=True, eq=False)
class Customer:
    index: int
    account_id: str
    firm: str | None
    opened_ms: int
    cash: float
    holdings: dict[int, int]
    devices: list[Device]
    home: Network
    home_ip: str
    carrier: Network
    mfa: str
    rate: float  # sessions on an ordinary weekday
    hours: tuple[float, float]
    trade_prob: float  # chance that a session places orders
    buy_fraction: float  # typical share of cash put into one buy
    favourites: np.ndarray
    api_ip: str | None  # where the customer's API client runs (home, or a VPS bot), if any
    # Set by the confounder and campaign planners.
    group: str | None = None
    role: str | None = None
    trip: Trip | None = None
    switch: tuple[int, Device, Device] | None = None  # (from ms, old phone, new phone)
    returns_ms: int | None = None  # a dormant account comes back at this instant
    shared_ip: str | None = None  # a household or office address shared with other accounts
    office: bool = False
    proxy: str | None = None  # networks category the customer's browser traffic goes through
    targets: list[int] = field(default_factory=list)  # symbols pushed on the customer (news)

    @property
    def dormant(self) -> bool:
        return self.rate == 0.0


def population(
    n: int,
    firms: list[str | None],
    universe: Universe,
    networks: Networks,
    start: dt.date,
    days: int,
    rng: np.random.Generator,
) -> list[Customer]:
    """`n` customers with stable devices, home networks, hours, favourite symbols and sizes."""
    ids = rng.choice(90_000_000, size=n, replace=False) + 10_000_000
    # Large caps are everybody's favourites; thin names are somebody's.
    popularity = np.cumsum(universe.market_cap**0.5)
    picks = np.searchsorted(popularity / popularity[-1], rng.random((n, 16)))
    n_favourites = rng.integers(3, 9, n)
    dormant = rng.random(n) < DORMANT_SHARE
    rate = np.where(dormant, 0.0, np.clip(rng.lognormal(np.log(0.3), 0.9, n), 0.03, 4.0))
    years_open = rng.exponential(4.0, n) + np.where(dormant, 2.0, 0.1)
    cash = np.round(np.clip(rng.lognormal(np.log(400_000), 1.1, n), 1_000, 80_000_000), -2)
    mfa_names = list(MFA_MIX)
    mfa = rng.choice(len(mfa_names), size=n, p=list(MFA_MIX.values()))
    start_ms = day_start_ms(start)
    end_ms = start_ms + days * MS_PER_DAY
    customers = []
    for i in range(n):
        favourites = np.array(list(dict.fromkeys(picks[i].tolist()))[: n_favourites[i]])
        home = networks.pick("residential_jp", rng)
        home_ip = home.address(rng)
        customers.append(
            Customer(
                index=i,
                account_id=f"A{ids[i]:08d}",
                firm=firms[int(rng.integers(len(firms)))],
                opened_ms=start_ms - int(years_open[i] * 365 * MS_PER_DAY) // 1000 * 1000,
                cash=float(cash[i]),
                holdings=_holdings(favourites, universe, rng),
                devices=[with_update(d, rng, start_ms, end_ms) for d in _devices(rng)],
                home=home,
                home_ip=home_ip,
                carrier=networks.pick("mobile_jp", rng),
                mfa=mfa_names[mfa[i]],
                rate=float(rate[i]),
                hours=HOUR_PROFILES[int(rng.integers(len(HOUR_PROFILES)))],
                trade_prob=float(rng.beta(2, 4)),
                buy_fraction=float(rng.uniform(0.08, 0.45)),
                favourites=favourites,
                api_ip=_api_address(home_ip, networks, rng),
            )
        )
    return customers


def _api_address(home_ip: str, networks: Networks, rng: np.random.Generator) -> str | None:
    """1 % trade through the API too; 40 % of those from a bot on a Japanese VPS."""
    if rng.random() >= API_SHARE:
        return None
    return networks.address("vps_jp", rng) if rng.random() < API_ON_VPS else home_ip


def _holdings(favourites: np.ndarray, universe: Universe, rng: np.random.Generator) -> dict[int, int]:
    held = {}
    for s in favourites[: int(rng.poisson(2.0))]:
        lots = max(1, int(rng.lognormal(np.log(300_000), 1.0) / (universe.price[s] * 100)))
        held[int(s)] = lots * 100
    return held


def _devices(rng: np.random.Generator) -> list[Device]:
    """One to three: a phone and/or a PC, sometimes a tablet."""
    first = "phone" if rng.random() < 0.6 else "pc"
    devices = [new_device(rng, first)]
    if rng.random() < 0.55:
        devices.append(new_device(rng, "pc" if first == "phone" else "phone"))
        if rng.random() < 0.25:
            devices.append(new_device(rng, "tablet"))
    return devices
