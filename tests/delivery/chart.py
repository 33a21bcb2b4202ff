"""Render helm/captioner offline (helm-python-sdk: Helm's Go SDK, no binary, no cluster)."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "captioner"
MONITORING = REPO / "monitoring"
NAMESPACE = "captioner"
RELEASE = "demo"

# GKE's regular channel in late 2026 runs Kubernetes 1.36 (1.37, released upstream in
# August 2026, is still in the rapid channel); kubernetes-validate ships schemas up to
# 1.37. docs/deploy.md says the same.
KUBE_VERSION = "1.36.0"

# What a full deployment turns on beyond the GPU profile: every optional object.
EVERYTHING: dict[str, Any] = {
    "mongodb": {
        "auth": {
            "existingSecret": "",
            "rootPassword": "rootsecret",
            "password": "app secret/+",
            "replicaSetKey": "0123456789abcdef0123456789abcdef",
        }
    },
    "metrics": {"podMonitoring": {"enabled": True}, "gmpRules": {"enabled": True}},
    "training": {"enabled": True, "workers": 3, "runClaimName": "captioner-runs"},
    "inference": {"gpu": {"timeSharing": {"enabled": True}}},
}

# A canary in progress: the GPU profile on the internal Gateway, a challenger at 10 percent,
# the page behind Identity-Aware Proxy.
CANARY: dict[str, Any] = {
    "inference": {
        "modelVersion": "6",
        "canary": {
            "enabled": True,
            "weight": 10,
            "modelVersion": "7",
            "modelPackage": {"gcsFuse": {"onlyDir": "registry/7"}},
        },
    },
    "ui": {"ingress": {"iap": {"enabled": True, "oauthclientCredentials": {"secretName": "iap"}}}},
}

PROFILES: dict[str, tuple[list[str], dict[str, Any]]] = {
    "default": ([], {}),
    "cpu": (["values-cpu.yaml"], {}),
    "gpu": (["values-gpu.yaml"], {}),
    "autopilot": (["values-autopilot.yaml"], {}),
    "everything": (["values-gpu.yaml"], EVERYTHING),
    "canary": (["values-gpu.yaml", "values-gateway.yaml"], CANARY),
}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of values files: maps merge key by key, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def profile_values(profile: str) -> dict[str, Any]:
    files, extra = PROFILES[profile]
    values: dict[str, Any] = {}
    for name in files:
        values = merge(values, yaml.safe_load((CHART / name).read_text()))
    return merge(values, extra)


def render_raw(values: dict[str, Any]) -> dict[str, str]:
    """``helm template``: template path -> rendered text."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The rendered objects (NOTES.txt left out)."""
    docs = []
    for path, text in sorted(render_raw(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


@lru_cache
def _render_profile(profile: str) -> list[dict[str, Any]]:
    return render(profile_values(profile))


def render_profile(profile: str) -> list[dict[str, Any]]:
    return copy.deepcopy(_render_profile(profile))


def find(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> list[dict]:
    return [
        d
        for d in docs
        if d["kind"] == kind
        and (
            component is None
            or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        )
    ]


def one(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict:
    found = find(docs, kind, component)
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    return found


def env_values(c: dict[str, Any]) -> dict[str, str]:
    """A container's plain variables (those from secrets are left out)."""
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
