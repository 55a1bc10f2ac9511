"""Deterministic orchestration: wait, send with a retry policy, record, call back. No I/O here."""
