"""Kabuguard: account-takeover and market-manipulation defence for online brokerages."""

__version__ = "0.1.0"
