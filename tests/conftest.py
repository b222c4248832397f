"""Small, readable event streams for the core's tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

HOME_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


def ts(day: int, hour: int, minute: int, second: int = 0) -> str:
    return f"2025-03-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.000+09:00"


class Stream:
    """Builds contract events with sensible defaults, in the order they are added."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._n = 0

    def add(self, kind: str, when: str, **fields: Any) -> dict[str, Any]:
        self._n += 1
        event = {"event_id": fields.pop("event_id", f"{kind[:2]}-{self._n:05d}"), "type": kind, "ts": when, **fields}
        self.events.append(event)
        return event

    def instrument(self, symbol: str, adv: float, price: float, market: str = "TSE Prime") -> None:
        self.add("instrument", ts(1, 8, 0), symbol=symbol, name=f"Co {symbol}", market=market,
                 currency="JPY", shares_outstanding=int(adv * 400), adv_shares=adv, last_price=price)

    def login(self, when: str, account: str, ip: str, device: str, success: bool = True,
              session: str | None = None, ua: str = HOME_UA) -> dict[str, Any]:
        return self.add("login", when, account_id=account, session_id=session or f"s-{self._n + 1}",
                        success=success, ip=ip, user_agent=ua, device_id=device, mfa="sms", channel="web")

    def order(self, when: str, account: str, symbol: str, side: str, qty: int, ip: str, device: str,
              session: str | None = None) -> dict[str, Any]:
        return self.add("order", when, order_id=f"ord-{self._n + 1}", account_id=account, session_id=session,
                        symbol=symbol, side=side, qty=qty, order_type="market", ip=ip, device_id=device, channel="web")

    def write(self, path: Path) -> Path:
        path.write_text("".join(json.dumps(e) + "\n" for e in self.events))
        return path


def brokerage(attack: bool = True) -> Stream:
    """Ten customers with two weeks of habits; optionally a 2025-style attack on day 20."""
    s = Stream()
    s.instrument("7203", adv=2e7, price=2800.0)
    s.instrument("9999", adv=20_000, price=300.0, market="TSE Growth")
    for a in range(10):
        s.add("account", ts(1, 8, 0), account_id=f"A{a}", holdings=[{"symbol": "7203", "qty": 1000}], cash=1e6)
    for day in range(1, 20):
        for a in range(10):
            ip, dev = f"126.1.{a}.5", f"dev-{a}"
            login = s.login(ts(day, 20, a), f"A{a}", ip, dev)
            s.order(ts(day, 20, a, 30), f"A{a}", "7203", "buy", 100, ip, dev, session=login["session_id"])
    if attack:
        for a in range(6):
            ip, dev = f"45.32.1.{a}", f"atk-{a}"
            login = s.login(ts(20, 10, 3 * a), f"A{a}", ip, dev)
            s.order(ts(20, 10, 3 * a + 1), f"A{a}", "7203", "sell", 1000, ip, dev, session=login["session_id"])
            s.order(ts(20, 10, 3 * a + 2), f"A{a}", "9999", "buy", 5000, ip, dev, session=login["session_id"])
    return s


@pytest.fixture
def stream() -> Stream:
    return brokerage()


@pytest.fixture(scope="session")
def three_firms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated run at three firms, replayed: sim/ (events, labels) and run/ (decisions, alerts)."""
    from kabuguard.replay import replay
    from kabuguard.sim import Config, simulate

    root = tmp_path_factory.mktemp("three_firms")
    simulate(Config(accounts=600, days=10, seed=7, firms=3, symbols=40), root / "sim")
    replay([root / "sim" / "events"], root / "run", quiet=True)
    return root
