"""Typed records for the event contract (v1): parsed once at the boundary, trusted inside.

Every record carries `ts_us`, the instant of `ts` in microseconds since the epoch, so that
ordering compares instants rather than strings with different offsets.
"""

from __future__ import annotations

import functools
import ipaddress
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args

import msgspec

from kabuguard.events.instants import ContractError, parse_ts

Mfa = Literal["none", "sms", "email", "totp", "push", "passkey"]
Channel = Literal["web", "app", "api"]
Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
ChangeField = Literal[
    "email", "phone", "password", "mfa", "bank_account", "address", "notification_settings"
]
CHANGE_FIELDS: frozenset[str] = frozenset(get_args(ChangeField))  # what a policy's field lists may name
# Widths the service stores these in (kabuguard/service/storage/models.py): a longer value is
# refused here, naming the field, instead of failing a database write for the whole batch.
# An empty id would name no account: its login or order could get no decision and no rejection.
ID_MAX = 200  # the service stores ids in columns this wide
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX)]
Symbol = Annotated[str, msgspec.Meta(max_length=32)]
FirmName = Annotated[str, msgspec.Meta(max_length=64)]
# Whole numbers that state and the on-disk sort keep as 64-bit integers (msgpack): a larger one
# is refused here, naming the field, not when a long replay spills to disk.
_I64_MAX = 2**63 - 1
Shares = Annotated[int, msgspec.Meta(ge=-_I64_MAX, le=_I64_MAX)]  # a position; short ones are negative
Volume = Annotated[int, msgspec.Meta(ge=0, le=_I64_MAX)]
# A bar's volume in the market's own unit: shares, or a coin's fractions (0.35 BTC) where a coin
# trades. A whole number stays an integer (`_WHOLE` in the reader); a fraction is a float.
BarVolume = Volume | Annotated[float, msgspec.Meta(ge=0, lt=2.0**63)]  # float(_I64_MAX) is 2**63 itself
Quantity = Annotated[int, msgspec.Meta(gt=0, le=_I64_MAX)]  # an order's or a fill's: a sell is a side


_INF = float("inf")


def _finite(**numbers: float | None) -> None:
    """Refuse NaN and infinities (a Parquet float, or 1e400 in JSON): one would poison every
    running sum it entered, silently. A comparison with NaN is false, so NaN fails the test."""
    for name, value in numbers.items():
        if value is not None and not -_INF < value < _INF:
            raise ValueError(f"`{name}` must be a finite number, got {value}")


# A price per share in its currency. Above this it is a corrupt field rather than a share (the
# dearest trade below 1e7 in any currency): its notional would overflow the size baselines.
MAX_PRICE = 1e12


def _prices(**prices: float | None) -> None:
    """Refuse what no share trades at: zero, negative (a negative notional), non-finite (see
    `_finite`) or past `MAX_PRICE`."""
    for name, value in prices.items():
        if value is not None and not 0 < value <= MAX_PRICE:
            raise ValueError(f"`{name}` must be a finite number above 0 and at most {MAX_PRICE:g}, got {value}")


@lru_cache(maxsize=65536)
def canonical_ip(text: str) -> str:
    """One spelling per address, so that one address is one key in every stage: IPv6 compressed
    and lower-case (`2406:DA14:0::5` -> `2406:da14::5`), IPv4-mapped IPv6 as the IPv4 address,
    and no zone (`fe80::1%eth0` -> `fe80::1`: the zone names an interface of the machine that
    wrote it, not part of the address). Called only for text with a colon: dotted quads are
    already written one way. Text that is not an address is left as it is (the network lookup
    calls it unknown)."""
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return text
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else address.compressed


class Holding(msgspec.Struct, frozen=True):
    symbol: Symbol
    qty: Shares


# gc=False: events hold no reference cycles, and a replay keeps millions of them for the sort;
# untracked, they cost the cyclic garbage collector nothing and 16 bytes less each.
class _Event(msgspec.Struct, kw_only=True, tag_field="type", forbid_unknown_fields=True, gc=False):
    event_id: Id
    ts: str
    firm: FirmName | None = None
    # Filled by the reader, never by input: the instant of `ts`, and fields outside the contract.
    ts_us: int = 0
    extra: dict | None = None


class Instrument(_Event, tag="instrument", kw_only=True):
    symbol: Symbol
    name: str | None = None
    market: str | None = None
    currency: str = "JPY"
    shares_outstanding: Volume | None = None
    adv_shares: float | None = None
    last_price: float | None = None

    def __post_init__(self) -> None:
        _finite(adv_shares=self.adv_shares)
        _prices(last_price=self.last_price)


_ACCOUNT_TIMES = ("opened_at", "last_login_at")


class Account(_Event, tag="account", kw_only=True):
    account_id: Id
    opened_at: str | None = None
    holdings: list[Holding] = []
    cash: float = 0.0
    # Contract extension (optional): the last login before the export began, so a replay of a
    # short window still knows which accounts were dormant.
    last_login_at: str | None = None

    def __post_init__(self) -> None:
        # Read here, at the boundary, so that an unreadable one is a rejected line, not an
        # account whose age or dormancy the detectors silently take as unknown. Empty is absent
        # (an export's empty cell), as null is.
        for name in _ACCOUNT_TIMES:
            value = getattr(self, name)
            if value:
                parse_ts(value, name)


class MarketBar(_Event, tag="market_bar", kw_only=True):
    symbol: Symbol
    open: float
    high: float
    low: float
    close: float
    volume: BarVolume

    def __post_init__(self) -> None:
        if not (0 < self.open <= MAX_PRICE and 0 < self.high <= MAX_PRICE and 0 < self.low <= MAX_PRICE
                and 0 < self.close <= MAX_PRICE):  # the hot path of bar-heavy streams: inline
            _prices(open=self.open, high=self.high, low=self.low, close=self.close)
        if type(self.volume) is float and self.volume.is_integer():  # 100.0 is 100, as the reader reads it
            self.volume = int(self.volume)


class Login(_Event, tag="login", kw_only=True):
    account_id: Id
    session_id: str | None = None
    success: bool
    ip: str | None = None
    user_agent: str | None = None
    device_id: str | None = None
    mfa: Mfa = "none"
    channel: Channel = "web"
    # Contract extension (optional): the page the customer came from (HTTP Referer or Origin),
    # so that arrival from a reported phishing site can be recognised.
    referrer: str | None = None

    def __post_init__(self) -> None:
        if self.ip and ":" in self.ip:
            self.ip = canonical_ip(self.ip)


class AccountChange(_Event, tag="account_change", kw_only=True):
    account_id: Id
    session_id: str | None = None
    field: ChangeField
    ip: str | None = None
    device_id: str | None = None

    def __post_init__(self) -> None:
        if self.ip and ":" in self.ip:
            self.ip = canonical_ip(self.ip)


class Order(_Event, tag="order", kw_only=True):
    order_id: str
    account_id: Id
    session_id: str | None = None
    symbol: Symbol
    side: Side
    qty: Quantity
    order_type: OrderType = "market"
    limit_price: float | None = None
    ip: str | None = None
    device_id: str | None = None
    channel: Channel = "web"

    def __post_init__(self) -> None:
        _prices(limit_price=self.limit_price)
        if self.ip and ":" in self.ip:
            self.ip = canonical_ip(self.ip)


class Execution(_Event, tag="execution", kw_only=True):
    order_id: str
    account_id: Id
    symbol: Symbol
    side: Side
    qty: Quantity
    price: float

    def __post_init__(self) -> None:
        _prices(price=self.price)


IndicatorType = Literal["ip", "device", "domain", "url", "asn", "user_agent"]


class Indicator(_Event, tag="indicator", kw_only=True):
    """An indicator shared by another firm or the regulator; `ts` is when it arrived here.

    Feeds state only: detection sees it from its arrival on, never before, so a replay of
    history with the indicators it had received decides as production did.
    """

    indicator_type: IndicatorType
    value: str
    # Who shared it (a firm or the regulator), and the STIX object it came from.
    source: str | None = None
    stix_id: str | None = None
    # Contract extension (optional): the instant from which it counts for no event (the STIX
    # indicator's `valid_until`, or when it was revoked): a line already past it withdraws the value.
    valid_until: str | None = None

    def __post_init__(self) -> None:
        if self.valid_until:  # read here, so that an unreadable one is a rejected line, not a lasting match
            parse_ts(self.valid_until, "valid_until")
        value = self.value.strip()
        if self.indicator_type == "domain":
            value = value.lower().rstrip(".")
        elif self.indicator_type == "ip" and ":" in value:
            value = canonical_ip(value)
        if not value:
            raise ValueError("`value` is empty")
        self.value = value

    # The keyed stages route by these, as they route activity by its address and device.
    @property
    def ip(self) -> str | None:
        return self.value if self.indicator_type == "ip" else None

    @property
    def device_id(self) -> str | None:
        return self.value if self.indicator_type == "device" else None


Event = Instrument | Account | MarketBar | Login | AccountChange | Order | Execution | Indicator

EVENT_TYPES: dict[str, type[_Event]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (Instrument, Account, MarketBar, Login, AccountChange, Order, Execution, Indicator)
}

for _tag, _cls in EVENT_TYPES.items():
    _cls.kind = _tag  # type: ignore[attr-defined]  # a plain attribute: cheaper than the tag lookup

# The events that get a decision; the others only feed state.
DECIDABLE = frozenset({"login", "account_change", "order"})

KNOWN_FIELDS: dict[str, frozenset[str]] = {
    name: frozenset(cls.__struct_fields__) - {"ts_us", "extra"} | {"type"}
    for name, cls in EVENT_TYPES.items()
}


def account_key(event: Login | AccountChange | Order | Execution | Account) -> str:
    """An account's identity across firms: `firm:account_id` in multi-firm feeds."""
    return firm_account_key(event.firm, event.account_id)


def firm_account_key(firm: str | None, account_id: str) -> str:
    return f"{firm}:{account_id}" if firm else account_id


# The market's own data: the same for every firm, whichever firm's export carries it.
MARKET_KINDS = frozenset({"market_bar", "instrument"})


def event_firm(event: Any) -> str | None:
    """The firm an event's identity belongs to: none for the market's data, which every firm's
    export may carry under the same id."""
    return None if event.kind in MARKET_KINDS else event.firm


def event_key(event: Any) -> str:
    """An event's identity across firms, `firm:event_id` in multi-firm feeds (firms number their
    events independently), as the replay keeps one of each and a reader of its decisions, which
    name their `firm`, finds the event's."""
    return firm_account_key(event_firm(event), event.event_id)


def ip_key(event: Any) -> str | None:
    """The ip stage's key: an IPv4 address as it is, an IPv6 address as the /64 around it. A
    /64 is one line (a household's, a server's): its owner's privacy addresses change within it
    daily and whoever holds it may use any of its addresses, so counting accounts or failures per
    IPv6 address would let one source look like many."""
    ip = event.ip
    return _v6_network(ip) if ip and ":" in ip else ip


@functools.lru_cache(maxsize=65_536)
def _v6_network(ip: str) -> str:
    try:
        return ipaddress.IPv6Network(f"{ip}/64", strict=False).compressed
    except ValueError:  # text that is no address (`1.2.3.4:443`): its own key, as before
        return ip


_from_log = msgspec.msgpack.Decoder(Event).decode
_raw_from_log = msgspec.msgpack.Decoder().decode


def log_columns(event: Event) -> dict[str, Any]:
    """What the service's event log keeps beside an event's body, for the console to read by."""
    return {"account_id": getattr(event, "account_id", None), "symbol": getattr(event, "symbol", None),
            "ts_us": event.ts_us}


def from_log(body: bytes) -> Event:
    """An event as the service logged it (msgpack), read back to rebuild state or show it.

    A log outlives versions: an account logged before its `opened_at` and `last_login_at` were
    checked at the boundary may hold one this version refuses. That version took it as unknown,
    so it is dropped here, as it was read then, rather than the whole log becoming unreadable."""
    try:
        return _from_log(body)
    except msgspec.ValidationError:
        raw = _raw_from_log(body)
        if not isinstance(raw, dict) or raw.get("type") != "account":
            raise
        for name in _ACCOUNT_TIMES:
            value = raw.get(name)
            if value:
                try:
                    parse_ts(value, name)
                except ContractError:
                    del raw[name]
        return msgspec.convert(raw, Event)
