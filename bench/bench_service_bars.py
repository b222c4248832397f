"""A minute of the market in one request: how long the embedded service takes per bar.

Run: .venv/bin/python bench/bench_service_bars.py [--symbols 1000] [--minutes 11]

Creates a throwaway embedded service (memory state, SQLite in a temporary folder), then posts
one request per minute holding every symbol's bar, and prints each request's time after the
first (which loads the kernels and warms the caches). Not a test: it reports figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from fastapi.testclient import TestClient

from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--minutes", type=int, default=11)
    args = ap.parse_args()
    folder = tempfile.mkdtemp()
    app = create_app(Settings(state="memory", db=f"sqlite:///{folder}/kg.db", rate_limit=1e9, max_batch=100_000,
                              log_level="warning"))
    key = create_key(app.state.service.db, "acme", "bench")[1]
    symbols = [f"{1000 + i}" for i in range(args.symbols)]
    spent = []
    with TestClient(app) as client:
        for minute in range(1, args.minutes + 1):
            hh, mm = divmod(9 * 60 + minute, 60)
            bars = [{"event_id": f"mb-{minute}-{s}", "type": "market_bar", "ts": f"2025-03-03T{hh:02d}:{mm:02d}:00+09:00",
                     "symbol": s, "open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0 + minute % 2,
                     "volume": 1000} for s in symbols]
            started = time.perf_counter()
            answer = client.post("/v1/events", content=json.dumps(bars),
                                 headers={"X-API-Key": key, "content-type": "application/json"})
            elapsed = time.perf_counter() - started
            if answer.status_code != 200:
                raise SystemExit(f"minute {minute}: {answer.status_code} {answer.text[:200]}")
            if minute > 1:
                spent.append(elapsed)
    per_bar = sorted(s / args.symbols * 1e6 for s in spent)
    print(f"{args.symbols} bars a request, {len(spent)} requests: median {per_bar[len(per_bar) // 2]:.1f} µs a bar, "
          f"best {per_bar[0]:.1f}, worst {per_bar[-1]:.1f}")


if __name__ == "__main__":
    main()
