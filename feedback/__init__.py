"""Feedback on captions (docs/architecture.md, feedback): validated records, the MongoDB
store, the durable outbox and its flusher, the embedded database, the Prometheus metrics and
the export as a training dataset. :func:`feedback.runtime.build` wires them for a process.

Nothing is imported here: the launcher must set ``PROMETHEUS_MULTIPROC_DIR`` before
prometheus_client is imported, and the export command needs neither Streamlit nor SQLite.
"""
