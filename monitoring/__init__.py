"""Dashboards, recording and alerting rules for captioner, generated from code.

``python -m monitoring.generate`` writes ``monitoring/dashboards/*.json`` and
``monitoring/rules/*.yaml``; the files are committed (Grafana and Prometheus read
them, the Helm chart ships them) and a test regenerates them to prove they are current.
"""
