"""Phishing-domain monitoring for securities brands: registry, scoring, watching, evaluation."""
