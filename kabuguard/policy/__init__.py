"""The policy: turns findings into a score and a decision, with thresholds an analyst can diff.

Loaded from YAML (the default ships beside this module), validated once, then trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kabuguard.detectors.base import Finding
from kabuguard.policy.playbooks import Playbook, parse_playbooks

DECISIONS = ("allow", "challenge", "review", "block")
_STRENGTH = {d: i for i, d in enumerate(DECISIONS)}


class PolicyError(ValueError):
    """The policy file is malformed; the message names the key."""


@dataclass(frozen=True)
class Policy:
    bias: dict[str, float]
    thresholds: dict[str, tuple[tuple[str, float], ...]]  # strongest first
    min_reason_weight: float
    alert_cooldown_us: int
    campaign_member_weight: float
    own_session_llr: float
    foreign_session_llr: float
    # Yen per unit of each currency, for the policy's yen lines on any market (detectors/money.py).
    fx_jpy: dict[str, float]
    detectors: dict[str, dict[str, Any]]
    source: str
    # What an online runner answers when its state or database cannot be reached in time:
    # `fail_open` allows (reason `degraded`), `fail_closed` challenges.
    fail_mode: str = "fail_open"
    # Containment the core applies itself when an alert matches (policy/playbooks.py).
    playbooks: tuple[Playbook, ...] = ()

    def detector_params(self, name: str) -> dict[str, Any]:
        """A detector's section of the policy, with the policy-wide session lines beside it."""
        return {"own_session_llr": self.own_session_llr, "foreign_session_llr": self.foreign_session_llr,
                "fx_jpy": self.fx_jpy,
                **self.detectors.get(name, {})}

    def score(self, kind: str, llr: float) -> float:
        return 1.0 / (1.0 + math.exp(-max(-700.0, min(700.0, self.bias[kind] + llr))))

    def decide(self, kind: str, score: float) -> str:
        for decision, threshold in self.thresholds[kind]:
            if score >= threshold:
                return decision
        return "allow"

    def reasons(self, findings: list[Finding]) -> list[str]:
        """Reason codes worth naming, strongest first, each once."""
        best: dict[str, float] = {}
        for reason, weight in findings:
            if weight >= self.min_reason_weight and weight > best.get(reason, 0.0):
                best[reason] = weight
        return [r for _, r in sorted([(-w, r) for r, w in best.items()])]


def at_least(decision: str, floor: str) -> bool:
    return _STRENGTH[decision] >= _STRENGTH[floor]


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy at `path`, or the default shipped with Kabuguard."""
    if path is None:
        text, source = resources.files(__package__).joinpath("default.yaml").read_text(), "default"
    else:
        try:
            text, source = Path(path).read_text(), str(path)
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read policy: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    return _parse(raw, source)


def _parse(raw: Any, source: str) -> Policy:
    def need(mapping: Any, key: str, where: str) -> Any:
        if not isinstance(mapping, dict) or key not in mapping:
            raise PolicyError(f"{source}: missing `{where}{key}`")
        return mapping[key]

    kinds = ("login", "account_change", "order")
    bias = need(raw, "bias", "")
    decisions = need(raw, "decisions", "")
    thresholds: dict[str, tuple[tuple[str, float], ...]] = {}
    for kind in kinds:
        levels = need(decisions, kind, "decisions.")
        unknown = set(levels) - set(DECISIONS[1:])
        if unknown:
            raise PolicyError(f"{source}: decisions.{kind}: unknown decision(s) {sorted(unknown)}")
        ordered = sorted(((d, float(t)) for d, t in levels.items()), key=lambda item: -_STRENGTH[item[0]])
        thresholds[kind] = tuple(ordered)
    return Policy(
        bias={kind: float(need(bias, kind, "bias.")) for kind in kinds},
        thresholds=thresholds,
        min_reason_weight=float(need(raw, "min_reason_weight", "")),
        alert_cooldown_us=int(float(need(raw, "account_alert_cooldown_hours", "")) * 3_600_000_000),
        campaign_member_weight=float(need(need(raw, "containment", ""), "campaign_member_weight", "containment.")),
        own_session_llr=float(need(raw, "own_session_llr", "")),
        foreign_session_llr=float(need(raw, "foreign_session_llr", "")),
        fx_jpy=_fx(raw.get("fx_jpy", {}), source),
        detectors=dict(need(raw, "detectors", "")),
        source=source,
        fail_mode=_fail_mode(raw.get("fail_mode", "fail_open"), source),
        playbooks=_playbooks(raw.get("playbooks"), source),
    )


def _playbooks(value: Any, source: str) -> tuple[Playbook, ...]:
    try:
        return parse_playbooks(value, source)
    except ValueError as exc:
        raise PolicyError(str(exc)) from None


def _fx(value: Any, source: str) -> dict[str, float]:
    """The yen rates, JPY always 1; a rate must be a positive number."""
    if not isinstance(value, dict):
        raise PolicyError(f"{source}: `fx_jpy` must map currency codes to yen per unit")
    rates = {"JPY": 1.0}
    for currency, rate in value.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise PolicyError(f"{source}: `fx_jpy.{currency}` must be a positive number, got {rate!r}")
        rates[str(currency)] = float(rate)
    return rates


def _fail_mode(value: Any, source: str) -> str:
    if value not in ("fail_open", "fail_closed"):
        raise PolicyError(f"{source}: `fail_mode` must be fail_open or fail_closed, got {value!r}")
    return str(value)
