"""Spark runner against the local replay: events per second, partition scaling, peak memory.

Run: .venv/bin/python bench/bench_spark.py [--sizes 1000000,4000000,16000000] [--master local[2]]
     [--partitions 4] [--scaling 1,2,4,8] [--skip-local | --skip-spark]

For each target size it simulates a 4-firm brokerage (60 symbols, 20 days; cached under
bench/.data/, not committed) sized to about that many events, then, each in a fresh process:
`kabuguard replay` (the reference) and the Spark runner on `--master`, and checks that both
wrote the same bytes. It reports events per second end to end, the Spark run's seconds per step
and without the JVM start, and peak memory: the replay's RSS; for Spark (local mode: the driver
JVM is the executor) the JVM's RSS and the sum of its Python workers' RSS, sampled twice a
second from /proc. `--scaling` reruns Spark on the smallest size with each partition count.
Not a test: it reports figures.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".data"
# Measured on the default mix below: ~10.5 activity events per account over 20 days, plus
# ~190k market bars (60 symbols x 20 days) whatever the size.
ACTIVITY_PER_ACCOUNT = 10.48
BARS = 188_634


def _simulate(target: int) -> Path:
    accounts = max(1000, int((target - BARS) / ACTIVITY_PER_ACCOUNT))
    out = CACHE / f"spark-{_label(target)}"
    if not (out / "labels.jsonl").exists():
        subprocess.run([sys.executable, "-m", "kabuguard.cli", "simulate", "--out", str(out), "--accounts",
                        str(accounts), "--days", "20", "--seed", "11", "--firms", "4", "--symbols", "60"],
                       check=True, stdout=subprocess.DEVNULL)
    return out / "events"


def _label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else str(n)


class _Sampler:
    """Peak RSS of a process tree from /proc: the JVM, and Python processes (summed); and the
    tree's CPU seconds, which getrusage misses when the child does not reap its JVM."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = {"jvm_mb": 0.0, "python_workers_mb": 0.0, "total_mb": 0.0}
        self.cpu_ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            jvm = workers = total = 0.0
            for pid in self._tree():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                self.cpu_ticks[pid] = int(fields[11]) + int(fields[12])
                rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")), 0) / 1024
                total += rss
                if comm == "java":
                    jvm += rss
                elif pid != self.pid and comm.startswith("python"):
                    workers += rss
            for key, value in (("jvm_mb", jvm), ("python_workers_mb", workers), ("total_mb", total)):
                self.peak[key] = max(self.peak[key], value)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {k: round(v) for k, v in self.peak.items()}

    def cpu_s(self) -> float:
        """CPU seconds of every process seen in the tree, as last sampled (up to 0.5 s short each)."""
        return sum(self.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(cmd: list[str]) -> tuple[dict, dict, float]:
    """The child's result, its peak memory and wall seconds; the result also gets the CPU
    seconds of the child's process tree (the JVM, Python workers: the larger of getrusage and
    the /proc samples) and the load average, since on a shared machine wall clock mostly
    measures the others."""
    t0, c0 = time.perf_counter(), _cpu_children()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    sampler = _Sampler(proc.pid)
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    memory = sampler.stop()
    cpu = max(_cpu_children() - c0, sampler.cpu_s())
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed with {proc.returncode}")
    result = json.loads(stdout.splitlines()[-1])
    result.update(cpu_s=round(cpu, 1), load=round(os.getloadavg()[0], 1))
    return result, memory, wall


def _child_spark(events: str, out: str, master: str, partitions: int) -> None:
    from kabuguard.spark import replay_spark, spark_session

    t0 = time.perf_counter()
    spark_session(master, partitions)
    t1 = time.perf_counter()
    timings: dict[str, float] = {}
    summary = replay_spark([events], out, master=master, partitions=partitions, quiet=True, timings=timings)
    t2 = time.perf_counter()
    print(json.dumps({"events": summary.events, "jvm_start_s": round(t1 - t0, 1), "run_s": round(t2 - t1, 1),
                      "steps": {k: round(v, 1) for k, v in timings.items() if v >= 0.05}}))


def _child_local(events: str, out: str) -> None:
    from kabuguard.replay import replay

    summary = replay([events], out, quiet=True)
    print(json.dumps({"events": summary.events}))


def _same(a: Path, b: Path) -> bool:
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in ("decisions.jsonl", "alerts.jsonl", "rejected.jsonl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,4000000,16000000")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--scaling", default="", help="partition counts to try on the smallest size, e.g. 1,2,4,8")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-spark", action="store_true",
                        help="only the local replay, compared with the Spark output of an earlier run if there is one")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "spark":
            _child_spark(rest[0], rest[1], rest[2], int(rest[3]))
        else:
            _child_local(rest[0], rest[1])
        return
    me = [sys.executable, __file__, "--child"]
    sizes = [int(s) for s in args.sizes.split(",")]
    for target in sizes:
        events = _simulate(target)
        runs = CACHE / f"runs-{_label(target)}"
        if not args.skip_local:
            r, mem, wall = _measure([*me, "local", str(events), str(runs / "local")])
            print(json.dumps({"size": _label(target), "engine": "local", "events": r["events"], "wall_s": round(wall, 1),
                              "events_per_s": round(r["events"] / wall), "cpu_s": r["cpu_s"], "load": r["load"],
                              "peak_rss_mb": mem["total_mb"]}), flush=True)
        if args.skip_spark:
            if (runs / "spark" / "decisions.jsonl").exists():
                print(json.dumps({"size": _label(target), "identical_to_earlier_spark_run": _same(runs / "local", runs / "spark")}))
            continue
        r, mem, wall = _measure([*me, "spark", str(events), str(runs / "spark"), args.master, str(args.partitions)])
        same = _same(runs / "local", runs / "spark") if (runs / "local" / "decisions.jsonl").exists() else None
        print(json.dumps({"size": _label(target), "engine": f"spark {args.master}", "partitions": args.partitions,
                          "events": r["events"], "wall_s": round(wall, 1), "events_per_s": round(r["events"] / wall),
                          "events_per_s_after_jvm_start": round(r["events"] / r["run_s"]),
                          "jvm_start_s": r["jvm_start_s"], "cpu_s": r["cpu_s"], "load": r["load"],
                          "steps_s": r["steps"], "peak_mb": mem,
                          "identical_to_local": same}), flush=True)
    for parts in [int(p) for p in args.scaling.split(",") if p]:
        events = _simulate(sizes[0])
        runs = CACHE / f"runs-{_label(sizes[0])}"
        r, mem, wall = _measure([*me, "spark", str(events), str(runs / f"spark-p{parts}"), args.master, str(parts)])
        print(json.dumps({"size": _label(sizes[0]), "engine": f"spark {args.master}", "partitions": parts,
                          "wall_s": round(wall, 1), "events_per_s_after_jvm_start": round(r["events"] / r["run_s"]),
                          "cpu_s": r["cpu_s"], "load": r["load"], "steps_s": r["steps"], "peak_mb": mem}), flush=True)


if __name__ == "__main__":
    main()
