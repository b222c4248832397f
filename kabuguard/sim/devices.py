"""Customers' and attackers' devices: a firm-side fingerprint id and the user agents it sends."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import yaml

_UA = yaml.safe_load(resources.files("kabuguard.sim").joinpath("user_agents.yaml").read_text())


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    kind: str  # pc, phone, tablet
    web_ua: str
    app_ua: str | None  # only phones run the brokerage's app
    upgrade_ms: int | None = None  # when the browser or app updates itself ...
    upgraded: Device | None = None  # ... into this (same id, newer agents)

    def at(self, ms: int) -> Device:
        """The device as it presents itself at `ms`."""
        if self.upgraded is not None and self.upgrade_ms is not None and ms >= self.upgrade_ms:
            return self.upgraded
        return self


def with_update(device: Device, rng: np.random.Generator, start_ms: int, end_ms: int) -> Device:
    """`device`, set to auto-update during [start_ms, end_ms) if it runs an outgoing version."""
    newer = {ua: _upgrade(ua) for ua in (device.web_ua, device.app_ua) if ua}
    if all(new == old for old, new in newer.items()) or rng.random() >= _UA["upgrades"]["share"]:
        return device
    upgraded = Device(device.device_id, device.kind, newer[device.web_ua], newer[device.app_ua] if device.app_ua else None)
    return Device(device.device_id, device.kind, device.web_ua, device.app_ua, int(rng.integers(start_ms, end_ms)), upgraded)


def _upgrade(ua: str) -> str:
    for old, new in _UA["upgrades"]["from_to"].items():
        ua = ua.replace(old, new)
    return ua


class _Choice:
    """A weighted draw over fixed items; the cumulative weights are computed once."""

    def __init__(self, items: list, weights: list[float]) -> None:
        self.items = items
        self._cdf = (np.cumsum(weights) / sum(weights)).tolist()  # bisect beats numpy per call

    def draw(self, rng: np.random.Generator, uniform: bool = False) -> Any:
        if uniform:
            return self.items[int(rng.integers(len(self.items)))]
        return self.items[min(bisect.bisect_left(self._cdf, rng.random()), len(self.items) - 1)]


def _versions(entry: dict, key: str = "versions") -> _Choice:
    return _Choice(list(entry[key]), list(entry[key].values()))


_FAMILIES = {
    kind: _Choice([(f, _versions(f)) for f in _UA[kind]], [f["weight"] for f in _UA[kind]])
    for kind in ("pc", "phone", "tablet", "api")
}
_APPS = {os: (app["template"], _versions(app), _versions(app, "models") if "models" in app else None)
         for os, app in _UA["app"].items()}


def device_id(rng: np.random.Generator) -> str:
    return f"dv-{int(rng.integers(1 << 48)):012x}"


def new_device(rng: np.random.Generator, kind: str) -> Device:
    """A customer's device, its browser version drawn from the spring-2025 mix."""
    family, versions = _FAMILIES[kind].draw(rng)
    version = versions.draw(rng)
    # Safari on iOS reports the OS's major.minor as its own version.
    web_ua = family["template"].replace("{v}", version).replace("{sv}", ".".join(version.split("_")[:2]))
    app_ua = None
    if kind == "phone":
        template, app_versions, models = _APPS[family["os"]]
        app_ua = template.replace("{v}", app_versions.draw(rng))
        app_ua = app_ua.replace("{os}", version.replace("_", "."))  # the phone's own iOS version
        if models is not None:
            app_ua = app_ua.replace("{model}", models.draw(rng))
    return Device(device_id(rng), kind, web_ua, app_ua)


def tool_device(rng: np.random.Generator) -> Device:
    """An attacker's automated browser: a common desktop family, any listed version (older ones
    turn up more often than among customers, yet every string is one customers send too)."""
    family, versions = _FAMILIES["pc"].items[int(rng.integers(2))]  # Windows Chrome or Edge
    return Device(device_id(rng), "pc", family["template"].replace("{v}", versions.draw(rng, uniform=True)), None)


def api_agent(rng: np.random.Generator) -> str:
    family, versions = _FAMILIES["api"].draw(rng)
    return family["template"].replace("{v}", versions.draw(rng))
