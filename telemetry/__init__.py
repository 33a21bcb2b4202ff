"""Telemetry set-up that the service and the page share: tracer providers and log lines.

Its own package so that neither component imports the other for it; what only the
service records (its stage spans and Prometheus metrics) stays in ``inference``.
"""
