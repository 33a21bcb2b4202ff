"""OpenTelemetry: a tracer provider configured by the standard ``OTEL_*`` variables.

``OTEL_TRACES_EXPORTER`` picks the exporter (``otlp``, ``console``, ``none``;
comma-separated for several). Unlike the SDK's auto-configuration its default
is ``none`` unless an OTLP endpoint is set, so a laptop without a collector
does not log an export failure every few seconds. The OTLP exporter reads
``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``/``HEADERS`` itself; sampling follows
``OTEL_TRACES_SAMPLER``; ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
name the resource. Nothing is set globally: the app gets the provider passed in.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter


def exporter_names() -> list[str]:
    configured = os.environ.get("OTEL_TRACES_EXPORTER")
    if configured is None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        configured = "otlp" if endpoint else "none"
    return [name.strip() for name in configured.split(",") if name.strip()]


def _exporter(name: str) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        )
        if protocol != "http/protobuf":
            raise ValueError(
                f"OTLP protocol {protocol!r} is not installed; use http/protobuf "
                "(port 4318 on the OpenTelemetry Collector)"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER {name!r} is not one of otlp, console, none")


def build_tracer_provider(service_name: str) -> TracerProvider:
    """A provider whose resource and exporters follow the ``OTEL_*`` environment."""
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in exporter_names():
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def current_ids() -> tuple[str, str] | None:
    """The (trace id, span id) in hex of the current span, or None outside a trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
