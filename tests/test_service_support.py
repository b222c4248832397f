"""Helpers for the service tests: real Redis and PostgreSQL, the service as a subprocess, the replay's
reference output. (No tests here; the service test modules import these.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from kabuguard.events import read_file, total_order
from kabuguard.events.reader import expand_paths
from kabuguard.policy import Policy
from kabuguard.replay import replay

ROOT = Path(__file__).resolve().parent.parent
KABUGUARD = str(Path(sys.executable).with_name("kabuguard"))
REDIS_URL = os.environ.get("KABUGUARD_TEST_REDIS", "redis://127.0.0.1:6379/0")
PG_ADMIN = os.environ.get("KABUGUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def contract(event: Any) -> dict[str, Any]:
    """A typed event back as its contract object (what a platform would send)."""
    obj = msgspec.to_builtins(event)
    extra = obj.pop("extra", None) or {}
    obj.pop("ts_us", None)
    return {**{k: v for k, v in obj.items() if v is not None}, **extra}


def ordered_stream(paths: list[Path]) -> list[dict[str, Any]]:
    """Every event of `paths` in the replay's total order (duplicates kept), as contract objects."""
    events = [e for p in expand_paths(paths) for e in read_file(p)]
    ordered = total_order(events)
    return [contract(e) for e in ordered.events]


def replay_reference(paths: list[Path], out: Path, policy: Policy | None = None) -> tuple[list[bytes], list[bytes]]:
    """`kabuguard replay`'s decision and alert lines, as bytes."""
    replay(paths, out, policy=policy, quiet=True)
    return ((out / "decisions.jsonl").read_bytes().splitlines(), (out / "alerts.jsonl").read_bytes().splitlines())


def encode(decision: dict[str, Any]) -> bytes:
    """A decision as the replay writes it (msgspec keeps key order and float text)."""
    return msgspec.json.encode(decision)


def batches(stream: list[dict[str, Any]], size: int = 200) -> Iterator[list[dict[str, Any]]]:
    """Decidable events alone (as a login platform sends them), the others in batches, all in order."""
    run: list[dict[str, Any]] = []
    for event in stream:
        if event["type"] in ("login", "account_change", "order"):
            if run:
                yield run
                run = []
            yield [event]
        else:
            run.append(event)
            if len(run) >= size:
                yield run
                run = []
    if run:
        yield run


def body_of(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events[0] if len(events) == 1 else events).encode()


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:  # pragma: no cover - CI starts Redis in .ci/run
        pytest.fail(f"Redis at {REDIS_URL} is not running ({exc}); .ci/run starts it")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own, removed afterwards."""
    import redis

    prefix = f"kgtest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for n in range(0, len(keys), 1000):
        client.delete(*keys[n:n + 1000])


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    import psycopg

    name = f"kgtest_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN.replace("postgresql://", "postgresql://", 1)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # pragma: no cover - CI starts PostgreSQL in .ci/run
        pytest.fail(f"PostgreSQL at {PG_ADMIN} is not running ({exc}); .ci/run starts it")
    yield admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class RedisServer:
    """A redis-server of the test's own on a spare loopback port, to stop and start at will."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


# A loaded CI machine, or a garbage collection in the test process that hosts an in-process
# service, can stall a request past the production deadline (0.25 s); tests about correctness
# use this one instead (test_service_degraded is the one about the deadline).
CORRECTNESS_DEADLINE_MS = 3000


class ServiceProcess:
    """`kabuguard serve` as a subprocess on a spare port."""

    def __init__(self, workdir: Path, state: str, db: str, workers: int = 1, **env: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.args = [KABUGUARD, "serve", "--port", str(self.port), "--state", state, "--db", db,
                     "--workers", str(workers)]
        self.env = {**os.environ, "KABUGUARD_RATE_LIMIT": "1000000", "KABUGUARD_REDIS_PREFIX": "kg:",
                    "KABUGUARD_LOG_LEVEL": "warning", "KABUGUARD_DEADLINE_MS": str(CORRECTNESS_DEADLINE_MS),
                    **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=self.workdir, env=self.env, stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not become ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL to the whole process group: the server and its workers die at once."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def create_key(db: str, firm: str = "acme", rate_limit: float | None = None) -> str:
    args = [KABUGUARD, "keys", "create", "--firm", firm, "--db", db]
    if rate_limit is not None:
        args += ["--rate-limit", str(rate_limit)]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


class TcpProxy:
    """A loopback TCP forwarder in front of a real server: stopping it cuts the server off as a
    network failure would (connections reset, new ones refused), starting it again restores it."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
