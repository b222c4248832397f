"""TAXII 2.1: a server inside `kabuguard serve` (`server.py`) over the service's database (`store.py`)."""
