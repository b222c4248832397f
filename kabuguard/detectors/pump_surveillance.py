"""Market surveillance: a pump in progress seen in the whole market's one-minute bars.

The 2025 attackers spread their buying over many firms, so no firm saw the crowd in its own
orders; every firm sees the market. Per symbol, from its own bars so far (no look-ahead):

- **pace**: a bar's volume per minute since the symbol's previous bar (at most
  `max_gap_minutes`), so a thin name that trades a few times a day is not a spike each time it
  trades, and an opening auction after the night counts over the night, not over one minute.
  Its baseline is a robust EWMA of log pace (winsorised, with its mean absolute deviation) plus a
  time-of-day profile (`bucket_minutes`), learned over `baseline_minutes` of trading.
- **price**: each bar's log return, less the market's move, in the symbol's own volatility per
  elapsed minute; a decayed sum over `price_window_minutes` catches a climb as well as a jump.
- **market**: the median one-minute return and median volume surprise of all symbols, from
  minutes *strictly before* the bar's own (`ev.market`, from the market stage before this one:
  `market_factor`), so a rising index or a busy market day does not look like a pump.

An episode opens when volume is at least `onset_volume_multiple` times the symbol's pace for
the time of day (and `onset_volume_z` deviations above it) while the price has risen
`onset_price_z` volatility units and `onset_price_move` in log terms, or when a run of
`sustained_bars` heavy bars none closing lower passes the same tests pooled (a staircase climb):
one `symbol_alert`. It ends when no bar has reached `end_volume_multiple` for
`end_quiet_minutes` (or after `max_episode_hours`): one more alert with `ended` evidence.
Baselines do not learn during an episode.

Market data cannot tell a pump from genuine news. The alert carries this firm's view of the
buyers: `pump` when a buyer of the symbol at this firm was in a risky session (stage 1's
session risk), else `news_or_unknown`; a later risky buyer upgrades it with one more alert.
Buys into a symbol under an alert score `symbol_under_pump`, strongly only from a risky session
when *other* buyers here were risky too: a news crowd has a customer on a new phone or abroad,
whose one odd login may label the alert but is no evidence against that customer twice.
Sells by accounts that bought shortly before the onset score `dump_into_pump`.

    >>> from kabuguard.events.reader import event_from_dict
    >>> from kabuguard.policy import load_policy
    >>> detector = PumpSurveillance(load_policy().detectors["pump_surveillance"])
    >>> state, found = detector.initial(), []
    >>> def bar(minute, close, volume):
    ...     hh, mm = divmod(9 * 60 + minute, 60)
    ...     return event_from_dict({"event_id": f"b{minute}", "type": "market_bar", "symbol": "9999",
    ...         "ts": f"2025-03-03T{hh:02d}:{mm:02d}:00.000+09:00", "open": close, "high": close,
    ...         "low": close, "close": close, "volume": volume})
    >>> for minute in range(1, 150):  # a quiet morning: 200 shares a minute, a tick either way
    ...     ev, event = Evidence(), bar(minute, 500.0 + minute % 2, 200)
    ...     detector.score(event, state, ev)
    ...     detector.learn(event, state, ev)
    ...     found += ev.alerts
    >>> ev = Evidence()
    >>> detector.score(bar(150, 540.0, 6000), state, ev)  # thirty times the pace, +8%
    >>> [(a["reasons"], a["evidence"]["assessment"]) for a in found + ev.alerts]
    [(['volume_price_surge', 'news_or_unknown'], 'news_or_unknown')]
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, param
from kabuguard.events.model import account_key

_MIN_US = 60_000_000
_DAY_MIN = 1440
_MAD_TO_SD = 1.2533  # mean absolute deviation -> standard deviation, for a normal law
_WINSOR = 3.0  # baselines learn from values clipped to this many deviations
_LIMIT = _WINSOR * _MAD_TO_SD
_log, _exp, _sqrt = math.log, math.exp, math.sqrt


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


class SymbolTape(msgspec.Struct, gc=False):
    """One symbol's baselines (learned from its bars) and its open episode, if any."""

    n: int = 0  # bars learned
    last_us: int = 0
    last_close: float = 0.0
    market_ref: float = 0.0  # the market index as read at the previous bar
    mu: float = 0.0  # EWMA of log pace
    dev: float = 0.0  # EWMA of |log pace - expected|
    var: float = 0.0  # EWMA of squared excess log return per minute
    profile: list[float] = []  # log-pace offset per time-of-day bucket
    drift: float = 0.0  # decayed sum of standardised excess returns
    drift_norm: float = 0.0  # decayed sum of squared weights (its variance under no drift)
    move: float = 0.0  # decayed sum of excess log returns
    heat: float = 0.0  # decayed sum of volume: about `price_window_minutes` of trading
    surge_us: int = 0  # start of the current run of elevated bars, 0 if none
    surge_close: float = 0.0  # the close before that run
    surge_market: float = 0.0  # the market index then
    # The current run of consecutive elevated bars none of which closed lower (net of the
    # market): how many, and their summed log-pace surprise, standardised and log returns.
    run_bars: int = 0
    run_surprise: float = 0.0
    run_u: float = 0.0
    run_move: float = 0.0
    episode: Episode | None = None
    buyers: dict[str, tuple[int, float]] = {}  # account -> (latest buy, its session risk)


class PumpSurveillance:
    name: ClassVar[str] = "pump_surveillance"
    stage: ClassVar[str] = "symbol"
    types: ClassVar[frozenset[str]] = frozenset({"market_bar", "order"})

    def __init__(self, params: dict[str, Any]) -> None:
        p = lambda key: float(param(params, key, self.name))  # noqa: E731
        self.inv_baseline = 1.0 / p("baseline_minutes")
        self.max_gap = p("max_gap_minutes")
        self.horizon = p("pace_horizon_minutes")
        self.bucket_minutes = int(p("bucket_minutes"))
        self.buckets = -(-_DAY_MIN // self.bucket_minutes)
        self.profile_rate = p("profile_rate")
        self.warmup = int(p("warmup_bars"))
        self.prior_count = p("prior_bars")
        self.prior_dev = p("prior_log_pace_deviation")
        self.min_dev = p("min_log_pace_deviation")
        self.prior_var = p("prior_sigma_per_minute") ** 2
        self.min_var = p("min_sigma_per_minute") ** 2
        self.window = p("price_window_minutes")
        self.inv_window = 1.0 / self.window
        self.on_multiple = math.log(p("onset_volume_multiple"))
        self.on_volume_z = p("onset_volume_z")
        self.on_price_z = p("onset_price_z")
        self.on_move = p("onset_price_move")
        self.sustained_bars = int(p("sustained_bars"))
        self.sustained_move = p("sustained_price_move")
        self.end_multiple = math.log(p("end_volume_multiple"))
        self.end_quiet_us = int(p("end_quiet_minutes") * _MIN_US)
        self.max_episode_us = int(p("max_episode_hours") * 60 * _MIN_US)
        self.beta = p("market_beta")
        self.risky_llr = p("risky_session_llr")
        self.assess_us = int(p("assess_window_minutes") * _MIN_US)
        self.min_risky = int(p("min_risky_buyers"))
        self.min_risky_share = p("min_risky_share")
        self.under_pump_weight = p("under_pump_weight")
        self.under_surge_weight = p("under_surge_weight")
        self.dump_lookback_us = int(p("dump_lookback_days") * 1440 * _MIN_US)
        self.dump_weight = p("dump_weight")
        self.dump_weight_unassessed = p("dump_weight_news_or_unknown")
        # The bar path's constants, unpacked once per bar (cheaper than attribute lookups).
        self._score_k = (self.max_gap, self.horizon, self.bucket_minutes, self.beta, self.min_var, self.inv_window)
        self._learn_k = (self.warmup, self.end_multiple, self.min_dev, self.profile_rate, self.inv_baseline,
                         self.prior_count, self.min_var)
        self._decay_one = _exp(-1.0 * self.inv_window)  # the price window's decay over one minute
        # What scoring a bar computed, for learning the same bar right after (not state).
        self._bar: tuple | None = None

    def initial(self) -> SymbolTape:
        return SymbolTape(dev=self.prior_dev, var=self.prior_var, profile=[0.0] * self.buckets)

    # -- scoring ------------------------------------------------------------------------

    def score(self, event: Any, state: SymbolTape, ev: Evidence) -> None:
        if event.kind != "market_bar":
            self._score_order(event, state, ev)
            return
        now = event.ts_us
        episode = state.episode
        if episode is not None and (now - episode.last_hot_us >= self.end_quiet_us
                                    or now - episode.onset_us >= self.max_episode_us):
            ev.alerts.append(self._ended(event, episode))
            episode = None
        volume, close = event.volume, event.close
        if volume <= 0 or close <= 0:
            self._bar = None
            return
        index, busy = ev.market
        max_gap, horizon, bucket_minutes, beta, min_var, inv_window = self._score_k
        n = state.n
        bucket = now // _MIN_US % _DAY_MIN // bucket_minutes
        if n:
            gap = (now - state.last_us) / _MIN_US
            if gap > max_gap:
                gap = max_gap
            elif gap < 1.0:
                gap = 1.0
            excess = _log(close / state.last_close) - beta * (index - state.market_ref)
            var = state.var
            if var < min_var:
                var = min_var
            if gap == 1.0:  # most bars of a traded name: no multiply, no exp
                u, decay = excess / _sqrt(var), self._decay_one
            else:
                u, decay = excess / _sqrt(var * gap), _exp(-gap * inv_window)
        else:
            gap, excess, u, decay = max_gap, 0.0, 0.0, 0.0
        pace = _log(volume / (gap if gap < horizon else horizon))
        surprise = pace - state.mu - state.profile[bucket]
        if busy > 0.0:
            surprise -= busy
        self._bar = bar = (event, gap, pace, bucket, surprise, excess, u, decay, index)
        if n < self.warmup or surprise < self.end_multiple or episode is not None:
            return
        dev = state.dev if state.dev > self.min_dev else self.min_dev
        if surprise >= self.on_multiple:
            volume_z = surprise / (_MAD_TO_SD * dev)
            drift = state.drift * decay + u
            price_z = drift / math.sqrt(state.drift_norm * decay * decay + 1.0)
            if u > price_z:
                price_z = u
            move = state.move * decay + excess
            if excess > move:
                move = excess
            if volume_z >= self.on_volume_z and price_z >= self.on_price_z and move >= self.on_move:
                self._onset(event, state, ev, bar, surprise, volume_z, price_z, 1)
                return
        if excess >= 0.0 and state.run_bars + 1 >= self.sustained_bars:
            self._sustained(event, state, ev, bar, dev)

    def _sustained(self, event: Any, state: SymbolTape, ev: Evidence, bar: tuple, dev: float) -> None:
        """Buying spread over consecutive heavy bars, none closing lower: the run's volume and
        price pooled, so a steady climb on several times the pace is not missed because no
        single minute of it is extreme."""
        _, _, _, _, surprise, excess, u, _, _ = bar
        k = state.run_bars + 1
        pooled = (state.run_surprise + surprise) / k
        volume_z = pooled / (_MAD_TO_SD * dev)
        price_z = (state.run_u + u) / _sqrt(k)
        if pooled >= self.on_multiple and volume_z >= self.on_volume_z and price_z >= self.on_price_z \
                and state.run_move + excess >= self.sustained_move:
            self._onset(event, state, ev, bar, pooled, volume_z, price_z, k)

    def _onset(self, event: Any, state: SymbolTape, ev: Evidence, bar: tuple,
               surprise: float, volume_z: float, price_z: float, run_bars: int) -> None:
        now = event.ts_us
        surging = state.surge_us != 0
        started = state.surge_us if surging else now - _MIN_US
        moved = event.close / (state.surge_close if surging else state.last_close) - 1.0
        market_moved = bar[-1] - (state.surge_market if surging else state.market_ref)
        assessment, risky, buyers = self._assess(state, now)
        strength = min(volume_z / self.on_volume_z, price_z / self.on_price_z)
        ev.alerts.append({
            "type": "symbol_alert", "symbol": event.symbol,
            "score": round(1.0 - 0.5 / strength, 4),
            "reasons": ["volume_price_surge", assessment],
            "evidence": {
                "episode_id": f"pump-{event.symbol}-{event.event_id}",
                "assessment": assessment,
                "volume_multiple": round(math.exp(surprise), 2),
                "volume_z": round(volume_z, 2),
                "price_move_pct": round(100 * moved, 2),
                "price_z": round(price_z, 2),
                "market_move_pct": round(100 * (math.exp(market_moved) - 1.0), 3),
                "minutes_since_onset": round((now - started) / _MIN_US, 1),
                "run_bars": run_bars,
                "buyers_here": buyers, "risky_buyers_here": risky,
            },
        })

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
            },
        }

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

    def _score_order(self, event: Any, state: SymbolTape, ev: Evidence) -> None:
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

    # -- learning -----------------------------------------------------------------------

    def learn(self, event: Any, state: SymbolTape, ev: Evidence) -> None:
        if event.kind != "market_bar":
            self._learn_order(event, state, ev)
            return
        bar = self._bar
        self._bar = None
        if ev.alerts:
            self._open_or_close(event, state, ev)
        if bar is None or bar[0] is not event:
            return
        _, gap, pace, bucket, surprise, excess, u, decay, index = bar
        now = event.ts_us
        n = state.n
        if n:
            state.drift = state.drift * decay + u
            state.drift_norm = state.drift_norm * decay * decay + 1.0
            state.move = state.move * decay + excess
        warmup, end_multiple, min_dev, profile_rate, inv_baseline, prior_count, min_var = self._learn_k
        state.heat = heat = state.heat * decay + event.volume
        warm = n >= warmup
        if warm and surprise >= end_multiple:
            if not state.surge_us:
                state.surge_us, state.surge_close, state.surge_market = now - _MIN_US, state.last_close, state.market_ref
            if excess >= 0.0:
                state.run_bars += 1
                state.run_surprise += surprise
                state.run_u += u
                state.run_move += excess
            elif state.run_bars:
                self._end_run(state)
        else:
            if state.surge_us:
                state.surge_us = 0
            if state.run_bars:
                self._end_run(state)
        episode = state.episode
        if episode is not None:
            # Still hot while the volume of the last few minutes runs above the usual pace.
            if _log(heat * self.inv_window) + surprise - pace >= end_multiple:
                episode.last_hot_us, episode.last_hot_ts = now, event.ts
            if surprise > episode.peak_multiple:
                episode.peak_multiple = surprise
            moved = event.close / episode.ref_close - 1.0
            if moved > episode.peak_move:
                episode.peak_move = moved
        elif n:
            # Baselines learn only outside episodes, from winsorised values: a pump never
            # becomes the symbol's habit, and a lasting change of pace is still followed.
            mu, dev, profile = state.mu, state.dev, state.profile
            offset = profile[bucket]
            raw = pace - mu - offset
            limit = (dev if dev > min_dev else min_dev) * _LIMIT
            d = limit if raw > limit else (-limit if raw < -limit else raw)
            if warm:
                profile[bucket] = offset + profile_rate * d
            rate = gap * inv_baseline  # 1 - exp(-gap / baseline), gap << baseline
            fast = 1.0 / (n + 1.0)
            state.mu = mu + (fast if fast > rate else rate) * d
            slow = 1.0 / (n + prior_count)
            if slow < rate:
                slow = rate
            state.dev = dev + slow * ((d if d > 0.0 else -d) - dev)
            var = state.var
            sq = excess * excess / gap
            cap = _WINSOR * _WINSOR * (var if var > min_var else min_var)
            state.var = var + slow * ((sq if sq < cap else cap) - var)
        else:
            state.mu = pace
        state.n = n + 1
        state.last_us = now
        state.last_close = event.close
        state.market_ref = index

    @staticmethod
    def _end_run(state: SymbolTape) -> None:
        """A heavy bar that closed lower, or a bar at the usual pace: the buying was not one-sided."""
        state.run_bars, state.run_surprise, state.run_u, state.run_move = 0, 0.0, 0.0, 0.0

    def _open_or_close(self, event: Any, state: SymbolTape, ev: Evidence) -> None:
        """Open the episode this bar's onset alert announced, or close the one it ended."""
        for alert in ev.alerts:
            if alert["type"] != "symbol_alert" or alert.get("symbol") != event.symbol:
                continue
            evidence = alert.get("evidence", {})
            if evidence.get("ended"):
                state.episode = None
            elif "volume_multiple" in evidence:
                surging = state.surge_us != 0
                state.episode = Episode(
                    evidence["episode_id"], state.surge_us if surging else event.ts_us - _MIN_US, event.ts,
                    event.ts_us, state.surge_close if surging else state.last_close,
                    evidence["assessment"], event.ts_us, event.ts, 0.0, 0.0)

    def _learn_order(self, event: Any, state: SymbolTape, ev: Evidence) -> None:
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
