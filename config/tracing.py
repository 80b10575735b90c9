"""OpenTelemetry traces across web, Celery and provider calls, when OTEL_EXPORTER_OTLP_ENDPOINT is set.

`tracing_setup()` is called once where each process starts: config/asgi.py for web processes, the
`worker_process_init` signal (config/celery.py) in each Celery pool process. With the variable
unset it returns at once and imports nothing of OpenTelemetry, so tracing costs nothing when off.

Set, it installs an SDK tracer provider (service name OTEL_SERVICE_NAME, default "conversa") that
batches spans to the OTLP/HTTP exporter, which reads the standard OTEL_EXPORTER_OTLP_* variables
(endpoint, headers, timeout), and instruments:
- Django: a server span per request (ASGI or WSGI), named by its route;
- Celery: a producer span where a task is enqueued and a consumer span where it runs; the trace
  context travels in the task's message headers, so a send's task joins the request's trace;
- requests: a client span per provider call (providers/http.py), with `traceparent` sent along;
- psycopg: a span per SQL statement.
"""

import os

_provider = None


def tracing_is_enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def tracing_setup(*, exporter=None) -> bool:
    """Trace this process when OTEL_EXPORTER_OTLP_ENDPOINT is set; return whether tracing is on.

    `exporter` replaces the OTLP exporter (tests pass an in-memory one). A second call changes
    nothing: instrumentation and the global tracer provider are installed once per process.
    """
    global _provider
    if not tracing_is_enabled():
        return False
    if _provider is not None:
        return True
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    service_name = os.environ.get("OTEL_SERVICE_NAME") or "conversa"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    # Batched, in a background thread: a request or task never waits for the collector.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    # Django's middleware list is read when the first handler is built: this runs before that.
    DjangoInstrumentor().instrument(tracer_provider=provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    RequestsInstrumentor().instrument(tracer_provider=provider)
    # Django opens its pooled connections with psycopg.Connection.connect, which this wraps.
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    _provider = provider
    return True


def tracing_flush() -> None:
    """Export the spans still batched (a pool process ends, a test reads them)."""
    if _provider is not None:
        _provider.force_flush()
