"""The one protocol every detector follows, and the evidence an event gathers on its way.

A detector belongs to one keyed stage. For each event of the types it handles it first
`score`s the event against its state (which holds only what came strictly before), then
`learn`s from it. Scores are log-odds contributions: positive is evidence of takeover or
manipulation, negative of the customer's own habit; the policy adds them up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from contextvars import ContextVar
from functools import cache
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import msgspec
import numpy as np

from kabuguard.netintel import UNKNOWN, Network

Stage = Literal["account", "ip", "device", "intel", "market", "symbol", "final"]
S = TypeVar("S")


class Finding(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One reason code and its weight in log-odds.

    A struct, not a named tuple: an event makes several, and msgspec builds one in C in a sixth
    of the time, untracked by the cyclic garbage collector (it holds a string and a float).
    """

    reason: str
    weight: float


# Every reason code a finding carries (docs/reason-codes.md): what a policy may name among them
# (`owner_session.habit_findings`) is checked against these, so that a typo does not match nothing.
REASONS = frozenset({
    "new_device", "new_country", "new_asn", "new_ip_range", "new_user_agent", "unfamiliar_login", "unusual_hour",
    "hosting_network", "impossible_travel", "failed_login_burst", "dormant_reactivation",
    "holdings_liquidation", "liquidate_into_thin_stock", "concentrated_thin_position",
    "new_symbol", "new_segment", "unusual_order_size",
    "shared_ip", "shared_device", "credential_stuffing", "ip_reputation", "device_reputation", "shared_indicator",
    "takeover_wave", "thin_stock_buy", "campaign_buy", "dump_into_pump", "sell_into_pump", "symbol_under_pump",
    "sell_into_suspect_buying", "buy_with_suspect_buyers", "owners_crowd",
    "risky_session", "sensitive_change", "contact_takeover", "order_after_risky_change", "owner_session",
    "campaign_member",
})


class Evidence(msgspec.Struct):
    """What the stages know about one event, filled stage by stage in the total order.

    A struct because one is made per event: msgspec builds it in C, with a fresh list for each
    empty-list default, at about half the cost of a Python `__init__`.
    """

    net: Network = UNKNOWN
    # The latest `instrument` record for an order's symbol before this event (reference data).
    instrument: Any = None
    findings: list[Finding] = []
    # Stage 1's risk of the session this event belongs to (the login's log-odds).
    session_llr: float = 0.0
    # A market bar's market factor as of the minutes before it: (index, volume surprise).
    market: tuple[float, float] = (0.0, 0.0)
    # The symbol stage's last known price for an order's symbol.
    price: float | None = None
    # When this order's account first ordered its symbol before (0: never), from the account stage:
    # a per-account fact, so no symbol's state has to remember everyone who ever traded it.
    first_order_us: int = 0
    # The sum of every stage's findings for this event, set by the final stage before learning.
    llr: float = 0.0
    # Alerts raised while processing this event, as contract dicts.
    alerts: list[dict[str, Any]] = []
    # Cross-stage notices raised by this event (e.g. campaign members), for the final stage.
    notes: list[tuple[str, Any]] = []


class Detector(Protocol, Generic[S]):
    """Score an event from state and say why, then learn from it."""

    name: ClassVar[str]
    stage: ClassVar[Stage]
    types: ClassVar[frozenset[str]]

    def initial(self) -> S:
        """Fresh state for a key never seen before."""
        ...

    def score(self, event: Any, state: S, ev: Evidence) -> None:
        """Append findings to `ev.findings`, reading only `state` and earlier stages' evidence."""
        ...

    def learn(self, event: Any, state: S, ev: Evidence) -> None:
        """Fold the event into `state`; called after every detector of the stage has scored."""
        ...


class WindowedDetector(Detector[S], Protocol):
    """A detector that remembers a key's events only for a while: once the latest time its state
    holds is more than `horizon_us` before an event, the state counts for nothing in it. A key
    whose every detector's state is that old scores as a new key would, so the stage forgets it
    (`engine.stages`): an address or a device seen once does not stay in memory, or Redis, for ever.
    A detector without a horizon keeps what it knows for ever (an account's habits)."""

    @property
    def horizon_us(self) -> int:
        """Microseconds."""
        ...

    def latest_us(self, state: S) -> int:
        """The latest event time `state` remembers (0: none)."""
        ...


class BatchDetector(Detector[S], Protocol):
    """A detector of events that come a whole market at a time (market bars, `batch_types`):
    it scores then learns a batch of them in one call, reading and writing its own rows of floats
    (`Store.rows`) beside its per-key state. A batch holds events of one minute and distinct keys
    (`engine.pipeline.bar_batches`), so it decides exactly as one event at a time would."""

    batch_types: ClassVar[frozenset[str]]
    row_stage: ClassVar[str]

    def run_batch(self, events: Sequence[Any], states: Sequence[S], evs: Sequence[Evidence], store: Any) -> None:
        """Score then learn `events`, each with its key's state and its evidence."""
        ...


@cache
def compiled(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """`kernel` compiled to machine code (numba) on its first call, then loaded from numba's cache.

    numba is imported here, not with the detectors: it loads LLVM (a few tenths of a second and
    about 100 MB), which only a process that decides market bars needs."""
    from numba import njit  # noqa: PLC0415

    try:
        return njit(cache=True, nogil=True)(kernel)
    except RuntimeError:  # no writable cache directory (read-only install, no HOME): compile per process
        return njit(nogil=True)(kernel)


def bar_columns(bars: Sequence[Any], high: bool = False) -> tuple[np.ndarray, ...]:
    """A batch of market bars as the kernels read them: times (µs), closes (and with `high` the
    highs) and volumes, as arrays."""
    columns = [np.array([bar.ts_us for bar in bars], dtype=np.int64), np.array([bar.close for bar in bars])]
    if high:
        columns.append(np.array([bar.high for bar in bars]))
    columns.append(np.array([bar.volume for bar in bars], dtype=float))
    return tuple(columns)


# While `unread_keys` builds a detector: the (section, key) pairs it read through `param`.
_reads: ContextVar[set[tuple[int, str]] | None] = ContextVar("kabuguard_param_reads", default=None)


def param(params: dict[str, Any], name: str, detector: str) -> Any:
    """A detector parameter from the policy, with an error that says which one is missing."""
    reads = _reads.get()
    if reads is not None:
        reads.add((id(params), name))
    try:
        return params[name]
    except KeyError:
        raise KeyError(f"policy: detector `{detector}` needs parameter `{name}`") from None


def unread_keys(section: dict[str, Any], params: dict[str, Any],
                builds: Sequence[Callable[[dict[str, Any]], Any]]) -> list[str]:
    """The keys of a policy `section` that no detector built from it (`builds`, given `params`:
    the section and the policy-wide lines) read, and those of the sections inside it that are
    read key by key: a typo (`min_acounts`) that would otherwise leave a threshold as it was."""
    reads: set[tuple[int, str]] = set()
    token = _reads.set(reads)
    try:
        for build in builds:
            build(params)
    finally:
        _reads.reset(token)

    def unread(mapping: dict[str, Any], at: int, where: str) -> list[str]:
        read = {key for section_id, key in reads if section_id == at}
        out = [f"{where}{key}" for key in mapping if key not in read]
        for key, value in mapping.items():
            inner = {k for i, k in reads if i == id(value)} if isinstance(value, dict) and key in read else None
            if inner:  # a section read whole (`field_weights`) has no keys to miss
                out += unread(value, id(value), f"{where}{key}.")
        return out

    return unread(section, id(params), "")


def _key(name: str, detector: str) -> str:
    """A parameter as the policy's detector section spells it: `weights.ip` for `ip` read from
    the section's `weights` (its reader passes the detector as `shared_indicator.weights`)."""
    _, _, inner = detector.partition(".")
    return f"{inner}.{name}" if inner else name


def number(params: dict[str, Any], name: str, detector: str, low: float = -math.inf, high: float = math.inf,
           *, below_high: bool = False) -> float:
    """A weight, share or threshold: a finite number, or a clear error (a quoted `"-inf"` passed
    the policy's own checks as text, then `float()` made it an infinity); in [low, high] (or
    [low, high) `below_high`) where the detector's formula means nothing outside: a share of 1.5
    is never reached, a surge of -1 turns its test off, all silently."""
    value = param(params, name, detector)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{_key(name, detector)}` must be a finite number, got {value!r}")
    if not low <= value <= high or below_high and value == high:
        opening, closing = "(" if low == -math.inf else "[", ")" if below_high or high == math.inf else "]"
        span = f"{opening}{low:g}, {high:g}{closing}"
        raise ValueError(f"`{_key(name, detector)}` must be a number in {span}, got {value!r}")
    return float(value)


def share(params: dict[str, Any], name: str, detector: str) -> float:
    """A part of a whole (of the accounts or buyers counted, of a position, of evidence carried or
    taken back): in [0, 1]."""
    return number(params, name, detector, 0.0, 1.0)


_UNIT_US = {"_minutes": 60_000_000, "_hours": 3_600_000_000, "_days": 86_400_000_000}


def duration_us(params: dict[str, Any], name: str, detector: str) -> int:
    """A window or an age, named for its unit (`window_minutes`, `ttl_hours`, `max_age_days`), in
    microseconds: a number of at least 0, or a clear error."""
    unit = next(us for suffix, us in _UNIT_US.items() if name.endswith(suffix))
    value = number(params, name, detector)
    if value < 0:
        raise ValueError(f"`{_key(name, detector)}` is a duration, it cannot be negative: {value!r}")
    return int(value * unit)


def positive(params: dict[str, Any], name: str, detector: str) -> float:
    """A parameter that divides or is a logarithm's argument: a positive number, or a clear error."""
    value = param(params, name, detector)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`{_key(name, detector)}` must be a positive number, got {value!r}")
    return float(value)


def probability(params: dict[str, Any], name: str, detector: str) -> float:
    """A prior probability that a logarithm reads: strictly between 0 and 1, or a clear error."""
    value = positive(params, name, detector)
    if not value < 1:
        raise ValueError(f"`{_key(name, detector)}` must be a probability below 1, got {value!r}")
    return value


def count(params: dict[str, Any], name: str, detector: str, minimum: int = 1) -> int:
    """A threshold on how many (accounts, failures, orders, logins): a whole number (`5` or `5.0`)
    of at least `minimum`, 1 where the log of a ratio divides by it, or a clear error (`0` once
    loaded, then failed on the first event; `2.5` was read as 2)."""
    value = param(params, name, detector)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{_key(name, detector)}` must be a whole number of at least {minimum}, got {value!r}")
    return value


def names(params: dict[str, Any], name: str, detector: str, known: Collection[str]) -> frozenset[str]:
    """A list of names from a closed vocabulary (`known`: fields, reason codes): a bare string
    would become a set of its letters, and a misspelt name (`emial`) matches nothing, turning off
    what it was meant to turn on."""
    value = param(params, name, detector)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"`{_key(name, detector)}` must be a list of names, got {value!r}")
    _known(value, known, name, detector)
    return frozenset(value)


def weights(params: dict[str, Any], name: str, detector: str, known: Collection[str]) -> dict[str, float]:
    """A mapping of names from a closed vocabulary (`known`) to weights (`field_weights`): a name
    misspelt would leave its own at 0, silently; a name left out weighs 0."""
    value = param(params, name, detector)
    if not isinstance(value, dict):
        raise ValueError(f"`{_key(name, detector)}` must map names ({', '.join(sorted(known))}) to weights, "
                         f"got {value!r}")
    _known(value, known, name, detector)
    return {key: number(value, key, f"{detector}.{name}") for key in value}


def _known(given: Iterable[Any], known: Collection[str], name: str, detector: str) -> None:
    unknown = set(given) - set(known)
    if unknown:
        raise ValueError(f"`{_key(name, detector)}`: unknown name(s) {sorted(map(str, unknown))}; "
                         f"known: {', '.join(sorted(known))}")
