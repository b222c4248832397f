"""The detection core: keyed stages over one total order of events."""

from kabuguard.engine.pipeline import Pipeline
from kabuguard.engine.store import MemoryStore, Store

__all__ = ["MemoryStore", "Pipeline", "Store"]
