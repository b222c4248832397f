"""Market surveillance: a pump in progress seen in the whole market's one-minute bars.

The 2025 attackers spread their buying over many firms, so no firm saw the crowd in its own
orders; every firm sees the market. Per symbol, from its own bars so far (no look-ahead):

- **pace**: a bar's volume per minute since the symbol's previous bar (at most
  `max_gap_minutes`), so a thin name that trades a few times a day is not a spike each time it
  trades, and an opening auction after the night counts over the night, not over one minute.
  Its baseline is a robust EWMA of log pace (winsorised, with its mean absolute deviation) plus a
  time-of-day profile (`bucket_minutes`), learned over `baseline_minutes` of trading.
- **price**: each bar's log return, less the market's move, in the symbol's own volatility per
  elapsed minute, or, when smaller, in its usual move from one bar to the next within a session:
  a thin name's price moves when it trades, so a climb after twenty silent minutes is not
  discounted as twenty minutes' drift. A decayed sum over `price_window_minutes` catches a climb
  as well as a jump.
  A bar's high counts where its close has already fallen back: a pump over within its first
  minute (`spike_*`).
- **market**: the median one-minute return and median volume surprise of all symbols, from
  minutes *strictly before* the bar's own (`ev.market`, from the market stage before this one:
  `market_factor`), so a rising index or a busy market day does not look like a pump.

An episode opens when volume is at least `onset_volume_multiple` times the symbol's pace for
the time of day (and `onset_volume_z` deviations above it, or `strong_price_volume_z` when the
price rose `strong_price_z` volatility units: the two are evidence together) while the price has risen
`onset_price_z` volatility units and `onset_price_move` in log terms, or when a run of
`sustained_bars` heavy bars none closing lower passes the same tests pooled (a staircase climb),
or when one bar of `spike_volume_multiple` times the pace (and `onset_volume_z`) reached a high
`spike_price_z` volatility units and `spike_price_move` (log) above the last close, however far
its close fell back (a pump bought and sold within the minute, as on a coin exchange after an
announcement; one large order sweeping a thin book reaches far less volume): one
`symbol_alert`. It ends when no bar has reached `end_volume_multiple` for
`end_quiet_minutes` (or after `max_episode_hours`): one more alert with `ended` evidence. A far
stronger leg inside an open episode (the announced pump after the organisers' accumulation
opened it) is alerted once more (`escalated`).
Baselines do not learn during an episode.

Market data cannot tell a pump from genuine news. The alert carries this firm's view of the
buyers: `pump` when a buyer of the symbol at this firm was in a risky session (stage 1's
session risk), else `news_or_unknown`; a later risky buyer upgrades it with one more alert.
Buys into a symbol under an alert score `symbol_under_pump`, strongly only from a risky session
when *other* buyers here were risky too: a news crowd has a customer on a new phone or abroad,
whose one odd login may label the alert but is no evidence against that customer twice.
Sells by accounts that bought shortly before the onset score `dump_into_pump`.

Every bar of the market passes here, so a bar's arithmetic is one compiled loop (numba) over a
batch of bars and the symbols' rows of baselines; episodes and alerts stay in Python.

    >>> from kabuguard.engine import Pipeline
    >>> from kabuguard.events.reader import event_from_dict
    >>> pipeline, found = Pipeline(), []
    >>> def bar(minute, close, volume):
    ...     hh, mm = divmod(9 * 60 + minute, 60)
    ...     return event_from_dict({"event_id": f"b{minute}", "type": "market_bar", "symbol": "9999",
    ...         "ts": f"2025-03-03T{hh:02d}:{mm:02d}:00.000+09:00", "open": close, "high": close,
    ...         "low": close, "close": close, "volume": volume})
    >>> for minute in range(1, 150):  # a quiet morning: 200 shares a minute, a tick either way
    ...     found += pipeline.process(bar(minute, 500.0 + minute % 2, 200))[1]
    >>> found += pipeline.process(bar(150, 540.0, 6000))[1]  # thirty times the pace, +8%
    >>> [(a["reasons"], a["evidence"]["assessment"]) for a in found]
    [(['volume_price_surge', 'news_or_unknown'], 'news_or_unknown')]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
import numpy as np

from kabuguard.detectors.base import (Evidence, Finding, bar_columns, compiled, count, duration_us, number,
                                      positive, share)
from kabuguard.events.model import account_key

if TYPE_CHECKING:
    from kabuguard.engine.store import Store

_MIN_US = 60_000_000
_DAY_MIN = 1440
_MAD_TO_SD = 1.2533  # mean absolute deviation -> standard deviation, for a normal law
_WINSOR = 3.0  # baselines learn from values clipped to this many deviations
_LIMIT = _WINSOR * _MAD_TO_SD


class Episode(msgspec.Struct, gc=False):
    episode_id: str
    started_us: int  # start of the first elevated bar (its ts less one minute)
    onset_ts: str  # the bar that raised the alert
    onset_us: int
    ref_close: float  # the close before the surge
    assessment: str
    last_hot_us: int
    last_hot_ts: str
    peak_multiple: float
    peak_move: float
    escalated: bool = False  # alerted again once for a far stronger leg (`_escalates`)
    peak_high: float = 0.0  # the highest high so far, as a move from `ref_close`


class SymbolTape(msgspec.Struct, gc=False):
    """One symbol's open episode, if any, and this firm's recent buyers of it. Its baselines,
    learned from its bars, are a row of floats (`row_stage`, columns below)."""

    episode: Episode | None = None
    buyers: dict[str, tuple[int, float]] = {}  # account -> (latest buy, its session risk)


# A symbol's row: bars learned, the last bar (time, close, market index then); EWMAs of log pace,
# of its absolute deviation and of squared excess log return per minute; decayed sums of
# standardised excess returns, of their squared weights (their variance under no drift), of
# excess log returns and of volume (about `price_window_minutes` of trading); the current run
# of elevated bars (its start, the close and index before it; then, of those none of which
# closed lower net of the market: how many, their summed log-pace surprise, standardised and
# log returns); the EWMA of squared excess log return from one bar to the next (within
# `max_gap_minutes`: no session break); then the log-pace offset per time-of-day bucket.
(_N, _LAST_US, _LAST_CLOSE, _MARKET_REF, _MU, _DEV, _VAR, _DRIFT, _DRIFT_NORM, _MOVE, _HEAT,
 _SURGE_US, _SURGE_CLOSE, _SURGE_MARKET, _RUN_BARS, _RUN_SURPRISE, _RUN_U, _RUN_MOVE, _TRADE_VAR,
 _PROFILE) = range(20)
# What the kernel tells of each bar: an onset (the run's length, 0 none, -1 for a bar without
# volume or price, which learns nothing), the surge's start, whether the bar keeps an episode hot;
# and the onset's volume surprise, volume z, price z, price move (of the close, and of the high),
# market move, the close before the surge, and the bar's own surprise.
_CODE, _STARTED, _HOT = range(3)
_ON_SURPRISE, _VOLUME_Z, _PRICE_Z, _MOVED, _HIGH_MOVED, _MARKET_MOVED, _REF_CLOSE, _SURPRISE = range(8)


class PumpSurveillance:
    name: ClassVar[str] = "pump_surveillance"
    stage: ClassVar[str] = "symbol"
    types: ClassVar[frozenset[str]] = frozenset({"market_bar", "order"})
    batch_types: ClassVar[frozenset[str]] = frozenset({"market_bar"})
    row_stage: ClassVar[str] = "symbol_tapes"

    def __init__(self, params: dict[str, Any]) -> None:
        p = lambda key: number(params, key, self.name)  # noqa: E731
        for key in ("bucket_minutes", "baseline_minutes", "price_window_minutes", "pace_horizon_minutes",
                    "onset_volume_multiple", "end_volume_multiple", "max_gap_minutes", "onset_volume_z",
                    "onset_price_z", "strong_price_z", "strong_price_volume_z"):  # divisors and logarithms
            positive(params, key, self.name)
        for floor, prior in (("min_sigma_per_minute", "prior_sigma_per_minute"),
                             ("min_log_pace_deviation", "prior_log_pace_deviation")):
            if not max(p(floor), p(prior)) > 0:  # the larger divides a bar's move or pace
                raise ValueError(f"`{floor}` or `{prior}` must be above 0, got {p(floor)!r} and {p(prior)!r}")
        self.bucket_minutes = max(1, int(p("bucket_minutes")))
        buckets = -(-_DAY_MIN // self.bucket_minutes)
        self.on_volume_z = p("onset_volume_z")
        self.on_price_z = p("onset_price_z")
        self.strong_price_z = p("strong_price_z")
        self.strong_volume_z = p("strong_price_volume_z")
        self.end_quiet_us = duration_us(params, "end_quiet_minutes", self.name)
        self.escalate_log_ratio = math.log(positive(params, "escalate_volume_ratio", self.name))
        self.escalate_move = p("escalate_price_move")
        self.max_episode_us = duration_us(params, "max_episode_hours", self.name)
        self.risky_llr = p("risky_session_llr")
        self.assess_us = duration_us(params, "assess_window_minutes", self.name)
        self.min_risky = count(params, "min_risky_buyers", self.name)
        self.min_risky_share = share(params, "min_risky_share", self.name)
        self.under_pump_weight = p("under_pump_weight")
        self.under_surge_weight = p("under_surge_weight")
        self.dump_lookback_us = duration_us(params, "dump_lookback_days", self.name)
        self.dump_weight = p("dump_weight")
        self.dump_weight_unassessed = p("dump_weight_news_or_unknown")
        inv_window = 1.0 / p("price_window_minutes")
        # The kernel's parameters, in the order `_bars` unpacks them.
        self._k = np.array([
            p("max_gap_minutes"), p("pace_horizon_minutes"), p("market_beta"), p("min_sigma_per_minute") ** 2,
            inv_window, math.exp(-1.0 * inv_window), count(params, "warmup_bars", self.name, minimum=0),
            math.log(p("end_volume_multiple")), math.log(p("onset_volume_multiple")), self.on_volume_z, self.on_price_z,
            p("onset_price_move"), count(params, "sustained_bars", self.name), p("sustained_price_move"), p("min_log_pace_deviation"), p("profile_rate"),
            1.0 / p("baseline_minutes"), p("prior_bars"), self.strong_price_z, self.strong_volume_z,
            math.log(positive(params, "spike_volume_multiple", self.name)), p("spike_price_z"), p("spike_price_move"),
        ])
        fresh = np.zeros(_PROFILE + buckets)
        fresh[_DEV], fresh[_VAR] = p("prior_log_pace_deviation"), p("prior_sigma_per_minute") ** 2
        fresh[_TRADE_VAR] = fresh[_VAR]
        self.fresh_row = fresh

    def initial(self) -> SymbolTape:
        return SymbolTape()

    # -- bars ---------------------------------------------------------------------------

    def run_batch(self, events: Sequence[Any], tapes: Sequence[SymbolTape], evs: Sequence[Evidence],
                  store: Store) -> None:
        """Bars of distinct symbols (`KeyedStage.run_batch`): episodes past their end close here,
        the compiled kernel scores and learns every bar, then onsets open episodes and the
        bars of open ones keep them hot."""
        n = len(events)
        active = np.zeros(n, dtype=np.bool_)
        for i, (event, tape) in enumerate(zip(events, tapes)):
            episode = tape.episode
            if episode is not None:
                now = event.ts_us
                if now - episode.last_hot_us >= self.end_quiet_us or now - episode.onset_us >= self.max_episode_us:
                    evs[i].alerts.append(self._ended(event, episode))
                    tape.episode = None
                else:
                    active[i] = True
        symbols = [e.symbol for e in events]
        rows = store.rows(self.row_stage, symbols, self.fresh_row)
        told, values = np.zeros((n, 3), dtype=np.int64), np.empty((n, 8))
        index, busy = evs[0].market  # one minute: one market
        flagged = compiled(_bars)(rows[0], rows[1], *bar_columns(events, high=True), index, busy, active, self._k,
                                  self.bucket_minutes, told, values)
        store.put_rows(self.row_stage, symbols, rows)
        for i in flagged.tolist():
            code, started, hot = told[i].tolist()
            event, tape, bar = events[i], tapes[i], values[i].tolist()
            if code:
                self._onset(event, tape, evs[i], bar, started, code)
            episode = tape.episode
            if episode is not None:
                if hot:
                    episode.last_hot_us, episode.last_hot_ts = event.ts_us, event.ts
                moved = _move(event.close, episode.ref_close)
                high_moved = _move(max(event.high, event.close), episode.ref_close)
                if not code and self._escalates(episode, bar[_SURPRISE], high_moved):
                    evs[i].alerts.append(self._escalation(event, episode, bar[_SURPRISE], moved, high_moved))
                    episode.escalated = True
                if bar[_SURPRISE] > episode.peak_multiple:
                    episode.peak_multiple = bar[_SURPRISE]
                if moved > episode.peak_move:
                    episode.peak_move = moved
                if high_moved > episode.peak_high:
                    episode.peak_high = high_moved

    def _onset(self, event: Any, tape: SymbolTape, ev: Evidence, bar: list[float], started: int,
               run_bars: int) -> None:
        """The alert of an episode's first bar, and the episode it opens."""
        now = event.ts_us
        assessment, risky, buyers = self._assess(tape, now)
        volume_z, price_z = bar[_VOLUME_Z], bar[_PRICE_Z]
        strength = max(min(volume_z / self.on_volume_z, price_z / self.on_price_z),
                       min(volume_z / self.strong_volume_z, price_z / self.strong_price_z))
        episode_id = f"pump-{event.symbol}-{event.event_id}"
        ev.alerts.append({
            "type": "symbol_alert", "symbol": event.symbol,
            "score": round(1.0 - 0.5 / strength, 4),
            "reasons": ["volume_price_surge", assessment],
            "evidence": {
                "episode_id": episode_id,
                "assessment": assessment,
                "volume_multiple": round(math.exp(bar[_ON_SURPRISE]), 2),
                "volume_z": round(volume_z, 2),
                "price_move_pct": round(100 * bar[_MOVED], 2),
                "high_move_pct": round(100 * bar[_HIGH_MOVED], 2),
                "price_z": round(price_z, 2),
                "market_move_pct": round(100 * (math.exp(bar[_MARKET_MOVED]) - 1.0), 3),
                "minutes_since_onset": round((now - started) / _MIN_US, 1),
                "run_bars": run_bars,
                "buyers_here": buyers, "risky_buyers_here": risky,
            },
        })
        tape.episode = Episode(episode_id, started, event.ts, now, bar[_REF_CLOSE], assessment, now, event.ts,
                               0.0, 0.0)

    def _escalates(self, episode: Episode, surprise: float, high_moved: float) -> bool:
        """A far stronger leg inside an open episode, once: a bar reaching `escalate_price_move`
        above the highest price of the episode so far (its highs, closes included, so a pump over
        within its minute counts, and a later close under an earlier spike does not), on volume
        `escalate_volume_ratio` times its heaviest bar. An organiser's accumulation may open the
        episode minutes before the announced pump; the pump itself must not pass unannounced
        inside it. A staircase climb, each bar a little above the last, never qualifies."""
        return (not episode.escalated and surprise >= episode.peak_multiple + self.escalate_log_ratio
                and 1.0 + high_moved >= (1.0 + episode.peak_high) * (1.0 + self.escalate_move))

    def _escalation(self, event: Any, episode: Episode, surprise: float, moved: float,
                    high_moved: float) -> dict[str, Any]:
        return {
            "type": "symbol_alert", "symbol": event.symbol, "score": 1.0,
            "reasons": ["volume_price_surge", episode.assessment],
            "evidence": {
                "episode_id": episode.episode_id, "assessment": episode.assessment, "escalated": True,
                "onset_ts": episode.onset_ts,
                "volume_multiple": round(math.exp(surprise), 2),
                "peak_volume_multiple_before": round(math.exp(episode.peak_multiple), 2),
                "price_move_pct": round(100 * moved, 2),
                "peak_price_move_pct_before": round(100 * episode.peak_move, 2),
                "high_move_pct": round(100 * high_moved, 2),
                "peak_high_move_pct_before": round(100 * episode.peak_high, 2),
                "minutes_since_onset": round((event.ts_us - episode.started_us) / _MIN_US, 1),
            },
        }

    def _ended(self, event: Any, episode: Episode) -> dict[str, Any]:
        last = min(episode.last_hot_us + self.end_quiet_us, episode.onset_us + self.max_episode_us)
        return {
            "type": "symbol_alert", "symbol": event.symbol, "score": 0.0,
            "reasons": ["volume_price_surge_ended"],
            "evidence": {
                "episode_id": episode.episode_id, "ended": True, "assessment": episode.assessment,
                "onset_ts": episode.onset_ts, "last_active_ts": episode.last_hot_ts,
                "minutes_active": round((episode.last_hot_us - episode.started_us) / _MIN_US, 1),
                "ended_by": "quiet" if last == episode.last_hot_us + self.end_quiet_us else "max_episode_hours",
                "peak_volume_multiple": round(math.exp(episode.peak_multiple), 2),
                "peak_price_move_pct": round(100 * episode.peak_move, 2),
                "peak_high_move_pct": round(100 * episode.peak_high, 2),
            },
        }

    # -- orders -------------------------------------------------------------------------

    def _assess(self, state: SymbolTape, now: int, skip: str | None = None,
                since: int | None = None) -> tuple[str, int, int]:
        """`pump` when this firm's recent buyers include risky sessions; else `news_or_unknown`.

        `skip`: an account left out (the buyer being scored); `since`: count buys after this
        instant instead of the last `assess_window_minutes`.
        """
        cutoff = now - self.assess_us if since is None else since
        recent = [llr for key, (ts, llr) in state.buyers.items() if ts > cutoff and key != skip]
        risky = sum(llr >= self.risky_llr for llr in recent)
        return ("pump" if self._pump(risky, len(recent)) else "news_or_unknown"), risky, len(recent)

    def _pump(self, risky: int, buyers: int) -> bool:
        """Enough of this firm's buyers in risky sessions: a news crowd has one odd login, a pump many."""
        return risky >= self.min_risky and risky >= self.min_risky_share * buyers

    def _active(self, state: SymbolTape, now: int) -> Episode | None:
        episode = state.episode
        if episode is None or now - episode.last_hot_us >= self.end_quiet_us \
                or now - episode.onset_us >= self.max_episode_us:
            return None
        return episode

    def score(self, event: Any, state: SymbolTape, ev: Evidence) -> None:
        episode = self._active(state, event.ts_us)
        if episode is None:
            return
        pump = episode.assessment == "pump"
        if event.side == "buy":
            # Only a risky session buying into a pump looks like its author; the others are its
            # audience. And only the *other* buyers make the crowd evidence against it: its own
            # session is scored already (`risky_session`), and one odd login in a news crowd (a
            # new phone, a trip) is a customer's, though it alone may have labelled the alert.
            strong = False
            if ev.session_llr >= self.risky_llr:
                key = account_key(event)
                _, risky, buyers = self._assess(state, event.ts_us, key, episode.started_us - self.assess_us)
                strong = self._pump(risky, buyers)
                if not pump:
                    _, risky, buyers = self._assess(state, event.ts_us, key)
                    if self._pump(risky + 1, buyers + 1):  # the firm's view, this buyer counted once
                        ev.alerts.append({
                            "type": "symbol_alert", "symbol": event.symbol, "score": 1.0,
                            "reasons": ["volume_price_surge", "pump"],
                            "evidence": {"episode_id": episode.episode_id, "assessment": "pump",
                                         "reassessed": True, "onset_ts": episode.onset_ts,
                                         "buyers_here": buyers + 1, "risky_buyers_here": risky + 1},
                        })
            ev.findings.append(Finding("symbol_under_pump",
                                       self.under_pump_weight if strong else self.under_surge_weight))
            return
        bought = state.buyers.get(account_key(event))
        if bought is None or not (episode.started_us - self.dump_lookback_us <= bought[0] < episode.started_us):
            return
        if any(f.reason == "dump_into_pump" for f in ev.findings):
            return  # the campaign detector already holds it
        ev.findings.append(Finding("dump_into_pump", self.dump_weight if pump else self.dump_weight_unassessed))

    def learn(self, event: Any, state: SymbolTape, ev: Evidence) -> None:
        for alert in ev.alerts:
            if alert.get("evidence", {}).get("reassessed") and state.episode is not None:
                state.episode.assessment = "pump"
        if event.side != "buy":
            return
        buyers = state.buyers
        key = account_key(event)
        buyers.pop(key, None)  # re-inserted last: oldest first
        horizon = event.ts_us - max(self.dump_lookback_us, self.assess_us)
        while buyers:
            oldest = next(iter(buyers))
            if buyers[oldest][0] > horizon:
                break
            del buyers[oldest]
        buyers[key] = (event.ts_us, ev.session_llr)


def _move(price: float, ref: float) -> float:
    """`price` as a move from `ref`; none where it passes the range of floats (1e12 after 1e-300)."""
    moved = price / ref - 1.0
    return moved if moved < math.inf else 0.0


def _bars(table: np.ndarray, at: np.ndarray, now_us: np.ndarray, close: np.ndarray, high: np.ndarray,
          volume: np.ndarray, index: float, busy: float, active: np.ndarray, k: np.ndarray, bucket_minutes: int,
          told: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Score then learn each bar against its symbol's row (`table[at[i]]`), in place; what the
    Python side needs of a bar goes to `told` and `values` (columns above), and the bars it
    must see (an onset, or an open episode: `active`) are returned. Compiled: every bar of the
    market passes here. `index`, `busy`: the market as of the minutes before the batch's."""
    (max_gap, horizon, beta, min_var, inv_window, decay_one, warmup, end_multiple, on_multiple,
     on_volume_z, on_price_z, on_move, sustained_bars, sustained_move, min_dev, profile_rate,
     inv_baseline, prior_count, strong_price_z, strong_volume_z, spike_multiple, spike_price_z, spike_move) = (
        k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], k[10], k[11], k[12], k[13], k[14], k[15],
        k[16], k[17], k[18], k[19], k[20], k[21], k[22])
    flagged = np.empty(at.size, dtype=np.int64)
    m = 0
    for i in range(at.size):
        if volume[i] <= 0 or close[i] <= 0:
            told[i, _CODE] = -1
            continue
        row, now, price = table[at[i]], now_us[i], close[i]
        n = row[_N]
        if n != 0.0 and now <= row[_LAST_US]:  # the minute again (a feed re-sent under new ids): seen
            told[i, _CODE] = -1
            continue
        bucket = now // _MIN_US % _DAY_MIN // bucket_minutes
        # -- score
        if n != 0.0:
            gap = (now - row[_LAST_US]) / _MIN_US
            within = gap <= max_gap  # no session break in between
            if gap > max_gap:
                gap = max_gap
            elif gap < 1.0:
                gap = 1.0
            ratio = price / row[_LAST_CLOSE]
            # A ratio past the range of floats (1e300 after 1e-300) is no measurable move.
            excess = math.log(ratio) - beta * (index - row[_MARKET_REF]) if 0.0 < ratio < math.inf else 0.0
            var = row[_VAR]
            if var < min_var:
                var = min_var
            spread = var if gap == 1.0 else var * gap
            if within and gap > 1.0 and n >= warmup:
                # A thin name's price moves when it trades, not with the clock: a move after a
                # silence is judged against its usual move from one trade to the next, when less.
                per_trade = row[_TRADE_VAR] if row[_TRADE_VAR] > var else var
                if per_trade < spread:
                    spread = per_trade
            scale = math.sqrt(spread)
            u = excess / scale
            decay = decay_one if gap == 1.0 else math.exp(-gap * inv_window)
        else:
            gap, excess, u, decay, scale = max_gap, 0.0, 0.0, 0.0, 1.0  # a first bar: no return to scale
            within = False
        pace = math.log(volume[i] / (gap if gap < horizon else horizon))
        surprise = pace - row[_MU] - row[_PROFILE + bucket]
        if busy > 0.0:
            surprise -= busy
        values[i, _SURPRISE] = surprise
        code = 0
        if not (n < warmup or surprise < end_multiple or active[i]):
            dev = row[_DEV] if row[_DEV] > min_dev else min_dev
            if surprise >= on_multiple:
                volume_z = surprise / (_MAD_TO_SD * dev)
                drift = row[_DRIFT] * decay + u
                price_z = drift / math.sqrt(row[_DRIFT_NORM] * decay * decay + 1.0)
                if u > price_z:
                    price_z = u
                move = row[_MOVE] * decay + excess
                if excess > move:
                    move = excess
                heavy = volume_z >= on_volume_z or (volume_z >= strong_volume_z and price_z >= strong_price_z)
                if heavy and price_z >= on_price_z and move >= on_move:
                    code = 1
                    values[i, _ON_SURPRISE], values[i, _VOLUME_Z], values[i, _PRICE_Z] = surprise, volume_z, price_z
            if code == 0 and excess >= 0.0 and row[_RUN_BARS] + 1 >= sustained_bars:
                # Buying spread over consecutive heavy bars, none closing lower: the run's volume
                # and price pooled, so a steady climb of no single extreme minute is not missed.
                run = int(row[_RUN_BARS]) + 1
                pooled = (row[_RUN_SURPRISE] + surprise) / run
                volume_z = pooled / (_MAD_TO_SD * dev)
                price_z = (row[_RUN_U] + u) / math.sqrt(run)
                heavy = volume_z >= on_volume_z or (volume_z >= strong_volume_z and price_z >= strong_price_z)
                if pooled >= on_multiple and heavy and price_z >= on_price_z \
                        and row[_RUN_MOVE] + excess >= sustained_move:
                    code = run
                    values[i, _ON_SURPRISE], values[i, _VOLUME_Z], values[i, _PRICE_Z] = pooled, volume_z, price_z
            if code == 0 and n != 0.0 and surprise >= spike_multiple and high[i] > price:
                # Bought and sold within the minute: the high tells what the close no longer does.
                # Only a market rise is netted out: a bar's high is at least its open, about the last
                # close, so adding back a falling market (read a minute late) would make a spike.
                top = high[i] / row[_LAST_CLOSE]
                market = beta * (index - row[_MARKET_REF])
                spike = math.log(top) - (market if market > 0.0 else 0.0) if 0.0 < top < math.inf else 0.0
                spike_z = spike / scale  # this bar's scale (volatility over its gap): n != 0 here
                volume_z = surprise / (_MAD_TO_SD * dev)
                if volume_z >= on_volume_z and spike >= spike_move and spike_z >= spike_price_z:
                    code = 1
                    values[i, _ON_SURPRISE], values[i, _VOLUME_Z], values[i, _PRICE_Z] = surprise, volume_z, spike_z
            if code:
                surging = row[_SURGE_US] != 0.0
                told[i, _STARTED] = int(row[_SURGE_US]) if surging else now - _MIN_US
                ref = row[_SURGE_CLOSE] if surging else row[_LAST_CLOSE]
                values[i, _REF_CLOSE], values[i, _MOVED] = ref, price / ref - 1.0
                peak = (high[i] if high[i] > price else price) / ref
                values[i, _HIGH_MOVED] = peak - 1.0 if peak < math.inf else 0.0  # past the floats: no move
                values[i, _MARKET_MOVED] = index - (row[_SURGE_MARKET] if surging else row[_MARKET_REF])
        told[i, _CODE] = code
        # -- learn
        if n != 0.0:
            row[_DRIFT] = row[_DRIFT] * decay + u
            row[_DRIFT_NORM] = row[_DRIFT_NORM] * decay * decay + 1.0
            row[_MOVE] = row[_MOVE] * decay + excess
        heat = row[_HEAT] = row[_HEAT] * decay + volume[i]
        warm = n >= warmup
        if warm and surprise >= end_multiple:
            if row[_SURGE_US] == 0.0:
                row[_SURGE_US], row[_SURGE_CLOSE], row[_SURGE_MARKET] = now - _MIN_US, row[_LAST_CLOSE], row[_MARKET_REF]
            if excess >= 0.0:
                row[_RUN_BARS] += 1.0
                row[_RUN_SURPRISE] += surprise
                row[_RUN_U] += u
                row[_RUN_MOVE] += excess
            elif row[_RUN_BARS] != 0.0:  # a heavy bar that closed lower: the buying was not one-sided
                row[_RUN_BARS] = row[_RUN_SURPRISE] = row[_RUN_U] = row[_RUN_MOVE] = 0.0
        else:
            row[_SURGE_US] = 0.0
            row[_RUN_BARS] = row[_RUN_SURPRISE] = row[_RUN_U] = row[_RUN_MOVE] = 0.0
        if active[i] or code:
            # Still hot while the volume of the last few minutes runs above the usual pace.
            told[i, _HOT] = math.log(heat * inv_window) + surprise - pace >= end_multiple
            flagged[m] = i
            m += 1
        elif n != 0.0:
            # Baselines learn only outside episodes, from winsorised values: a pump never
            # becomes the symbol's habit, and a lasting change of pace is still followed.
            mu, dev, offset = row[_MU], row[_DEV], row[_PROFILE + bucket]
            raw = pace - mu - offset
            limit = (dev if dev > min_dev else min_dev) * _LIMIT
            d = limit if raw > limit else (-limit if raw < -limit else raw)
            if warm:
                row[_PROFILE + bucket] = offset + profile_rate * d
            rate = gap * inv_baseline  # 1 - exp(-gap / baseline), gap << baseline
            fast = 1.0 / (n + 1.0)
            row[_MU] = mu + (fast if fast > rate else rate) * d
            slow = 1.0 / (n + prior_count)
            if slow < rate:
                slow = rate
            row[_DEV] = dev + slow * ((d if d > 0.0 else -d) - dev)
            var = row[_VAR]
            sq = excess * excess / gap
            cap = _WINSOR * _WINSOR * (var if var > min_var else min_var)
            row[_VAR] = var + slow * ((sq if sq < cap else cap) - var)
            if within:
                trade_var = row[_TRADE_VAR]
                sq = excess * excess
                cap = _WINSOR * _WINSOR * (trade_var if trade_var > min_var else min_var)
                row[_TRADE_VAR] = trade_var + slow * ((sq if sq < cap else cap) - trade_var)
        else:
            row[_MU] = pace
        row[_N] = n + 1.0
        row[_LAST_US], row[_LAST_CLOSE], row[_MARKET_REF] = now, price, index
    return flagged[:m]
