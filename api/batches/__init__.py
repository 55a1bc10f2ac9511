"""Batches: POST /notify/batch (many notifications on one channel, one workflow) and GET /batches/{id}."""
