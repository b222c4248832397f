"""The event contract: typed records, readers and the total order."""

from kabuguard.events.model import DECIDABLE, Event
from kabuguard.events.order import Ordered, total_order
from kabuguard.events.reader import Rejection, expand_paths, read_file

__all__ = ["DECIDABLE", "Event", "Ordered", "Rejection", "expand_paths", "read_file", "total_order"]
