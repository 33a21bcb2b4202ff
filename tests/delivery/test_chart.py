"""helm/captioner renders, lints strictly and validates for GKE's Kubernetes, every profile."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.delivery.chart import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    PROFILES,
    container,
    env_values,
    find,
    one,
    pod_spec,
    profile_values,
    render,
    render_profile,
)

# Custom resources kubernetes-validate has no schema for; each is checked below instead.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.googleapis.com/v1", "PodMonitoring"),
    ("monitoring.googleapis.com/v1", "Rules"),
    ("networking.gke.io/v1", "ManagedCertificate"),
    ("cloud.google.com/v1", "BackendConfig"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("networking.gke.io/v1", "HealthCheckPolicy"),
}
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def lint_problems(values: dict) -> list[str]:
    import helm_python as helm

    report = helm.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}"
    )
    # severity 1 is information ("icon is recommended"); strict makes warnings errors.
    return [m["error"] for m in report["messages"] if m["severity"] >= 2] + report["errors"]


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_lints_strictly(profile):
    assert lint_problems(profile_values(profile)) == []


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_objects_validate_strictly_for_gke(profile):
    docs = render_profile(profile)
    assert find(docs, "Deployment", "inference") and find(docs, "Deployment", "ui")
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            assert doc["metadata"]["namespace"] == NAMESPACE, name
            continue
        # Raises on unknown fields too (strict): a misspelt key is an error, not a no-op.
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_validation_is_strict_about_unknown_fields():
    deployment = one(render_profile("default"), "Deployment", "inference")
    pod_spec(deployment)["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    "bad",
    [
        {"replicas": 2},  # not a value of this chart
        {"inference": {"replicaCount": "two"}},
        {"inference": {"settings": {"max_batchsize": 8}}},  # misspelt setting
        {"inference": {"settings": {"variant": "fp8"}}},
        {"inference": {"settings": {"max_batch_size": 0}}},  # ServeSettings: ge=1
        {"inference": {"modelPackage": {"source": "s3"}}},
        {"inference": {"gpu": {"enabled": "yes"}}},
        {"ui": {"settings": {"mongodb_uri": "mongodb://x"}}},  # the chart sets it
        {"ui": {"ingress": {"backendConfig": {"sessionAffinity": "STICKY"}}}},
        {"serviceAccount": {"workloadIdentity": {"gcpServiceAccount": "me@gmail.com"}}},
        {"metrics": {"serviceMonitor": {"interval": "often"}}},
    ],
)
def test_values_that_break_the_schema_are_rejected(bad):
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError):
        render(bad)
    assert lint_problems(bad), "helm lint let it through"


def test_the_default_values_and_profiles_are_valid_for_the_schema():
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        for profile in PROFILES:
            chart.validate_schema(profile_values(profile))


def test_required_values_are_demanded_with_a_clear_message():
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match="gcsFuse.bucket is required"):
        render({"inference": {"modelPackage": {"source": "gcsFuse"}}})
    with pytest.raises(helm.HelmRenderError, match="mongodb.auth.password"):
        render({"mongodb": {"enabled": True}})
    mismatch = {"mongodb": {"enabled": True, "auth": {"database": "feedback"}}}
    with pytest.raises(helm.HelmRenderError, match="must be mongodb.auth.database"):
        render(mismatch)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_pod_runs_unprivileged(profile):
    for workload in [d for d in render_profile(profile) if d["kind"] in WORKLOADS]:
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"] + spec.get("initContainers", []):
            context = c["securityContext"]
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "bitnami" not in c["image"], where
            assert c.get("resources", {}).get("requests"), f"{where} requests nothing"


@pytest.mark.parametrize("profile", ["gpu", "autopilot"])
def test_gpu_profiles_ask_for_a_gpu_node(profile):
    deployment = one(render_profile(profile), "Deployment", "inference")
    spec = pod_spec(deployment)
    assert container(deployment, "inference")["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-l4"
    env = env_values(container(deployment, "inference"))
    assert env["CAPTIONER_PROVIDERS"] == '["CUDAExecutionProvider","CPUExecutionProvider"]'
    assert env["CAPTIONER_REQUIRE_GPU"] == "true"
    tolerations = spec.get("tolerations", [])
    gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    # GKE Standard taints GPU nodes; Autopilot adds the toleration itself.
    assert (gpu_toleration in tolerations) == (profile == "gpu")


def test_cpu_profile_asks_for_no_gpu():
    deployment = one(render_profile("cpu"), "Deployment", "inference")
    assert "nvidia.com/gpu" not in str(deployment)
    assert "cloud.google.com/gke-accelerator" not in pod_spec(deployment).get("nodeSelector", {})


def test_time_sharing_selects_shared_gpu_nodes():
    selector = pod_spec(one(render_profile("everything"), "Deployment", "inference"))[
        "nodeSelector"
    ]
    assert selector["cloud.google.com/gke-gpu-sharing-strategy"] == "time-sharing"
    assert selector["cloud.google.com/gke-max-shared-clients-per-gpu"] == "2"


@pytest.mark.parametrize(
    ("source", "extra", "volume"),
    [
        ("gcsFuse", {"gcsFuse": {"bucket": "models", "onlyDir": "v1"}}, "csi"),
        ("initCopy", {"initCopy": {"uri": "gs://models/v1/package.tar.gz"}}, "emptyDir"),
        ("pvc", {"pvc": {"claimName": "models", "subPath": "v1"}}, "persistentVolumeClaim"),
        ("image", {}, None),
    ],
)
def test_each_model_source_puts_the_package_where_the_service_looks(source, extra, volume):
    package = {"source": source, "mountPath": "/models", "path": "package", **extra}
    docs = render({"inference": {"modelPackage": package}})
    deployment = one(docs, "Deployment", "inference")
    kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    inference = container(deployment, "inference")
    assert env_values(inference)["CAPTIONER_MODEL_DIR"] == "/models/package"
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["name"]: m for m in inference["volumeMounts"]}
    if volume is None:
        assert "model" not in volumes and "model" not in mounts
        return
    assert volume in volumes["model"] and mounts["model"]["mountPath"] == "/models"
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert (annotations.get("gke-gcsfuse/volumes") == "true") == (source == "gcsFuse")
    if source == "gcsFuse":
        attributes = volumes["model"]["csi"]["volumeAttributes"]
        assert attributes == {"bucketName": "models", "mountOptions": "implicit-dirs,only-dir=v1"}
    if source == "initCopy":
        (fetch,) = pod_spec(deployment)["initContainers"]
        assert fetch["args"] == ["gs://models/v1/package.tar.gz", "/models/package"]
    if source == "pvc":
        assert mounts["model"]["subPath"] == "v1" and mounts["model"]["readOnly"] is True


def test_workload_identity_annotates_the_service_account():
    account = one(render_profile("gpu"), "ServiceAccount")
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == (
        "captioner-runtime@my-project.iam.gserviceaccount.com"
    )
    for workload in find(render_profile("gpu"), "Deployment"):
        assert pod_spec(workload)["serviceAccountName"] == account["metadata"]["name"]


def test_autoscaler_pdb_and_topology_spread():
    docs = render_profile("gpu")
    hpa = one(docs, "HorizontalPodAutoscaler", "inference")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == "captioner_requests_in_flight"
    cpu = one(render_profile("cpu"), "HorizontalPodAutoscaler", "inference")
    assert cpu["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    deployment = one(docs, "Deployment", "inference")
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    keys = {c["topologyKey"] for c in pod_spec(deployment)["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    pdb = one(docs, "PodDisruptionBudget", "inference")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_ingress_with_managed_certificate_and_websocket_backend():
    docs = render_profile("gpu")
    ingress = one(docs, "Ingress", "ui")
    certificate = one(docs, "ManagedCertificate", "ui")
    assert ingress["spec"]["ingressClassName"] == "gce"
    assert (
        ingress["metadata"]["annotations"]["networking.gke.io/managed-certificates"]
        == (certificate["metadata"]["name"])
    )
    assert certificate["spec"]["domains"] == ["captioner.example.com"]
    backend = one(docs, "BackendConfig", "ui")
    assert backend["spec"]["timeoutSec"] >= 3600  # Streamlit's websocket outlives 30 s
    service = one(docs, "Service", "ui")
    assert (
        backend["metadata"]["name"]
        in service["metadata"]["annotations"]["cloud.google.com/backend-config"]
    )


def test_mongodb_replica_set_from_the_official_image_with_auth():
    docs = render_profile("everything")
    statefulset = one(docs, "StatefulSet", "mongodb")
    mongo = container(statefulset, "mongodb")
    assert mongo["image"].startswith("docker.io/library/mongo:")
    assert statefulset["spec"]["replicas"] == 3
    assert "--replSet=rs0" in mongo["args"] and "--keyFile=/key/key" in mongo["args"]
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    secret = one(docs, "Secret", "mongodb")
    uri = secret["stringData"]["mongodb-uri"]
    # The password is escaped; every member is named; the set and auth database given.
    assert uri.startswith("mongodb://captioner:app+secret%2F%2B@demo-captioner-mongodb-0.")
    assert uri.count(".svc.cluster.local:27017") == 3
    assert uri.endswith("/captioner?authSource=captioner&replicaSet=rs0")
    ui = container(one(docs, "Deployment", "ui"), "ui")
    (from_secret,) = [e for e in ui["env"] if e["name"] == "MONGODB_URI"]
    assert from_secret["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "mongodb-uri",
    }
    job = one(docs, "Job", "mongodb-initiate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def test_external_mongodb_uri_comes_from_its_secret():
    docs = render({"externalMongodb": {"existingSecret": "atlas", "uriKey": "uri"}})
    ui = container(one(docs, "Deployment", "ui"), "ui")
    (from_secret,) = [e for e in ui["env"] if e["name"] == "MONGODB_URI"]
    assert from_secret["valueFrom"]["secretKeyRef"] == {"name": "atlas", "key": "uri"}
    assert not find(docs, "StatefulSet")


def test_network_policies_admit_the_ui_and_scrapers_only():
    docs = render_profile("everything")
    policy = one(docs, "NetworkPolicy", "inference")
    (rule,) = policy["spec"]["ingress"]
    ui_labels = one(docs, "Deployment", "ui")["spec"]["template"]["metadata"]["labels"]
    selectors = [p["podSelector"]["matchLabels"] for p in rule["from"] if "podSelector" in p]
    assert selectors == [{k: ui_labels[k] for k in selectors[0]}]
    mongo = one(docs, "NetworkPolicy", "mongodb")
    assert mongo["spec"]["ingress"][0]["ports"] == [{"port": "mongodb"}]


def test_training_job_gives_each_worker_its_tf_config():
    import json

    docs = render_profile("everything")
    job = one(docs, "Job", "training")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    trainer = container(job, "trainer")
    template = env_values(trainer)["TF_CONFIG_TEMPLATE"]
    for index in range(3):
        config = json.loads(template.replace("__INDEX__", str(index)))
        assert config["task"] == {"type": "worker", "index": index}
        assert config["cluster"]["worker"][index].startswith(f"demo-captioner-training-{index}.")
    service = one(docs, "Service", "training")
    assert pod_spec(job)["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"


def test_each_training_worker_starts_with_its_own_tf_config(tmp_path):
    """The Job's command line, run as the pod runs it, with a stand-in `captioner`."""
    import json
    import os
    import subprocess

    trainer = container(one(render_profile("everything"), "Job", "training"), "trainer")
    fake = tmp_path / "captioner"
    fake.write_text('#!/bin/sh\nprintf \'%s\\n\' "$TF_CONFIG" "$*"\n')
    fake.chmod(0o755)
    env = {**env_values(trainer), "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    for index in range(3):
        env["JOB_COMPLETION_INDEX"] = str(index)
        out = subprocess.run(
            trainer["command"] + trainer["args"] + ["--epochs", "2"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        assert json.loads(out[0])["task"] == {"type": "worker", "index": index}
        assert out[1] == "train --epochs 2"


def test_notes_say_how_to_reach_the_service():
    from tests.delivery.chart import render_raw

    notes = render_raw(profile_values("gpu"))["captioner/templates/NOTES.txt"]
    assert "port-forward service/demo-captioner-inference" in notes
    assert "https://captioner.example.com/" in notes
    assert "CUDAExecutionProvider" in notes


def test_the_values_schema_is_a_valid_json_schema():
    import subprocess
    import sys
    from pathlib import Path

    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--check-metaschema", str(CHART / "values.schema.json")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
