"""The dead-letter queue (admin): list, redrive one or all, discard (/admin/dlq)."""
