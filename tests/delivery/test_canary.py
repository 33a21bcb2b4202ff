"""The canary on GKE: two inference tracks, the weighted HTTPRoute, IAP on the page."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from tests.delivery.chart import (
    KUBE_VERSION,
    NAMESPACE,
    container,
    env_values,
    find,
    merge,
    one,
    pod_spec,
    profile_values,
    render,
    render_profile,
)

GATEWAY_API = "gateway.networking.k8s.io/v1"

# The fields of the Gateway API v1 objects the chart writes (the standard channel's CRDs,
# gateway.networking.k8s.io_httproutes.yaml and _gateways.yaml): kubernetes-validate has
# no schema for them, so the structure is held to these here.
PARENT_REF_FIELDS = {"group", "kind", "namespace", "name", "sectionName", "port"}
BACKEND_REF_FIELDS = {"group", "kind", "namespace", "name", "port", "weight", "filters"}
ROUTE_RULE_FIELDS = {"name", "matches", "filters", "backendRefs", "timeouts", "retry"}
LISTENER_FIELDS = {"name", "hostname", "port", "protocol", "tls", "allowedRoutes"}
MAX_WEIGHT = 1_000_000  # HTTPBackendRef.weight: 0 to 1,000,000
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def canary(weight: int = 10, **extra) -> dict:
    """The GPU profile on the internal Gateway with a challenger at ``weight`` percent."""
    values = merge(profile_values("canary"), {"inference": {"canary": {"weight": weight}}})
    return merge(values, extra)


def pod_labels(workload: dict) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_gateway_api_structure(docs: list[dict]) -> None:
    """The HTTPRoute and Gateway hold to the v1 fields, and name what the release renders."""
    services = {s["metadata"]["name"]: s for s in find(docs, "Service")}
    gateways = {g["metadata"]["name"]: g for g in find(docs, "Gateway")}
    for route in find(docs, "HTTPRoute"):
        assert route["apiVersion"] == GATEWAY_API
        assert set(route["spec"]) <= {"parentRefs", "hostnames", "rules"}
        for ref in route["spec"]["parentRefs"]:
            assert set(ref) <= PARENT_REF_FIELDS and ref["name"]
            assert (ref["group"], ref["kind"]) == ("gateway.networking.k8s.io", "Gateway")
            if ref["name"] in gateways:
                listeners = [li["name"] for li in gateways[ref["name"]]["spec"]["listeners"]]
                assert ref.get("sectionName", listeners[0]) in listeners
        for rule in route["spec"]["rules"]:
            assert set(rule) <= ROUTE_RULE_FIELDS
            assert 1 <= len(rule["backendRefs"]) <= 16
            for ref in rule["backendRefs"]:
                assert set(ref) <= BACKEND_REF_FIELDS
                assert (ref["group"], ref["kind"]) == ("", "Service")
                assert isinstance(ref["weight"], int) and 0 <= ref["weight"] <= MAX_WEIGHT
                service = services[ref["name"]]  # a Service of this release
                assert ref["port"] in [p["port"] for p in service["spec"]["ports"]]
    for gateway in gateways.values():
        assert gateway["apiVersion"] == GATEWAY_API
        assert gateway["spec"]["gatewayClassName"].startswith("gke-l7-")
        for listener in gateway["spec"]["listeners"]:
            assert set(listener) <= LISTENER_FIELDS and DNS_LABEL.match(listener["name"])
            assert listener["protocol"] in {"HTTP", "HTTPS"}
    for policy in find(docs, "HealthCheckPolicy"):
        target = policy["spec"]["targetRef"]
        assert (target["group"], target["kind"]) == ("", "Service")
        assert target["name"] in services
        assert policy["spec"]["default"]["config"]["httpHealthCheck"]["requestPath"] == (
            "/v2/health/ready"
        )
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("weight", [0, 10, 50, 100])
def test_the_route_weighs_stable_against_canary(weight):
    docs = render(canary(weight))
    route = one(docs, "HTTPRoute")
    (rule,) = route["spec"]["rules"]
    stable, challenger = one(docs, "Service", "inference"), one(docs, "Service", "inference-canary")
    port = stable["spec"]["ports"][0]["port"]
    assert [(r["name"], r["port"], r["weight"]) for r in rule["backendRefs"]] == [
        (stable["metadata"]["name"], port, 100 - weight),
        (challenger["metadata"]["name"], port, weight),
    ]
    check_gateway_api_structure(docs)


def test_two_tracks_with_their_own_labels_models_and_services():
    docs = render_profile("canary")
    stable, challenger = (
        one(docs, "Deployment", "inference"),
        one(docs, "Deployment", "inference-canary"),
    )
    assert stable["metadata"]["name"] == "demo-captioner-inference"  # the name it always had
    labels = {"stable": pod_labels(stable), "canary": pod_labels(challenger)}
    assert labels["stable"]["track"] == "stable" and labels["canary"]["track"] == "canary"
    assert labels["stable"]["captioner.io/model-version"] == "6"
    assert labels["canary"]["captioner.io/model-version"] == "7"

    def mount(workload):
        (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == "model"]
        return volume["csi"]["volumeAttributes"]["mountOptions"]

    assert mount(stable).endswith("only-dir=shapes-attention")
    assert mount(challenger).endswith("only-dir=registry/7")
    # Same image, settings and package path: only the model differs.
    assert container(stable, "inference")["image"] == container(challenger, "inference")["image"]
    assert env_values(container(stable, "inference")) == env_values(
        container(challenger, "inference")
    )
    # Neither selector (Deployment, Service) takes in the other track's pods.
    for workload, other in ((stable, challenger), (challenger, stable)):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(workload)) and not selects(selector, pod_labels(other))
    for service, own, other in (
        (one(docs, "Service", "inference"), stable, challenger),
        (one(docs, "Service", "inference-canary"), challenger, stable),
    ):
        assert selects(service["spec"]["selector"], pod_labels(own))
        assert not selects(service["spec"]["selector"], pod_labels(other))
    # The autoscaler and the budget stay the stable track's; the canary has a fixed size.
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == stable["metadata"]["name"]
    assert challenger["spec"]["replicas"] == 1 and "replicas" not in stable["spec"]
    pdb = one(docs, "PodDisruptionBudget", "inference")
    assert not selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(challenger))


def test_canary_objects_validate_for_gke():
    docs = render_profile("canary")
    for doc in docs:
        if doc["kind"] in ("Deployment", "Service", "NetworkPolicy"):
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    check_gateway_api_structure(docs)


def test_the_structure_check_can_fail():
    docs = render(canary(10))
    one(docs, "HTTPRoute")["spec"]["rules"][0]["backendRefs"][1]["name"] = "elsewhere"
    with pytest.raises(KeyError):
        check_gateway_api_structure(docs)
    docs = render(canary(10))
    one(docs, "HTTPRoute")["spec"]["rules"][0]["backendRefs"][0]["weigth"] = 90
    with pytest.raises(AssertionError):
        check_gateway_api_structure(docs)


@pytest.mark.parametrize("weight", [150, -1, 10.5, "10"])
def test_a_weight_outside_0_to_100_is_refused(weight):
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError):
        render(canary(weight))


@pytest.mark.parametrize("profile", ["default", "gpu", "autopilot"])
def test_without_a_canary_there_is_no_canary_and_no_route(profile):
    docs = render_profile(profile)
    assert not [d for d in docs if "canary" in d["metadata"]["name"]]
    assert not [d for d in docs if d["metadata"].get("labels", {}).get("track") == "canary"]
    for kind in ("HTTPRoute", "Gateway", "HealthCheckPolicy"):
        assert not find(docs, kind), kind
    assert "iap" not in str(find(docs, "BackendConfig"))


def test_the_route_stays_whole_on_stable_when_the_canary_goes():
    """deploy.yml rolls back by turning the canary off: the route then sends all to stable."""
    values = canary(10)
    values["inference"]["canary"]["enabled"] = False
    docs = render(values)
    (rule,) = one(docs, "HTTPRoute")["spec"]["rules"]
    assert [(r["name"], r["weight"]) for r in rule["backendRefs"]] == [
        ("demo-captioner-inference", 100)
    ]
    assert not find(docs, "Deployment", "inference-canary")
    check_gateway_api_structure(docs)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"gateway": {"enabled": False}}, "inference.canary needs gateway.enabled"),
        ({"inference": {"modelVersion": ""}}, "inference.modelVersion and inference.canary"),
        (
            {"inference": {"canary": {"modelVersion": "6"}}},
            "must differ from inference.modelVersion",
        ),
    ],
)
def test_a_canary_without_a_route_or_versions_is_refused(extra, message):
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match=message):
        render(canary(10, **extra))


def test_the_page_calls_the_route_when_it_has_an_address():
    ui = container(one(render_profile("canary"), "Deployment", "ui"), "ui")
    assert env_values(ui)["CAPTIONER_SERVICE_URL"] == "http://inference.captioner.internal"
    values = canary(10)
    values["gateway"]["url"] = ""
    ui = container(one(render(values), "Deployment", "ui"), "ui")
    assert env_values(ui)["CAPTIONER_SERVICE_URL"] == "http://demo-captioner-inference:8000"


def test_scrapes_carry_the_track_and_model_version_of_the_pod():
    """The relabeling names pod labels the Deployments really set, for both monitors."""
    values = canary(10, metrics={"podMonitoring": {"enabled": True}})
    docs = render(values)
    for component in ("inference", "inference-canary"):
        labels = pod_labels(one(docs, "Deployment", component))
        sanitized = {"__meta_kubernetes_pod_label_" + re.sub(r"\W", "_", k) for k in labels}
        monitor = one(docs, "ServiceMonitor", component)
        (endpoint,) = monitor["spec"]["endpoints"]
        relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
        assert set(relabel) == {"track", "model_version"}
        assert {s for sources in relabel.values() for s in sources} <= sanitized
        gmp = one(docs, "PodMonitoring", component)
        from_pod = gmp["spec"]["targetLabels"]["fromPod"]
        assert {f["from"] for f in from_pod} <= set(labels)
        assert {f.get("to", f["from"]) for f in from_pod} == {"track", "model_version"}
    assert "relabelings" not in str(one(docs, "ServiceMonitor", "ui"))


def test_network_policies_admit_the_load_balancer_to_both_tracks():
    docs = render_profile("canary")
    sources = profile_values("canary")["gateway"]["sourceRanges"]
    for component in ("inference", "inference-canary"):
        policy = one(docs, "NetworkPolicy", component)
        deployment = one(docs, "Deployment", component)
        assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(deployment))
        blocks = [
            p["ipBlock"]["cidr"]
            for r in policy["spec"]["ingress"]
            for p in r["from"]
            if "ipBlock" in p
        ]
        assert blocks == sources


def test_iap_guards_the_page_through_its_backend_config():
    docs = render_profile("canary")
    backend = one(docs, "BackendConfig", "ui")
    assert backend["spec"]["iap"] == {
        "enabled": True,
        "oauthclientCredentials": {"secretName": "iap"},
    }
    service = one(docs, "Service", "ui")
    annotation = service["metadata"]["annotations"]["cloud.google.com/backend-config"]
    assert annotation == f'{{"default": "{backend["metadata"]["name"]}"}}'
    assert backend["spec"]["timeoutSec"] >= 3600  # the websocket still outlives IAP's checks


def test_iap_needs_its_oauth_client_secret():
    import helm_python as helm

    values = merge(profile_values("gpu"), {"ui": {"ingress": {"iap": {"enabled": True}}}})
    with pytest.raises(helm.HelmRenderError, match="oauthclientCredentials.secretName is required"):
        render(values)
