"""Load on the decision service: a simulated stream at fixed rates, from a separate process.

Run: .venv/bin/python bench/bench_service.py [--setup embedded|redis|both] [--seconds 8]
     [--rates 250,500,1000,2000] [--workers N] [--out FILE]

For each setup it starts `kabuguard serve` (embedded: memory + SQLite; redis: Redis +
PostgreSQL on 127.0.0.1, a fresh database and key prefix), creates a key, sends the simulated
run's reference data, then starts the load generator (this file with `load`, its own process):
an open-loop HTTP/1.1 client on raw asyncio sockets that sends one decidable event per request
at a fixed rate over keep-alive connections. Latency runs from the moment a request was due,
not when it left, so a stalled server is not hidden (no coordinated omission). Then the same
client closed-loop as fast as it goes (the maximum), and batches of 1,000 events (the batch
endpoint). Prints p50, p99 and p99.9 latency, errors (non-200 or degraded answers) and the
achieved rate; `--out` writes them as JSON. Not a test: it reports figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

KABUGUARD = str(Path(sys.executable).with_name("kabuguard"))


# -- the load generator (its own process) ----------------------------------------------------

def _request(key: str, body: bytes) -> bytes:
    return (b"POST /v1/events HTTP/1.1\r\nHost: bench\r\nX-API-Key: " + key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    """One request on a keep-alive connection; True for a 200 answer that is not degraded."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12]
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length)
    return status == b"200" and b'"degraded":false' in body[:20]


async def _open_loop(host: str, port: int, requests: list[bytes], rate: float, connections: int) -> dict[str, Any]:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05

    async def one(due: float, request: bytes) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            ok = await _exchange(*conn, request)
        except (OSError, asyncio.IncompleteReadError):
            ok = False
            conn = await asyncio.open_connection(host, port)
        latencies.append(time.perf_counter() - due)
        errors += not ok
        pool.put_nowait(conn)

    tasks = []
    for n, request in enumerate(requests):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, request)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return _summary(latencies, errors, len(requests), elapsed, rate)


async def _closed_loop(host: str, port: int, requests: list[bytes], connections: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(requests))

    async def worker() -> None:
        nonlocal errors
        conn = await asyncio.open_connection(host, port)
        while queue:
            request = queue.pop()
            sent = time.perf_counter()
            try:
                ok = await _exchange(*conn, request)
            except (OSError, asyncio.IncompleteReadError):
                ok = False
                conn = await asyncio.open_connection(host, port)
            latencies.append(time.perf_counter() - sent)
            errors += not ok
        conn[1].close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return _summary(latencies, errors, len(requests), time.perf_counter() - start, None)


def _summary(latencies: list[float], errors: int, n: int, elapsed: float, rate: float | None) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2) if ordered else float("nan")

    return {"target_rps": rate, "requests": n, "errors": errors, "achieved_rps": round(n / elapsed, 1),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "p999_ms": pct(0.999), "max_ms": pct(1.0)}


def load_main(args: argparse.Namespace) -> None:
    """`bench_service.py load`: reads request bodies (one JSON per line), prints one JSON summary."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    bodies = Path(args.bodies).read_bytes().splitlines()
    requests = [_request(args.key, b) for b in bodies]
    if args.rate:
        result = asyncio.run(_open_loop(args.host, args.port, requests, args.rate, args.connections))
    else:
        result = asyncio.run(_closed_loop(args.host, args.port, requests, args.connections))
    if args.events_per_request > 1:
        result["events_per_s"] = round(result["achieved_rps"] * args.events_per_request)
    print(json.dumps(result))


# -- the orchestration -----------------------------------------------------------------------

def _stream(workdir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """A simulated run in total order: (reference data, decidable events, everything else)."""
    from test_service_support import ordered_stream

    sim = workdir / "sim"
    subprocess.run([KABUGUARD, "simulate", "--out", str(sim), "--accounts", "3000", "--days", "14",
                    "--symbols", "20", "--seed", "3"], check=True, capture_output=True)
    stream = ordered_stream([sim / "events"])
    reference = [e for e in stream if e["type"] in ("instrument", "account")]
    decidable = [e for e in stream if e["type"] in ("login", "account_change", "order")]
    return reference, decidable, stream


def _write_bodies(path: Path, events: list[dict[str, Any]], tag: str, per_request: int = 1) -> Path:
    with path.open("wb") as fh:
        for n in range(0, len(events), per_request):
            chunk = [{**e, "event_id": f"{e['event_id']}~{tag}"} for e in events[n:n + per_request]]
            fh.write(json.dumps(chunk[0] if per_request == 1 else chunk).encode() + b"\n")
    return path


def _later(events: list[dict[str, Any]], cycle: int, period: timedelta) -> list[dict[str, Any]]:
    """`events` moved `cycle` periods later, with their own event ids.

    Production time only moves forward; sending the same fortnight again would put every
    account's past several times into its windows and measure a state no service holds."""
    if cycle == 0:
        return events
    return [{**e, "event_id": f"{e['event_id']}#{cycle}",
             "ts": (datetime.fromisoformat(e["ts"]) + cycle * period).isoformat()} for e in events]


def _forward(events: list[dict[str, Any]], start: int, n: int, period: timedelta) -> list[dict[str, Any]]:
    """Positions `start` to `start + n` of `events` repeated forward in time (see `_later`)."""
    size = len(events)
    cycles = {c: _later(events, c, period) for c in range(start // size, (start + n - 1) // size + 1)}
    return [cycles[i // size][i % size] for i in range(start, start + n)]


def _serve(setup: str, workdir: Path, workers: int) -> tuple[Any, str, str]:
    from test_service_support import PG_ADMIN, REDIS_URL, ServiceProcess, create_key

    if setup == "embedded":
        db = f"sqlite:///{workdir}/bench-{uuid.uuid4().hex[:6]}.db"
        service = ServiceProcess(workdir, "memory", db, workers=1, KABUGUARD_DEADLINE_MS="1000")
    else:
        import psycopg

        name = f"kgbench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        service = ServiceProcess(workdir, REDIS_URL, db, workers=workers, KABUGUARD_DEADLINE_MS="1000",
                                 KABUGUARD_REDIS_PREFIX=f"kgbench:{name}:",
                                 KABUGUARD_WAIT_FOR_DATABASE=os.environ.get("KABUGUARD_WAIT_FOR_DATABASE", "0"))
    key = create_key(db)
    service.start()
    return service, key, db


def _drop(setup: str, db: str) -> None:
    if setup != "embedded":
        import psycopg
        import redis

        from test_service_support import PG_ADMIN, REDIS_URL

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db.rsplit("/", 1)[1]}" WITH (FORCE)')
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"kgbench:{db.rsplit('/', 1)[1]}:*", count=1000):
            client.delete(key)


def _cpu_s(service: Any) -> float:
    """CPU seconds used so far by the server and its workers (user + system, from /proc)."""
    pids = {service.proc.pid, *_workers(service)}
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _load(service: Any, key: str, bodies: Path, rate: float | None, connections: int, per_request: int = 1) -> dict[str, Any]:
    args = [sys.executable, __file__, "load", "--port", str(service.port), "--key", key, "--bodies", str(bodies),
            "--connections", str(connections), "--events-per-request", str(per_request)]
    if rate:
        args += ["--rate", str(rate)]
    cpu = _cpu_s(service)
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    # The server's own CPU per request: unlike latency, it does not depend on what else runs.
    result["server_cpu_ms_per_request"] = round(1000 * (_cpu_s(service) - cpu) / result["requests"], 3)
    return result


# Where a worker's CPU goes: each py-spy sample goes to the part of the request path named by its
# innermost frame that matches (so the detection core's time is its own, not its callers').
_WHERE = (
    ("detection core (Pipeline, stages, detectors)", ("kabuguard/engine/pipeline.py", "kabuguard/engine/stages.py",
                                                       "kabuguard/detectors/", "kabuguard/netintel/", "kabuguard/policy/")),
    ("Redis client (three scripts a request)", ("kabuguard/service/redis_client.py", "hiredis")),
    ("database writes (SQLite / psycopg, writer thread)", ("kabuguard/service/storage/", "sqlite3", "psycopg",
                                                          "sqlalchemy/")),
    ("state codec and working set (msgpack)", ("kabuguard/engine/redis_store.py",)),
    ("decider: keys, answer bytes, records", ("kabuguard/service/decider.py", "kabuguard/service/state.py")),
    ("parsing the body (contract reader)", ("parse_events", "kabuguard/events/")),
    ("authentication, rate limit", ("kabuguard/service/auth.py", "kabuguard/service/ratelimit.py", "principal (")),
    ("logging", ("logging/", "kabuguard/service/logging.py")),
    ("HTTP: uvicorn, Starlette, FastAPI", ("uvicorn/", "starlette/", "fastapi/", "httptools", "h11/", "anyio/",
                                          "pydantic")),
    ("event loop, including waiting in it", ("asyncio/", "uvloop")),
)


_SPY = Path(sys.executable).with_name("py-spy")


def _profile(pids: list[int], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on every worker (raw collapsed stacks, one file each)."""
    return [subprocess.Popen([str(_SPY), "record", "--nonblocking", "-r", "250", "-d", str(int(seconds)), "-f", "raw",
                              "-o", f"{out}.{pid}", "--threads", "-p", str(pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]


def _where(out: Path) -> dict[str, float]:
    """Share of CPU samples per part of the request path, from py-spy's collapsed stacks."""
    total = 0
    counts = dict.fromkeys([name for name, _ in _WHERE] + ["other"], 0)
    lines = [line for raw in out.parent.glob(out.name + ".*") for line in raw.read_text().splitlines()]
    for line in lines:
        stack, _, n = line.rpartition(" ")
        samples = int(n)
        total += samples
        for frame in reversed(stack.split(";")[1:]):
            name = next((name for name, needles in _WHERE if any(x in frame for x in needles)), None)
            if name is not None:
                counts[name] += samples
                break
        else:
            counts["other"] += samples
    return {name: round(100 * c / max(total, 1), 1) for name, c in counts.items()}


def _workers(service: Any) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(service.proc.pid)], capture_output=True, text=True).stdout.split()
    # uvicorn with several workers runs them as children (plus a resource tracker); with one, itself.
    pids = [int(p) for p in children if "kabuguard" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")
            or "multiprocessing" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")]
    return [p for p in pids if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")] or [service.proc.pid]


def run_setup(setup: str, args: argparse.Namespace, workdir: Path, streams: Any) -> list[dict[str, Any]]:
    reference, decidable, stream = streams
    service, key, db = _serve(setup, workdir, args.workers)
    results = []
    try:
        import httpx

        httpx.post(service.url + "/v1/events", json=reference, headers={"X-API-Key": key}, timeout=120).raise_for_status()
        # Warm up: a second's worth at the lowest rate, not reported.
        warm = _write_bodies(workdir / "warm.jsonl", decidable[:300], "warm")
        _load(service, key, warm, 300, 16)
        offset = 300
        # The stream's span and a day: each repetition starts after everything sent before it.
        period = datetime.fromisoformat(stream[-1]["ts"]) - datetime.fromisoformat(stream[0]["ts"]) + timedelta(days=1)
        for rate in args.rates:
            n = int(rate * args.seconds)
            events = _forward(decidable, offset, n, period)
            offset += n
            bodies = _write_bodies(workdir / f"r{rate}.jsonl", events, f"{setup}{rate}")
            spies = _profile(_workers(service), args.seconds - 1, workdir / "spy") if args.profile and rate == 1000 else []
            result = _load(service, key, bodies, rate, max(16, int(rate / 50)))
            for spy in spies:
                spy.wait(60)
            if spies:
                result["where_time_goes_pct"] = _where(workdir / "spy")
            results.append({"setup": setup, "mode": f"{rate:g}/s", **result})
            print(json.dumps(results[-1]), flush=True)
        n = int(args.max_requests)
        bodies = _write_bodies(workdir / "max.jsonl", _forward(decidable, offset, n, period), f"{setup}max")
        result = _load(service, key, bodies, None, 16)
        offset += n
        results.append({"setup": setup, "mode": "max (closed loop, 16 connections)", **result})
        print(json.dumps(results[-1]), flush=True)
        # The batch endpoint: the whole stream (bars, executions, activity) in order, 1,000 a request.
        batch = _later(stream, offset // len(decidable) + 1, period)
        bodies = _write_bodies(workdir / "batch.jsonl", batch, f"{setup}batch", per_request=1000)
        spies = _profile(_workers(service), 2, workdir / "spy-batch") if args.profile else []
        result = _load(service, key, bodies, None, 1, per_request=1000)
        for spy in spies:
            spy.wait(60)
        if spies:
            result["where_time_goes_pct"] = _where(workdir / "spy-batch")
        results.append({"setup": setup, "mode": "batch of 1000 (1 connection)", **result})
        print(json.dumps(results[-1]), flush=True)
    finally:
        service.stop()
        _drop(setup, db)
    return results


def _table(results: list[dict[str, Any]]) -> str:
    lines = ["| setup | load | requests | errors | achieved req/s | events/s | p50 ms | p99 ms | p99.9 ms | server CPU ms/request |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['setup']} | {r['mode']} | {r['requests']} | {r['errors']} | {r['achieved_rps']} | "
                     f"{r.get('events_per_s', r['achieved_rps'])} | {r['p50_ms']} | {r['p99_ms']} | {r['p999_ms']} | "
                     f"{r['server_cpu_ms_per_request']} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        parser = argparse.ArgumentParser()
        parser.add_argument("load")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--key", required=True)
        parser.add_argument("--bodies", required=True)
        parser.add_argument("--rate", type=float, default=None)
        parser.add_argument("--connections", type=int, default=16)
        parser.add_argument("--events-per-request", type=int, default=1)
        load_main(parser.parse_args())
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", choices=("embedded", "redis", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=8.0, help="Length of each fixed-rate run.")
    parser.add_argument("--rates", default="250,500,1000,2000")
    parser.add_argument("--max-requests", type=int, default=15000)
    parser.add_argument("--workers", type=int, default=2, help="Workers of the Redis setup.")
    parser.add_argument("--out", default=None)
    parser.add_argument("--profile", action="store_true", help="py-spy on the workers during the 1000/s run and the first 2 s of the batch run.")
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    if args.profile and not _SPY.exists():
        parser.error(f"--profile: {_SPY} not found; install it with `{_SPY.with_name('pip')} install py-spy`")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        streams = _stream(workdir)
        print(f"stream: {len(streams[2])} events, {len(streams[1])} decidable", flush=True)
        results = []
        for setup in (("embedded", "redis") if args.setup == "both" else (args.setup,)):
            results += run_setup(setup, args, workdir, streams)
    print(_table(results))
    for r in results:
        if "where_time_goes_pct" in r:
            print(f"\nwhere a worker's CPU goes, {r['setup']} {r['mode']} (py-spy, % of samples):")
            for name, pct in r["where_time_goes_pct"].items():
                print(f"  {pct:5.1f}  {name}")
    print(f"\nload average during the run: {os.getloadavg()}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
