"""Celery tasks of inbound side work: media downloads (see messaging.services.inbound)."""
