"""Many accounts from one device: an attacker's machine walking through a list of victims.

A device fingerprint is far more personal than an IP address, so fewer accounts suffice.
Known false positives: a family sharing one PC, a branch-office terminal.
"""

from __future__ import annotations

from typing import ClassVar

from kabuguard.detectors.shared_ip import _ManyAccounts


class SharedDevice(_ManyAccounts):
    name: ClassVar[str] = "shared_device"
    stage: ClassVar[str] = "device"
