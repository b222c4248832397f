"""The online decision service: the detection core behind an authenticated HTTP API."""
