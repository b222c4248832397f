"""Phishing-domain scoring throughput: domains scored per second in one process.

Run: .venv/bin/python bench/bench_phish.py [--domains 200000] [--registry securities-jp] [--profile]

Scores a synthetic certificate-stream mix (mostly ordinary names on common and cheap TLDs, deep
hosting subdomains, a few percent lookalikes and brand combos), every domain distinct so no
cache helps, through `Scorer.score` (parse, PSL split, brand matching, context, noisy-OR). Prints
domains per second, best of --repeat passes, by wall clock and by the process's CPU time (other
processes on a shared machine only ever slow a pass down; CPU time shows the cost when they do). With --profile, the top functions of one pass.
Not a test: it reports figures.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import time

from kabuguard.intel.phish.registry import load_registry
from kabuguard.intel.phish.score import Scorer
from machine import line as machine_line  # bench/machine.py, beside this script

_WORDS = ("blue", "cloud", "shop", "tokyo", "green", "data", "market", "osaka", "studio", "hotel", "mail", "dev",
          "photo", "coffee", "api", "news", "store", "travel", "game", "media", "smart", "home", "fit", "art")
_TLDS = ("com", "net", "org", "jp", "co.jp", "ne.jp", "io", "top", "xyz", "shop", "info", "cn", "online", "dev", "app")
_HOSTING = ("herokuapp.com", "workers.dev", "github.io", "duckdns.org", "azurewebsites.net", "s3.amazonaws.com")
_BRANDS = ("sbisec", "rakuten-sec", "monex", "matsui", "smbcnikko", "nomura", "click-sec", "paypay-sec", "moomoo")


def _domain(rng: random.Random, i: int) -> str:
    kind = rng.random()
    if kind < 0.04:  # a lookalike: one edit of a brand, with a lure word
        brand = list(rng.choice(_BRANDS))
        k = rng.randrange(len(brand))
        brand[k] = rng.choice("abcdefghijklmnopqrstuvwxyz")
        return f"{''.join(brand)}-{rng.choice(('login', 'secure', 'account'))}{i}.{rng.choice(_TLDS)}"
    if kind < 0.06:  # an official domain spelled inside an attacker's host
        return f"www.{rng.choice(_BRANDS)}.co.jp.{rng.choice(_WORDS)}{i}.{rng.choice(_TLDS)}"
    if kind < 0.25:  # hosting and dynamic DNS subdomains, often machine-named
        return f"{rng.getrandbits(40):x}-{i}.{rng.choice(_HOSTING)}"
    labels = rng.randint(0, 2)
    sub = ".".join(rng.choice(_WORDS) for _ in range(labels))
    name = f"{rng.choice(_WORDS)}{rng.choice(_WORDS)}{i}"
    return f"{sub + '.' if sub else ''}{name}.{rng.choice(_TLDS)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=200_000)
    parser.add_argument("--registry", default="securities-jp")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    rng = random.Random(7)
    domains = [_domain(rng, i) for i in range(args.domains)]
    scorer = Scorer(load_registry(args.registry))
    scorer.score("warm-up.example.com")

    def one_pass() -> tuple[float, float, int]:
        start, cpu = time.perf_counter(), time.process_time()
        alerts = sum(scorer.score(d).alert(scorer.threshold) for d in domains)
        return time.perf_counter() - start, time.process_time() - cpu, alerts

    if args.profile:
        with cProfile.Profile() as profiler:
            one_pass()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    passes = [one_pass() for _ in range(args.repeat)]
    best, alerts = min(p[0] for p in passes), passes[0][2]
    cpu = min(p[1] for p in passes)

    print(f"registry {scorer.registry.name} ({len(scorer.registry.brands)} brands), {len(domains):,} distinct domains, {alerts:,} alerts")
    print(f"best of {args.repeat} passes: {len(domains) / best:,.0f} domains/s wall clock ({best:.2f} s), "
          f"{len(domains) / cpu:,.0f} domains per CPU second ({os.getloadavg()[0]:.1f} load average)")
    print(machine_line())


if __name__ == "__main__":
    main()
