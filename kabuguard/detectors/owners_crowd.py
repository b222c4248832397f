"""Owners' crowd: many customers buying one thin stock from their own devices and homes.

Genuine news moves a thin stock the way a pump does: a surge in volume and price, many accounts
buying it within the hour, most of them on a symbol new to them. What a campaign cannot fake is
who is buying: hijacked sessions lean foreign, a news crowd is ordinary customers whose sessions
do not (login log-odds at most the policy's `foreign_session_llr`, 0). Not only the sessions
stage 1 recognises as the owner's own: most of a real crowd is customers with too little login
history to be recognised, whose log-odds sit between the owner's line and 0. When at least
`min_owners` such accounts bought the symbol in the last `window_minutes`, and they are at least
`min_share` of its buyers, a buy into it scores `owners_crowd` (a negative weight): the symbol's
liquidity and market alert are explained by its audience, and each buyer is judged on its own
session. A buyer whose own session is strongly risky stays held: the discount is smaller than
the evidence of a takeover. Known misses: a campaign timed into genuine news.

    >>> from kabuguard.detectors.base import Evidence
    >>> from kabuguard.events.reader import event_from_dict
    >>> crowd = OwnersCrowd({"window_minutes": 60, "min_owners": 3, "min_share": 0.6,
    ...     "weight": -2.5, "foreign_session_llr": 0.0})
    >>> state = crowd.initial()
    >>> def buy(account, minute, session_llr):
    ...     event = event_from_dict({"event_id": f"o{minute}", "type": "order", "account_id": account,
    ...         "ts": f"2025-03-03T10:{minute:02d}:00.000+09:00", "order_id": f"o{minute}",
    ...         "symbol": "9999", "side": "buy", "qty": 100, "order_type": "market"})
    ...     ev = Evidence(); ev.session_llr = session_llr
    ...     crowd.score(event, state, ev); crowd.learn(event, state, ev)
    ...     return ev.findings
    >>> [buy(f"C{n}", n, -4.0) for n in range(3)]  # customers on their own phones
    [[], [], []]
    >>> buy("D", 5, 1.0)  # a fourth on a new laptop: the crowd explains the stock
    [Finding(reason='owners_crowd', weight=-2.5)]
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors._window import drop_expired, renew
from kabuguard.detectors.base import Evidence, Finding, count, duration_us, number, share
from kabuguard.events.model import account_key


_BUY_TIME = itemgetter(0)


class CrowdState(msgspec.Struct):
    # account -> (time of its latest buy, own session), oldest first: a popular name has
    # thousands of buyers an hour, so expiry walks only the expired head and counts are kept.
    buyers: dict[str, tuple[int, bool]] = {}
    owners: int = 0  # buyers on sessions leaning to the owner


class OwnersCrowd:
    name: ClassVar[str] = "owners_crowd"
    stage: ClassVar[str] = "symbol"
    types: ClassVar[frozenset[str]] = frozenset({"order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.window_us = duration_us(params, "window_minutes", self.name)
        self.min_owners = count(params, "min_owners", self.name)
        self.min_share = share(params, "min_share", self.name)
        self.weight = number(params, "weight", self.name)
        self.foreign_session_llr = number(params, "foreign_session_llr", self.name)

    def initial(self) -> CrowdState:
        return CrowdState()

    def score(self, event: Any, state: CrowdState, ev: Evidence) -> None:
        buyers = state.buyers
        if event.side != "buy" or len(buyers) < self.min_owners:
            return
        cutoff = event.ts_us - self.window_us
        # The window's buyers other than this account: all, less the expired head, less itself.
        recent, owners = len(buyers), state.owners
        for t, own in buyers.values():
            if t > cutoff:
                break
            recent, owners = recent - 1, owners - own
        mine = buyers.get(account_key(event))
        if mine is not None and mine[0] > cutoff:
            recent, owners = recent - 1, owners - mine[1]
        if owners >= self.min_owners and owners >= self.min_share * recent:
            ev.findings.append(Finding(self.name, self.weight))

    def learn(self, event: Any, state: CrowdState, ev: Evidence) -> None:
        if event.side != "buy":
            return
        buyers = state.buyers
        state.owners -= sum(own for _, own in drop_expired(buyers, event.ts_us - self.window_us, _BUY_TIME))
        own = ev.session_llr <= self.foreign_session_llr
        previous = renew(buyers, account_key(event), (event.ts_us, own))
        state.owners += own - (previous[1] if previous is not None else 0)
