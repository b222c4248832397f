"""One TAXII page of 1,000 objects from `kabuguard serve`, over loopback HTTP (target: < 100 ms).

Run: .venv/bin/python bench/bench_taxii.py [--objects 5000] [--page 1000] [--repeat 30] [--db URL]

Starts the service (embedded: SQLite in a temporary folder, or `--db postgresql://…` on a fresh
database you name) in a thread under uvicorn, creates a key and a collection, posts `--objects`
STIX indicators (with sightings, as `intel export` writes them) through TAXII, then reads pages of
`--page` objects with HTTP Basic as `taxii2-client` does, following `next`, on one keep-alive
connection. Prints the median, p90 and worst page time, end to end at the client. Not a test.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
import uvicorn

from kabuguard.intel.taxii.store import TaxiiStore
from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.settings import Settings

TAXII = "application/taxii+json;version=2.1"


def _objects(n: int) -> list[dict]:
    out = []
    for i in range(n // 2):
        ind = f"indicator--{uuid.uuid4()}"
        ip = f"198.51.{i // 250 % 250}.{i % 250}"
        stamp = "2025-04-08T01:02:03.456Z"
        marks = ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"]
        out.append({"type": "indicator", "spec_version": "2.1", "id": ind, "created": stamp, "modified": stamp,
                    "name": "ip seen in account takeovers", "description": "Served 3 flagged events on 2 accounts.",
                    "indicator_types": ["malicious-activity"], "pattern": f"[ipv4-addr:value = '{ip}']",
                    "pattern_type": "stix", "valid_from": stamp, "object_marking_refs": marks})
        out.append({"type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}", "created": stamp,
                    "modified": stamp, "sighting_of_ref": ind, "count": 3, "first_seen": stamp, "last_seen": stamp,
                    "object_marking_refs": marks})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--db", help="Database URL (default: SQLite in a temporary folder).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{Path(tmp) / 'kg.db'}"
        app = create_app(Settings(db=db, rate_limit=1e9, max_body_bytes=64 * 1024 * 1024, log_level="warning"))
        key = create_key(app.state.service.db, "bench", "taxii")[1]
        collection = f"bench-{uuid.uuid4().hex[:8]}"
        TaxiiStore(app.state.service.db.engine).create_collection(collection, "bench", "", ["bench"], ["bench"])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}/taxii2/kabuguard/collections/{collection}/objects/"
        http = requests.Session()
        http.auth = ("bench", key)
        http.headers.update({"Accept": TAXII, "Content-Type": TAXII})
        started = time.perf_counter()
        status = http.post(base, data=json.dumps({"objects": _objects(args.objects)})).json()
        print(f"posted {status['success_count']} objects in {time.perf_counter() - started:.2f} s", file=sys.stderr)
        times, sizes = [], []
        while len(times) < args.repeat:
            cursor = None
            while len(times) < args.repeat:
                params = {"limit": args.page} | ({"next": cursor} if cursor else {})
                t0 = time.perf_counter()
                answer = http.get(base, params=params)
                body = answer.json()
                times.append((time.perf_counter() - t0) * 1000)
                sizes.append(len(body.get("objects", [])))
                cursor = body.get("next")
                if not body.get("more"):
                    break
        server.should_exit = True
    times.sort()
    print(f"| page of {max(sizes)} objects ({args.repeat} reads, {db.split(':')[0]}) | median {statistics.median(times):.1f} ms "
          f"| p90 {times[int(0.9 * (len(times) - 1))]:.1f} ms | worst {times[-1]:.1f} ms |")


if __name__ == "__main__":
    main()
