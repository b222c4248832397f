"""The regulator's view: the FSA's monthly figures and the most targeted symbols, across firms.

Aggregates what firms shared (`x-kabuguard-monthly-report` and `x-kabuguard-targeted-symbol`
objects of their bundles, or of a TAXII collection they post to): per month, unauthorised
accesses, unauthorised trades, sell and buy amounts and the firms affected, in the FSA's terms;
and the symbols ranked by the value hijacked accounts bought, with how many firms saw them. An
object shared twice (the same id) counts once, in its latest version.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_OKU = 1e8  # the FSA publishes amounts in oku yen (100 million)
# The object types the figures are made of.
STATS_TYPES = ("identity", "x-kabuguard-monthly-report", "x-kabuguard-targeted-symbol")


def latest(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One object per id: its latest `modified` version."""
    newest: dict[str, dict[str, Any]] = {}
    for obj in objects:
        known = newest.get(obj["id"])
        if known is None or obj.get("modified", "") > known.get("modified", ""):
            newest[obj["id"]] = obj
    return list(newest.values())


def aggregate(objects: Iterable[dict[str, Any]], top: int = 10) -> dict[str, Any]:
    """Monthly figures and the `top` targeted symbols from shared objects (JSON-ready)."""
    current = latest(objects)
    firms = {o["id"]: o.get("name", o["id"]) for o in current if o["type"] == "identity"}

    def firm(obj: dict[str, Any]) -> str:
        return firms.get(obj.get("created_by_ref", ""), obj.get("created_by_ref", "unknown"))

    months: dict[str, dict[str, Any]] = {}
    for o in current:
        if o["type"] != "x-kabuguard-monthly-report":
            continue
        m = months.setdefault(o["month"], {"month": o["month"], "firms": set(), "trading_firms": set(),
                                           "unauthorised_access_count": 0, "unauthorised_trade_count": 0,
                                           "sell_amount_jpy": 0.0, "buy_amount_jpy": 0.0})
        m["firms"].add(firm(o))
        if o["unauthorised_trade_count"]:
            m["trading_firms"].add(firm(o))
        for name in ("unauthorised_access_count", "unauthorised_trade_count", "sell_amount_jpy", "buy_amount_jpy"):
            m[name] += o[name]
    symbols: dict[str, dict[str, Any]] = {}
    for o in current:
        if o["type"] != "x-kabuguard-targeted-symbol":
            continue
        s = symbols.setdefault(o["symbol"], {"symbol": o["symbol"], "firms": set(), "accounts": 0, "buy_orders": 0,
                                             "buy_notional_jpy": 0.0, "sell_notional_jpy": 0.0, "first_seen": o["first_seen"],
                                             "last_seen": o["last_seen"]})
        s["firms"].add(firm(o))
        s["accounts"] += len(o.get("accounts", ()))
        s["buy_orders"] += o.get("buy_orders", 0)
        s["buy_notional_jpy"] += o.get("buy_notional_jpy", 0.0)
        s["sell_notional_jpy"] += o.get("sell_notional_jpy", 0.0)
        s["first_seen"], s["last_seen"] = min(s["first_seen"], o["first_seen"]), max(s["last_seen"], o["last_seen"])
    ranked = sorted(symbols.values(), key=lambda s: (-s["buy_notional_jpy"], s["symbol"]))[:top]
    return {
        "months": [{"month": m["month"], "firms_affected": len(m["firms"]),
                    "firms_with_unauthorised_trades": len(m["trading_firms"]),
                    "unauthorised_access_count": m["unauthorised_access_count"],
                    "unauthorised_trade_count": m["unauthorised_trade_count"],
                    "sell_amount_jpy": round(m["sell_amount_jpy"], 2), "buy_amount_jpy": round(m["buy_amount_jpy"], 2),
                    "sell_amount_oku_yen": round(m["sell_amount_jpy"] / _OKU, 4),
                    "buy_amount_oku_yen": round(m["buy_amount_jpy"] / _OKU, 4), "firms": sorted(m["firms"])}
                   for _, m in sorted(months.items())],
        "top_symbols": [{**s, "firms": sorted(s["firms"]), "buy_notional_jpy": round(s["buy_notional_jpy"], 2),
                         "sell_notional_jpy": round(s["sell_notional_jpy"], 2)} for s in ranked],
    }
