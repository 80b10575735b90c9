"""Writes of messaging, one module per flow: outbound (the outbox), inbound (webhook ingest), statuses."""
