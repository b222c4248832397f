"""Threat intelligence that reaches the brokerage from outside its own logs: phishing domains
(`phish/`), and indicators shared between firms and with the regulator (STIX 2.1 `export`,
`pull`, `stats`; the TAXII 2.1 server in `taxii/`)."""
