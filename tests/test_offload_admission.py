"""The AWS cluster's admission policies for what the homelab runs and claims there
(components/federation/offload_admission.py), evaluated offline with a real CEL implementation
(tests/admission.py, cel-python) on the policy objects the aws-gpu run declares, against recorded
pod specs (tests/fixtures/admission/) and the Ollama pod as the homelab run declares it."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.federation.offload_admission import (
    POD_POLICY,
    SHADOWPOD_POLICY,
    SLICE_POLICY,
    SliceCaps,
    render_slice_policy,
)
from components.kube.labels import CONTROL_PLANE_TAINT
from tests.admission import Request, Verdict, evaluate_all
from tests.upstream_data import kubernetes_objects, plain_object
from tools.offline import StackRun

FIXTURES = Path(__file__).parent / "fixtures" / "admission"
# A namespace as Liqo's NamespaceMap controller creates it for the consumer "homelab"
# (liqotech/liqo@v1.2.0 namespacemap-controller/enforcement.go), and a tenant namespace
# (pkg/tenantNamespace/namespaceManager.go), with the label the API server adds to every namespace.
OFFLOADED_NS = {"kubernetes.io/metadata.name": "llm", "liqo.io/remote-cluster-id": "homelab"}
TENANT_NS = {
    "kubernetes.io/metadata.name": "liqo-tenant-homelab",
    "liqo.io/remote-cluster-id": "homelab",
    "liqo.io/tenant-namespace": "true",
}
PLAIN_NS = {"kubernetes.io/metadata.name": "gpu-waker"}


def declared_policy(run: StackRun, name: str) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy ``name`` as the run declares it, with its Deny binding."""
    objects = [obj for _, obj in kubernetes_objects(run)]
    (policy,) = [
        o
        for o in objects
        if o["kind"] == "ValidatingAdmissionPolicy" and o["metadata"]["name"] == name
    ]
    (binding,) = [
        o
        for o in objects
        if o["kind"] == "ValidatingAdmissionPolicyBinding" and o["spec"]["policyName"] == name
    ]
    assert binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert binding["spec"]["validationActions"] == ["Deny"]
    return policy


@pytest.fixture(scope="module")
def pod_policy(aws_gpu_run: StackRun) -> list[dict[str, Any]]:
    """The offload policies as declared: one on Pods, one on ShadowPods."""
    return [declared_policy(aws_gpu_run, name) for name in (POD_POLICY, SHADOWPOD_POLICY)]


def fixture(name: str) -> dict[str, Any]:
    return yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())


def as_api_server_sends(obj: Any) -> Any:
    """Quantities as the API server serializes them (strings): ``1`` -> ``"1"``."""
    if isinstance(obj, dict):
        return {
            k: (
                {r: str(q) for r, q in v.items()}
                if k in ("limits", "requests") and isinstance(v, dict)
                else as_api_server_sends(v)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [as_api_server_sends(v) for v in obj]
    return obj


def ollama_pod(homelab_run: StackRun) -> dict[str, Any]:
    """The Ollama pod as the homelab declares it, in the form Liqo gives the provider: the
    containers, volumes and securityContext copied, host namespaces forced off and no automounted
    token (liqotech/liqo@v1.2.0 pkg/virtualKubelet/forge/pods.go, RemotePodSpec)."""
    deployment = homelab_run.one("kubernetes:apps/v1:Deployment", "ollama-deployment")
    template = copy.deepcopy(plain_object(deployment)["spec"]["template"])
    spec = template["spec"]
    spec.update(hostNetwork=False, hostPID=False, hostIPC=False, automountServiceAccountToken=False)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ollama-0", "namespace": "llm", **template.get("metadata", {})},
        "spec": spec,
    }
    return as_api_server_sends(pod)


def shadow(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "offloading.liqo.io/v1beta1",
        "kind": "ShadowPod",
        "metadata": {"name": pod["metadata"]["name"], "namespace": "llm"},
        "spec": {"pod": pod["spec"]},
    }


def verdict(
    policy: dict[str, Any] | list[dict[str, Any]], obj: dict[str, Any], labels: dict[str, str]
) -> Verdict:
    policies = policy if isinstance(policy, list) else [policy]
    return evaluate_all(policies, Request(object=obj, namespace_labels=labels))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("privileged-pod", "offloaded pods may not run privileged containers"),
        ("hostpath-root-pod", "offloaded pods may not mount hostPath volumes"),
        (
            "hostnetwork-shadowpod",
            "offloaded pods may not use the host's network, PID or IPC namespace",
        ),
        ("gpu-pod-without-limits", "offloaded pods must claim a GPU"),
    ],
)
def test_escapes_are_rejected_in_the_offloaded_namespace(
    pod_policy: list[dict[str, Any]], name: str, message: str
) -> None:
    result = verdict(pod_policy, fixture(name), OFFLOADED_NS)
    assert result.matched
    assert len(result.rejections) == 1, result.rejections
    assert result.rejections[0].startswith(message)


def test_the_hostnetwork_pod_is_rejected_as_a_pod_too(pod_policy: list[dict[str, Any]]) -> None:
    shadow_pod = fixture("hostnetwork-shadowpod")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}
    pod["spec"] = shadow_pod["spec"]["pod"]
    assert not verdict(pod_policy, pod, OFFLOADED_NS).admitted


def test_added_capabilities_in_an_init_container_are_rejected(
    pod_policy: list[dict[str, Any]], homelab_run: StackRun
) -> None:
    pod = ollama_pod(homelab_run)
    init = pod["spec"]["initContainers"][0]
    init.setdefault("securityContext", {})["capabilities"] = {"add": ["SYS_ADMIN"]}
    result = verdict(pod_policy, pod, OFFLOADED_NS)
    assert result.rejections == ("offloaded pods may not add Linux capabilities",)


def test_the_ollama_pod_is_admitted_as_pod_and_shadowpod(
    pod_policy: list[dict[str, Any]], homelab_run: StackRun
) -> None:
    pod = ollama_pod(homelab_run)
    for obj in (pod, shadow(pod)):
        result = verdict(pod_policy, obj, OFFLOADED_NS)
        assert result.matched
        assert result.admitted, result.rejections


def test_liqo_tenant_and_other_namespaces_are_not_matched(pod_policy: list[dict[str, Any]]) -> None:
    """Liqo's gateway pods (NET_ADMIN) live in the tenant namespace; the policy leaves it, and
    namespaces Liqo did not create, to Pod Security."""
    for labels in (TENANT_NS, PLAIN_NS):
        assert not verdict(pod_policy, fixture("privileged-pod"), labels).matched


def test_ephemeral_containers_are_checked(
    pod_policy: list[dict[str, Any]], homelab_run: StackRun
) -> None:
    pod = ollama_pod(homelab_run)
    pod["spec"]["ephemeralContainers"] = [
        {"name": "debug", "image": "busybox", "securityContext": {"privileged": True}}
    ]
    result = evaluate_all(
        pod_policy,
        Request(
            object=pod,
            namespace_labels=OFFLOADED_NS,
            operation="UPDATE",
            subresource="ephemeralcontainers",
        ),
    )
    assert result.rejections == ("offloaded pods may not run privileged containers",)


def slice_(resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "authentication.liqo.io/v1beta1",
        "kind": "ResourceSlice",
        "metadata": {"name": "homelab", "namespace": "liqo-tenant-homelab"},
        "spec": {"class": "default", "resources": resources},
    }


def test_the_consumer_may_claim_only_what_the_worker_has(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    policy = declared_policy(aws_gpu_run, SLICE_POLICY)
    gpus = aws_gpu_run.exports["gpuWorkerGpuCount"]
    # What the homelab's peering asks for (liqoctl peer --cpu/--memory/--pods/--resource).
    script = str(
        homelab_run.one("command:local:Command", "liqo-peering-liqoctl").plain_inputs["create"]
    )
    asked: dict[str, Any] = dict(re.findall(r"--(cpu|memory|pods) '?([^' ]+)'?", script))
    asked.update(re.findall(r"--resource '?([^=' ]+)=(\d+)'?", script))
    assert asked["nvidia.com/gpu"] == str(gpus), script
    assert verdict(policy, slice_(asked), TENANT_NS).admitted
    greedy = verdict(policy, slice_({**asked, "nvidia.com/gpu": str(gpus + 1)}), TENANT_NS)
    assert greedy.rejections == (f"a consumer may claim at most {gpus} 'nvidia.com/gpu'",)
    many = verdict(policy, slice_({**asked, "pods": 111}), TENANT_NS)
    assert many.rejections == ("a consumer may claim at most 110 pods",)


def test_slice_caps_render_from_the_worker() -> None:
    policy, binding = render_slice_policy(SliceCaps(gpus=4, pods=20))
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert "<= 4" in policy["spec"]["validations"][0]["expression"]
    with pytest.raises(ValueError, match="pods >= 1"):
        SliceCaps(gpus=1, pods=0)


def _tolerations(values: Any) -> list[dict[str, Any]]:
    """Every toleration anywhere in chart values."""
    if isinstance(values, dict):
        found = [t for t in values.get("tolerations") or [] if isinstance(t, dict)]
        return found + [t for k, v in values.items() if k != "tolerations" for t in _tolerations(v)]
    if isinstance(values, list):
        return [t for v in values for t in _tolerations(v)]
    return []


def test_only_liqo_tolerates_the_control_node_taint(aws_gpu_run: StackRun) -> None:
    """The AWS control node is tainted; of what the program installs there, only Liqo (its
    controllers and gateway placed there, its fabric on every node) and the control node's own
    node exporter (its metrics over the mesh) tolerate it. k3s's own
    CoreDNS, metrics-server and local-path-provisioner tolerate it by their manifests
    (k3s-io/k3s manifests/coredns.yaml: CriticalAddonsOnly and the control-plane taint)."""
    (config,) = [
        yaml.safe_load(r.plain_inputs["value"])
        for r in aws_gpu_run.by_type("aws:ssm/parameter:Parameter")
        if r.plain_inputs["name"].endswith("/control-node/files/k3s/config.yaml")
    ]
    assert config["node-taint"] == [CONTROL_PLANE_TAINT]
    key = CONTROL_PLANE_TAINT.split("=")[0]
    tolerating = set()
    for reg in aws_gpu_run.by_type("kubernetes:helm.sh/v3:Release"):
        values = plain_object(reg).get("values") or {}
        if any(t.get("key") in (key, None) for t in _tolerations(values)):
            tolerating.add(reg.name)
    assert tolerating == {"liqo-release", "node-exporter-control-node"}
