"""Per-firm pseudonyms: account and device ids as keyed hashes, so that nothing shared names a customer.

HMAC-SHA256 under a key only the firm holds: the same id always gives the same pseudonym (a
regulator can count a victim once across months), another firm cannot reverse it or test a
guess without the key, and changing the key unlinks everything shared before. The firm's STIX
object ids are keyed the same way (`object_id`). The key comes
from the environment (`KABUGUARD_INTEL_KEY`), never from the repository or the command line.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from kabuguard.intel.stix import id_from

KEY_ENV = "KABUGUARD_INTEL_KEY"
_MIN_KEY_BYTES = 16


class MissingKey(ValueError):
    """No pseudonymisation key configured, or one too short to be secret."""


class Pseudonymiser:
    """Keyed hashes of identifiers, one namespace per kind (`account`, `device`)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise MissingKey(f"{KEY_ENV}: the pseudonymisation key must be at least {_MIN_KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def from_env(cls) -> Pseudonymiser:
        key = os.environ.get(KEY_ENV, "")
        if not key:
            raise MissingKey(f"{KEY_ENV} is not set: export a secret of at least {_MIN_KEY_BYTES} characters "
                             f"(e.g. `export {KEY_ENV}=$(openssl rand -hex 32)`), the same for every export of this firm")
        return cls(key.encode())

    def object_id(self, kind: str, *parts: str) -> str:
        """The STIX id of the firm's object of type `kind` about `parts`: the same in every export
        under this key, so peers deduplicate; unpredictable without the key, so that no other firm
        can take the id first in a collection, or post it to learn whether this firm shared it."""
        digest = hmac.new(self._key, "\x00".join(("stix-id", kind, *parts)).encode(), hashlib.sha256).digest()
        return id_from(kind, digest)

    def __call__(self, kind: str, identifier: str) -> str:
        digest = hmac.new(self._key, f"{kind}\x00{identifier}".encode(), hashlib.sha256).hexdigest()
        return f"{kind[:3]}-{digest[:32]}"
