"""Device reputation: a device fingerprint that served risky sessions on other accounts.

The attacker's machine or emulator moves from victim to victim, and to the attackers' own
accounts. Known false positives: a family PC one of whose users was phished.
"""

from __future__ import annotations

from typing import ClassVar

from kabuguard.detectors.ip_reputation import _Reputation


class DeviceReputation(_Reputation):
    name: ClassVar[str] = "device_reputation"
    stage: ClassVar[str] = "device"
