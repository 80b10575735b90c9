"""Celery tasks of the outbox: delivery, sweeps, scheduled sends (see messaging.services.outbound)."""
