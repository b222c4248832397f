"""Threat intelligence that reaches the brokerage from outside its own logs (phishing domains)."""
