"""Durable records of the service: decisions, alerts, API keys and (embedded) the event log."""

from kabuguard.service.storage.database import Database, migrate
from kabuguard.service.storage.models import alerts, api_keys, decisions, events, metadata

__all__ = ["Database", "alerts", "api_keys", "decisions", "events", "metadata", "migrate"]
