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
        floor = self.min_reason_weight
        strong = [f for f in findings if f.weight >= floor]
        if len(strong) < 2:  # most events: nothing to rank
            return [strong[0].reason] if strong else []
        best: dict[str, float] = {}
        for finding in strong:
            if finding.weight > best.get(finding.reason, -math.inf):
                best[finding.reason] = finding.weight
        return [r for _, r in sorted([(-w, r) for r, w in best.items()])]


def at_least(decision: str, floor: str) -> bool:
    return _STRENGTH[decision] >= _STRENGTH[floor]


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy at `path`, or the default shipped with Kabuguard."""
    if path is None:
        text, source = resources.files(__package__).joinpath("default.yaml").read_text(), "default"
    else:
        try:
            text, source = Path(path).read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read policy: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise PolicyError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    policy = _parse(raw, source)
    _check_detectors(policy)
    return policy


# Top-level keys a policy may have: a typo (`failmode`) must not load as the default silently.
_REQUIRED = ("version", "bias", "own_session_llr", "foreign_session_llr", "decisions", "min_reason_weight",
             "account_alert_cooldown_hours", "containment", "detectors")
_KEYS = frozenset(_REQUIRED) | {"fx_jpy", "playbooks", "fail_mode"}
# The policy format this code reads: a file of another version means other keys or other meanings.
VERSION = 1
# Where a copy of an older default learns what it lacks.
_UPGRADING = "docs/policy.md, \"Upgrading a policy file of your own\""


def _number(value: Any, where: str, source: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite number in [low, high]; anything else stops the load naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
            or not math.isfinite(value):
        span = "" if (low, high) == (-math.inf, math.inf) else f" in [{low:g}, {high:g}]"
        raise PolicyError(f"{source}: `{where}` must be a finite number{span}, got {value!r}")
    return float(value)


_DURATIONS = ("_minutes", "_hours", "_days")
_CLOCK = "_utc_offset_hours"  # a time of day's offset, not a duration: negative west of Greenwich


def _finite(value: Any, where: str, source: str) -> None:
    """No NaN or infinity anywhere in the detectors' sections (a NaN threshold silently never
    fires), and no negative duration (a negative window silently holds nothing)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise PolicyError(f"{source}: `{where}` must be a finite number, got {value!r}")
    if where.endswith(_DURATIONS) and not where.endswith(_CLOCK) and isinstance(value, (int, float)) and value < 0:
        raise PolicyError(f"{source}: `{where}` is a duration, it cannot be negative: {value!r}")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite(item, f"{where}.{key}", source)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _finite(item, f"{where}[{n}]", source)


def _check_detectors(policy: Policy) -> None:
    """Build every detector from its section once, at load: a missing or malformed parameter
    stops here, naming the detector, not at the first event of a replay or a request."""
    from kabuguard.detectors import ALL  # noqa: PLC0415  (the detectors import this module)
    from kabuguard.detectors.base import unread_keys  # noqa: PLC0415

    built = {cls.name: [c for c in ALL if c.name == cls.name] for cls in ALL}  # a section may build several
    for name, classes in built.items():
        try:
            unread = unread_keys(policy.detectors.get(name, {}), policy.detector_params(name), classes)
        except KeyError as exc:  # `param` names the detector and the key
            raise PolicyError(f"{policy.source}: {exc.args[0]}{_lacking(policy, name)}") from None
        except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
            raise PolicyError(f"{policy.source}: detectors.{name}: {exc}") from None
        if unread:
            raise PolicyError(f"{policy.source}: detectors.{name}: unknown parameter(s) {', '.join(unread)}")
    unknown = set(policy.detectors) - set(built)
    if unknown:
        raise PolicyError(f"{policy.source}: detectors: unknown detector(s) {sorted(map(str, unknown))}")


def _lacking(policy: Policy, name: str) -> str:
    """What a detector's section lacks against the bundled default's, all at once: a copy of an
    older default lacks every key added since, and naming only the first that a detector reads
    would take the operator one load per key."""
    if policy.source == "default":
        return ""

    def missing(default: Any, mine: Any, where: str) -> list[str]:
        out = []
        for key, value in default.items():
            if not isinstance(mine, dict) or key not in mine:
                out.append(f"{where}{key}")
            elif isinstance(value, dict):
                out += missing(value, mine[key], f"{where}{key}.")
        return out

    keys = missing(load_policy().detectors.get(name, {}), policy.detectors.get(name, {}), "")
    return f"; the section lacks {_listed(keys)} of the default policy's ({_UPGRADING})" if keys else ""


def _listed(keys: list[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


def _parse(raw: Any, source: str) -> Policy:
    def need(mapping: Any, key: str, where: str) -> Any:
        if not isinstance(mapping, dict) or key not in mapping:
            raise PolicyError(f"{source}: missing `{where}{key}`")
        return mapping[key]

    def number(mapping: Any, key: str, where: str, low: float = -math.inf, high: float = math.inf) -> float:
        return _number(need(mapping, key, where), f"{where}{key}", source, low, high)

    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: a policy is a mapping of keys, got {type(raw).__name__}")
    unknown_keys = set(raw) - _KEYS
    if unknown_keys:
        raise PolicyError(f"{source}: unknown key(s) {sorted(map(str, unknown_keys))}; known: {', '.join(sorted(_KEYS))}")
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:  # all at once: a copy of an older default lacks every key added since
        raise PolicyError(f"{source}: missing {_listed(missing)} of the default policy's ({_UPGRADING})")
    if type(raw["version"]) is not int or raw["version"] != VERSION:
        raise PolicyError(f"{source}: `version` must be {VERSION}, the policy format this Kabuguard reads, "
                          f"got {raw['version']!r}")
    kinds = ("login", "account_change", "order")
    bias = need(raw, "bias", "")
    for section, known in (("bias", kinds), ("decisions", kinds), ("containment", ("campaign_member_weight",))):
        extra = set(raw.get(section) or {}) - set(known) if isinstance(raw.get(section), dict) else set()
        if extra:  # `oder:` must not leave orders at a default silently
            raise PolicyError(f"{source}: {section}: unknown key(s) {sorted(map(str, extra))}; known: {', '.join(known)}")
    decisions = need(raw, "decisions", "")
    thresholds: dict[str, tuple[tuple[str, float], ...]] = {}
    for kind in kinds:
        levels = need(decisions, kind, "decisions.")
        if not isinstance(levels, dict):
            raise PolicyError(f"{source}: `decisions.{kind}` must map decisions to score thresholds")
        unknown = set(levels) - set(DECISIONS[1:])
        if unknown:
            raise PolicyError(f"{source}: decisions.{kind}: unknown decision(s) {sorted(map(str, unknown))}")
        ordered = sorted(((d, number(levels, d, f"decisions.{kind}.", 0.0, 1.0)) for d in levels),
                         key=lambda item: -_STRENGTH[item[0]])
        for (strong, above), (weak, below) in zip(ordered, ordered[1:]):
            if above <= below:  # the stronger decision is checked first: the weaker would never be made
                raise PolicyError(f"{source}: decisions.{kind}: `{strong}` ({above}) must be above `{weak}` "
                                  f"({below}), or no {kind} would ever get `{weak}`")
        thresholds[kind] = tuple(ordered)
    detectors = need(raw, "detectors", "")
    if not isinstance(detectors, dict) or not all(isinstance(v, dict) for v in detectors.values()):
        raise PolicyError(f"{source}: `detectors` must map each detector's name to its parameters")
    _finite(detectors, "detectors", source)
    return Policy(
        bias={kind: number(bias, kind, "bias.") for kind in kinds},
        thresholds=thresholds,
        min_reason_weight=number(raw, "min_reason_weight", ""),
        alert_cooldown_us=int(number(raw, "account_alert_cooldown_hours", "", 0.0, 24.0 * 366) * 3_600_000_000),
        campaign_member_weight=number(need(raw, "containment", ""), "campaign_member_weight", "containment."),
        own_session_llr=number(raw, "own_session_llr", ""),
        foreign_session_llr=number(raw, "foreign_session_llr", ""),
        fx_jpy=_fx(raw.get("fx_jpy", {}), source),
        detectors=dict(detectors),
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
        if _number(rate, f"fx_jpy.{currency}", source) <= 0:
            raise PolicyError(f"{source}: `fx_jpy.{currency}` must be a positive number, got {rate!r}")
        rates[str(currency)] = float(rate)
    return rates


def _fail_mode(value: Any, source: str) -> str:
    if value not in ("fail_open", "fail_closed"):
        raise PolicyError(f"{source}: `fail_mode` must be fail_open or fail_closed, got {value!r}")
    return str(value)
