"""deploy/kubernetes: every overlay renders, validates strictly against the Kubernetes schemas (oldest and newest
supported), and keeps the invariants schemas cannot see (selectors, ports, targets, addresses, settings,
probes, limits, security). No cluster is needed: rendering and validation are offline.
"""

from __future__ import annotations

import argparse
import importlib
import re

import pytest
from kubernetes_validate import utils as kube_validate

from ingot.common import settings
from tests.deploy.manifests import (NEWEST_KUBERNETES, OLDEST_KUBERNETES, OVERLAYS, WORKLOADS, containers,
                                    environment, named, of_kind, pod_labels, pod_spec, render,
                                    selected_deployments, selects)

# The settings model of each command the image runs: a variable a manifest sets must be one of its fields.
SETTINGS = {
    "edge": "edge.shared.settings:EdgeSettings",
    "tokenizer": "services.tokenizer.settings:TokenizerSettings",
    "registry": "services.registry.settings:RegistrySettings",
    "inference": "services.inference.settings:InferenceSettings",
    "embeddings": "services.embeddings.settings:EmbeddingsSettings",
    "seed-models": "ingot.seedmodels:SeedSettings",
}
# Objects of CRDs, which kubernetes-validate has no schema for; their references are checked below instead.
CUSTOM_KINDS = {"ServiceMonitor"}
# Created by the operator, never rendered from git (see overlays/prod/kustomization.yaml).
OPERATOR_SECRETS = {"prod": {"ingot-api-keys"}, "gpu": {"ingot-api-keys"}, "dev": set()}


def settings_model(command: str) -> type:
    module, name = SETTINGS[command].split(":")
    return getattr(importlib.import_module(module), name)


overlays = pytest.mark.parametrize("overlay", OVERLAYS)


@overlays
@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
def test_every_overlay_validates_strictly_against_the_kubernetes_schemas(overlay, version):
    docs = render(overlay)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                                          "NetworkPolicy", "ConfigMap", "PersistentVolumeClaim"}
    problems = []
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kube_validate.validate(doc, version, strict=True)
        except kube_validate.ValidationError as err:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, err.path))}: {err.message}")
    assert not problems, "\n".join(problems)


def test_strict_validation_catches_a_misspelt_field():
    deployment = named(render("dev"), "Deployment", "ingot-edge")
    pod_spec(deployment)["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/ready", "port": "http"}}
    with pytest.raises(kube_validate.ValidationError):
        kube_validate.validate(deployment, NEWEST_KUBERNETES, strict=True)


@overlays
def test_each_workload_is_a_deployment_with_a_service_an_autoscaler_and_a_disruption_budget(overlay):
    docs = render(overlay)
    for workload in WORKLOADS:
        name = f"ingot-{workload}"
        deployment = named(docs, "Deployment", name)
        assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment))
        service = named(docs, "Service", name)
        assert selected_deployments(docs, service["spec"]["selector"]) == [deployment]
        grpc = workload != "edge"
        # gRPC: headless, so dns:/// resolves every pod and round_robin spreads calls over them.
        assert (service["spec"].get("clusterIP") == "None") is grpc
        if grpc:
            port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
            assert port["appProtocol"] == "kubernetes.io/h2c"
        autoscalers = [h for h in of_kind(docs, "HorizontalPodAutoscaler")
                       if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}]
        assert len(autoscalers) == 1, f"{name}: {len(autoscalers)} autoscalers"
        budgets = [p for p in of_kind(docs, "PodDisruptionBudget")
                   if selected_deployments(docs, p["spec"]["selector"]["matchLabels"]) == [deployment]]
        assert len(budgets) == 1, f"{name}: {len(budgets)} disruption budgets"
    for autoscaler in of_kind(docs, "HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]
        deployment = named(docs, target["kind"], target["name"])
        assert autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
        if any(m["type"] == "Resource" for m in autoscaler["spec"]["metrics"]):
            # Utilization is a share of the request: without one the autoscaler cannot compute it.
            assert all("cpu" in c["resources"]["requests"] for c in containers(deployment))


@overlays
def test_every_service_port_targets_a_port_its_pods_declare(overlay):
    docs = render(overlay)
    for service in of_kind(docs, "Service"):
        pods = selected_deployments(docs, service["spec"]["selector"])
        assert pods, f"Service {service['metadata']['name']} selects no Deployment"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for deployment in pods:
                declared = [p for c in containers(deployment) for p in c.get("ports", [])]
                assert any(p.get("name") == target or p["containerPort"] == target for p in declared), \
                    f"Service {service['metadata']['name']} port {port['name']} targets {target!r}, not declared"
    for monitor in of_kind(docs, "ServiceMonitor"):
        selector = monitor["spec"]["selector"]
        services = [s for s in of_kind(docs, "Service") if _matches(selector, s["metadata"]["labels"])]
        assert services, f"ServiceMonitor {monitor['metadata']['name']} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            for service in services:
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def _matches(selector, labels) -> bool:
    if not selects(selector.get("matchLabels", {}), labels) and "matchLabels" in selector:
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


ADDRESS = re.compile(r"^(?:dns:///)?(?P<host>[a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(?P<port>\d+)$")


@overlays
def test_every_address_setting_names_a_real_service_and_port(overlay):
    docs = render(overlay)
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in of_kind(docs, "Service")}
    checked = 0
    for deployment in of_kind(docs, "Deployment"):
        for container in containers(deployment, init=True):
            for variable, value in environment(docs, container).items():
                if not re.fullmatch(r"INGOT_\w+_ADDRESS", variable):
                    continue
                match = ADDRESS.match(value)
                assert match, f"{variable}={value!r} is not host:port"
                assert match["host"] in services, f"{variable}={value!r}: no Service {match['host']}"
                assert int(match["port"]) in services[match["host"]], f"{variable}={value!r}: no such port"
                checked += 1
    assert checked >= 7  # the edge's four and the registry address of the three other services


@overlays
def test_every_setting_a_manifest_sets_is_a_valid_setting_of_that_service(overlay):
    docs = render(overlay)
    for deployment in of_kind(docs, "Deployment"):
        for container in containers(deployment, init=True):
            command = container["args"][0]
            model = settings_model(command)
            env = environment(docs, container)
            known = {settings.env_name(field) for field in model.model_fields}
            unknown = {name for name in env if name.startswith("INGOT_")} - known
            assert not unknown, f"{container['name']} ({command}) has no settings {sorted(unknown)}"
            # The values parse as the service would parse them (an exit here is the service's own error).
            settings.from_namespace(model, argparse.Namespace(), env)


@overlays
def test_every_container_has_probes_limits_and_a_locked_down_security_context(overlay):
    docs = render(overlay)
    for deployment in of_kind(docs, "Deployment"):
        spec = pod_spec(deployment)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] >= 10000
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in containers(deployment, init=True):
            where = f"{deployment['metadata']['name']}/{container['name']}"
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), f"{where}: {kind}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where
        for container in spec["containers"]:
            assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container), container["name"]
            # The read-only root needs a writable /tmp.
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}


@overlays
def test_grpc_services_are_probed_over_grpc_health_and_the_edge_over_health_and_ready(overlay):
    docs = render(overlay)
    for workload in WORKLOADS:
        (container,) = pod_spec(named(docs, "Deployment", f"ingot-{workload}"))["containers"]
        if workload == "edge":
            assert container["livenessProbe"]["httpGet"]["path"] == "/health"
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
            continue
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["grpc"]["port"] == port
        # Without an age, replicas added later get no calls from connections opened before them.
        assert float(environment(docs, container)["INGOT_MAX_CONNECTION_AGE"]) > 0
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "too short for a model load"


@overlays
def test_a_rolling_update_drains_streams_instead_of_cutting_them(overlay):
    docs = render(overlay)
    for workload in WORKLOADS:
        deployment = named(docs, "Deployment", f"ingot-{workload}")
        (container,) = pod_spec(deployment)["containers"]
        drain = float(environment(docs, container)["INGOT_SHUTDOWN_GRACE"])
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] > pre_stop + drain, workload
    for workload in ("edge", "inference"):
        (container,) = pod_spec(named(docs, "Deployment", f"ingot-{workload}"))["containers"]
        # Longer than the longest generation the edge waits for (first_token_timeout is 120 s).
        assert float(environment(docs, container)["INGOT_SHUTDOWN_GRACE"]) >= 300


@overlays
def test_no_image_floats_on_latest(overlay):
    for deployment in of_kind(render(overlay), "Deployment"):
        for container in containers(deployment, init=True):
            image = container["image"]
            last = image.split("@")[0].rsplit("/", 1)[-1]
            tag = last.rsplit(":", 1)[1] if ":" in last else ""
            assert "@sha256:" in image or tag not in ("", "latest"), image


@overlays
def test_only_the_registry_writes_the_shared_model_volume(overlay):
    docs = render(overlay)
    (claim,) = of_kind(docs, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for deployment in of_kind(docs, "Deployment"):
        spec = pod_spec(deployment)
        for volume in spec["volumes"]:
            claim_ref = volume.get("persistentVolumeClaim")
            if claim_ref is None:
                continue
            assert claim_ref["claimName"] == claim["metadata"]["name"]
            writer = deployment["metadata"]["name"] == "ingot-registry"
            assert claim_ref.get("readOnly", False) is not writer
            for container in containers(deployment, init=True):
                for mount in container.get("volumeMounts", []):
                    if mount["name"] == volume["name"]:
                        assert mount.get("readOnly", False) is not writer, container["name"]


@overlays
def test_every_referenced_config_map_and_secret_is_rendered_or_left_to_the_operator(overlay):
    docs = render(overlay)
    secrets = {s["metadata"]["name"] for s in of_kind(docs, "Secret")} | OPERATOR_SECRETS[overlay]
    for deployment in of_kind(docs, "Deployment"):
        for volume in pod_spec(deployment)["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
        for container in containers(deployment, init=True):
            environment(docs, container)  # asserts each envFrom ConfigMap exists


@overlays
def test_the_network_policies_deny_by_default_and_allow_each_edge_of_the_mesh(overlay):
    docs = render(overlay)
    policies = of_kind(docs, "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")
            and not p["spec"].get("egress")]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    calls = {("edge", "tokenizer"), ("edge", "registry"), ("edge", "inference"), ("edge", "embeddings"),
             ("tokenizer", "registry"), ("inference", "registry"), ("embeddings", "registry")}
    ports = {w: c["ports"][0]["containerPort"]
             for w in WORKLOADS for c in pod_spec(named(docs, "Deployment", f"ingot-{w}"))["containers"]}

    def labels(workload):
        return pod_labels(named(docs, "Deployment", f"ingot-{workload}"))

    def allowed(direction, policy_pod, peer_pod, port):
        peer_key = "from" if direction == "ingress" else "to"
        for policy in policies:
            if not selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels(policy_pod)):
                continue
            for rule in policy["spec"].get(direction, []):
                peers = rule.get(peer_key)
                peer_ok = peers is None or any(selects(p.get("podSelector", {}).get("matchLabels", {}), labels(peer_pod))
                                               and "namespaceSelector" not in p for p in peers)
                port_ok = "ports" not in rule or any(p["port"] == port for p in rule["ports"])
                if peer_ok and port_ok:
                    return True
        return False

    for caller, callee in calls:
        assert allowed("egress", caller, callee, ports[callee]), f"{caller} may not call {callee}"
        assert allowed("ingress", callee, caller, ports[callee]), f"{callee} does not admit {caller}"
    assert not allowed("ingress", "inference", "tokenizer", ports["inference"])


def test_the_gpu_overlay_runs_inference_on_the_cuda_image_with_a_gpu():
    docs = render("gpu")
    for deployment in of_kind(docs, "Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        gpu = deployment["metadata"]["name"] == "ingot-inference"
        assert container["image"].endswith("-cuda") is gpu
        assert ("nvidia.com/gpu" in container["resources"]["limits"]) is gpu
    registry = named(docs, "Deployment", "ingot-registry")
    assert environment(docs, pod_spec(registry)["containers"][0])["INGOT_EXECUTION_PROVIDERS"] == "cuda,cpu"


def test_prod_scales_inference_on_requests_waiting():
    autoscaler = named(render("prod"), "HorizontalPodAutoscaler", "ingot-inference")
    (metric,) = autoscaler["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "ingot_inference_active_sequences"
    from ingot.common.metrics import ACTIVE_SEQUENCES

    assert ACTIVE_SEQUENCES._name == "ingot_inference_active_sequences"
