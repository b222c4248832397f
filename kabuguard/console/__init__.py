"""The analyst console: users, cases, the audit log, containment and its webhooks, and the pages.

Served by the same app as the decision API (`kabuguard serve`, at `/console`); see
docs/console.md.
"""
