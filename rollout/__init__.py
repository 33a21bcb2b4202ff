"""Canary analysis: canary against stable on live Prometheus metrics, and a verdict.

``rollout.promql`` builds the queries and asks Prometheus's HTTP API, ``rollout.analysis``
turns the two versions' numbers into signals and a verdict (promote, hold, roll back),
``rollout.report`` prints them, and ``rollout.settings`` holds every threshold. The
package imports no other component: it knows the service only by its metric names.
"""
