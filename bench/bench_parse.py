"""Parsing the contract at the boundary: msgspec (what the reader uses) against pydantic.

Run: .venv/bin/python bench/bench_parse.py [--lines N]
Prints lines per second for each parser over the same synthetic JSONL lines (logins and orders,
validating the same types), with and without an unknown field on every line (the reader's slow
path keeps it). Not a test: it reports figures.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Annotated, Literal, Union

import msgspec
import pydantic

from kabuguard.events.reader import decode_line


def _lines(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        if i % 3:
            row = {"type": "login", "event_id": f"l{i}", "ts": "2025-03-21T09:14:03.120+09:00",
                   "account_id": f"A{i % 5000}", "session_id": f"s{i}", "success": True,
                   "ip": f"126.1.{i % 250}.{i % 200}", "user_agent": "Mozilla/5.0 (Windows NT 10.0) Chrome/120",
                   "device_id": f"d{i % 9000}", "mfa": "sms", "channel": "web", "vendor_score": 0.1}
        else:
            row = {"type": "order", "event_id": f"o{i}", "ts": "2025-03-21T09:15:00.000+09:00",
                   "order_id": f"o{i}", "account_id": f"A{i % 5000}", "session_id": f"s{i}", "symbol": "7203",
                   "side": "buy", "qty": 100, "order_type": "limit", "limit_price": 2800.0,
                   "ip": "126.1.2.3", "device_id": "d1", "channel": "web", "vendor_score": 0.1}
        out.append(json.dumps(row).encode())
    return out


class _P(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    event_id: str
    ts: pydantic.AwareDatetime


class PLogin(_P):
    type: Literal["login"]
    account_id: str
    session_id: str | None = None
    success: bool
    ip: str | None = None
    user_agent: str | None = None
    device_id: str | None = None
    mfa: Literal["none", "sms", "email", "totp", "push", "passkey"] = "none"
    channel: Literal["web", "app", "api"] = "web"


class POrder(_P):
    type: Literal["order"]
    order_id: str
    account_id: str
    session_id: str | None = None
    symbol: str
    side: Literal["buy", "sell"]
    qty: int
    order_type: Literal["market", "limit"] = "market"
    limit_price: float | None = None
    ip: str | None = None
    device_id: str | None = None
    channel: Literal["web", "app", "api"] = "web"


_adapter = pydantic.TypeAdapter(Annotated[Union[PLogin, POrder], pydantic.Field(discriminator="type")])


def _rate(parse, lines: list[bytes]) -> float:
    start = time.perf_counter()
    for line in lines:
        parse(line)
    return len(lines) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=300_000)
    lines = _lines(parser.parse_args().lines)
    plain = [line.replace(b', "vendor_score": 0.1', b"") for line in lines]
    results = {
        "msgspec, contract fields only": _rate(decode_line, plain),
        "pydantic v2, contract fields only": _rate(_adapter.validate_json, plain),
        "msgspec, unknown field kept": _rate(decode_line, lines),
        "pydantic v2, unknown field kept": _rate(_adapter.validate_json, lines),
    }
    for name, rate in results.items():
        print(f"{name:34s} {rate:12,.0f} lines/s")


if __name__ == "__main__":
    main()
