"""Customers' and attackers' devices: a firm-side fingerprint id and the user agents it sends."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import yaml

_UA = yaml.safe_load(resources.files("kabuguard.sim").joinpath("user_agents.yaml").read_text())


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    kind: str  # pc, phone, tablet
    web_ua: str
    app_ua: str | None  # only phones run the brokerage's app


def _choose(rng: np.random.Generator, weights: dict[str, float], uniform: bool = False) -> str:
    keys = list(weights)
    p = None if uniform else np.array([weights[k] for k in keys], dtype=float) / sum(weights.values())
    return keys[int(rng.choice(len(keys), p=p))]


def _family(rng: np.random.Generator, kind: str) -> dict:
    families = _UA[kind]
    p = np.array([f["weight"] for f in families], dtype=float)
    return families[int(rng.choice(len(families), p=p / p.sum()))]


def device_id(rng: np.random.Generator) -> str:
    return f"dv-{int(rng.integers(1 << 48)):012x}"


def new_device(rng: np.random.Generator, kind: str) -> Device:
    """A customer's device, its browser version drawn from the spring-2025 mix."""
    family = _family(rng, kind)
    version = _choose(rng, family["versions"])
    web_ua = family["template"].replace("{v}", version)
    app_ua = None
    if kind == "phone":
        app = _UA["app"][family["os"]]
        app_ua = app["template"].replace("{v}", _choose(rng, app["versions"]))
        app_ua = app_ua.replace("{os}", version.replace("_", "."))  # the phone's own iOS version
        if "models" in app:
            app_ua = app_ua.replace("{model}", _choose(rng, app["models"]))
    return Device(device_id(rng), kind, web_ua, app_ua)


def tool_device(rng: np.random.Generator) -> Device:
    """An attacker's automated browser: a common desktop family, any listed version (older ones
    turn up more often than among customers, yet every string is one customers send too)."""
    family = _UA["pc"][int(rng.integers(2))]  # Windows Chrome or Edge
    return Device(device_id(rng), "pc", family["template"].replace("{v}", _choose(rng, family["versions"], uniform=True)), None)


def api_agent(rng: np.random.Generator) -> str:
    family = _family(rng, "api")
    return family["template"].replace("{v}", _choose(rng, family["versions"]))
