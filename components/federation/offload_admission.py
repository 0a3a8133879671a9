"""What the consumer (the homelab) may run on the provider (the AWS cluster): a
ValidatingAdmissionPolicy on the pods and ShadowPods of the namespaces Liqo creates for offloaded
workloads, and one on the ResourceSlices a consumer asks for.

Why it is needed: Liqo copies an offloaded pod's containers, volumes and securityContext to the
provider unchanged (liqotech/liqo@v1.2.0 pkg/virtualKubelet/forge/pods.go, RemotePodSpec), and
the consumer's identity may create ShadowPods directly; the provider's controller builds the pod
from ``spec.pod`` as given (pkg/liqo-controller-manager/offloading/shadowpod-controller). So a
privileged ``hostPath: /`` pod declared in the homelab's offloaded namespace would be root on an
AWS node. The policy rejects, in those namespaces: privileged containers, host namespaces
(network, PID, IPC), hostPath volumes, added capabilities, and any pod that does not claim a GPU
through the device plugin (an ``nvidia.com/gpu`` limit).

The GPU rule is the enforceable form of "only GPU work on the GPU worker, nothing on the control
node": which node a pod lands on is decided after admission (the scheduler's binding), but a pod
whose container limits ``nvidia.com/gpu`` fits only a node that advertises it. The AWS control
node advertises none, so even a pod that tolerates its taint (or names it in ``nodeName``: the
kubelet's admission refuses a pod whose extended resources do not fit) cannot run there, and
every pod that reaches the GPU worker holds a GPU through the device plugin.

Which namespaces: the ones Liqo's NamespaceMap controller creates carry only
``liqo.io/remote-cluster-id: <consumer>`` (pkg/liqo-controller-manager/offloading/
namespacemap-controller/enforcement.go@v1.2.0, createNamespace). Liqo's tenant namespaces carry
the same label plus ``liqo.io/tenant-namespace: "true"`` (pkg/tenantNamespace/
namespaceManager.go@v1.2.0) and hold Liqo's own gateway pods, which need NET_ADMIN: they are left
out (and are privileged by Liqo's own Pod Security labels there).

The ResourceSlice policy caps what a consumer may claim: Liqo's default ResourceSlice class
accepts whatever is asked (pkg/liqo-controller-manager/authentication/
remoteresourceslice-controller/remoteresourceslice_controller.go@v1.2.0, "Default class: accept
requested resources"), so without it the homelab could grant itself more GPUs and pods than the
worker has, and the provider's Quota (enforced by Liqo's ShadowPod webhook) would follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.federation.liqo import REMOTE_CLUSTER_ID_LABEL
from components.kube.labels import GPU_RESOURCE
from components.kube.objects import Manifest, declare

# liqotech/liqo@v1.2.0 pkg/consts/core.go: TenantNamespaceLabel.
TENANT_NAMESPACE_LABEL = "liqo.io/tenant-namespace"
POD_POLICY = "hybridgpu-offloaded-pods"
SHADOWPOD_POLICY = "hybridgpu-offloaded-shadowpods"
SLICE_POLICY = "hybridgpu-resource-slice-caps"
ADMISSION_API = "admissionregistration.k8s.io/v1"
# ShadowPod and ResourceSlice: liqotech/liqo@v1.2.0 deployments/liqo/charts/liqo-crds/crds
# (offloading.liqo.io_shadowpods.yaml, authentication.liqo.io_resourceslices.yaml).
SHADOWPOD_GROUP, SHADOWPOD_VERSION = "offloading.liqo.io", "v1beta1"
SLICE_GROUP, SLICE_VERSION = "authentication.liqo.io", "v1beta1"

_CONTAINERS = (
    "variables.spec.containers"
    " + (has(variables.spec.initContainers) ? variables.spec.initContainers : [])"
    " + (has(variables.spec.ephemeralContainers) ? variables.spec.ephemeralContainers : [])"
)


def _gpu_limit(container: str) -> str:
    # Limits arrive as quantity strings from the API ("1"); extended resources are integers.
    return (
        f"has({container}.resources) && has({container}.resources.limits)"
        f" && '{GPU_RESOURCE}' in {container}.resources.limits"
        f" && int(string({container}.resources.limits['{GPU_RESOURCE}'])) >= 1"
    )


def _validation(expression: str, message: str) -> dict[str, str]:
    return {"expression": expression, "message": message, "reason": "Forbidden"}


POD_VALIDATIONS: tuple[dict[str, str], ...] = (
    _validation(
        "variables.containers.all(c, !has(c.securityContext)"
        " || !has(c.securityContext.privileged) || !c.securityContext.privileged)",
        "offloaded pods may not run privileged containers",
    ),
    _validation(
        "!(has(variables.spec.hostNetwork) && variables.spec.hostNetwork)"
        " && !(has(variables.spec.hostPID) && variables.spec.hostPID)"
        " && !(has(variables.spec.hostIPC) && variables.spec.hostIPC)",
        "offloaded pods may not use the host's network, PID or IPC namespace",
    ),
    _validation(
        "!has(variables.spec.volumes) || variables.spec.volumes.all(v, !has(v.hostPath))",
        "offloaded pods may not mount hostPath volumes",
    ),
    _validation(
        "variables.containers.all(c, !has(c.securityContext)"
        " || !has(c.securityContext.capabilities)"
        " || !has(c.securityContext.capabilities.add)"
        " || size(c.securityContext.capabilities.add) == 0)",
        "offloaded pods may not add Linux capabilities",
    ),
    _validation(
        f"variables.spec.containers.exists(c, {_gpu_limit('c')})",
        f"offloaded pods must claim a GPU: a container needs a '{GPU_RESOURCE}' limit "
        "(only GPU work runs on the AWS cluster, and only through the device plugin)",
    ),
)


def offloaded_namespaces() -> dict[str, Any]:
    """Namespaces Liqo created for a consumer's offloaded pods (not its tenant namespaces)."""
    return {
        "matchExpressions": [
            {"key": REMOTE_CLUSTER_ID_LABEL, "operator": "Exists"},
            {"key": TENANT_NAMESPACE_LABEL, "operator": "DoesNotExist"},
        ]
    }


def tenant_namespaces() -> dict[str, Any]:
    """Liqo's tenant namespaces, where a consumer's ResourceSlice must be (Liqo refuses it
    elsewhere: remoteresourceslice_controller.go@v1.2.0, validateRSNamespace)."""
    return {"matchExpressions": [{"key": TENANT_NAMESPACE_LABEL, "operator": "Exists"}]}


def _binding(policy: str) -> Manifest:
    return {
        "apiVersion": ADMISSION_API,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy},
        "spec": {"policyName": policy, "validationActions": ["Deny"]},
    }


def _pod_spec_policy(name: str, spec: str, rules: list[dict[str, Any]]) -> list[Manifest]:
    policy: Manifest = {
        "apiVersion": ADMISSION_API,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            # An error (a field of an unexpected type) rejects rather than admits.
            "failurePolicy": "Fail",
            "matchConstraints": {
                "namespaceSelector": offloaded_namespaces(),
                "resourceRules": rules,
            },
            "variables": [
                {"name": "spec", "expression": spec},
                {"name": "containers", "expression": _CONTAINERS},
            ],
            "validations": [dict(v) for v in POD_VALIDATIONS],
        },
    }
    return [policy, _binding(name)]


def render_pod_policies() -> list[Manifest]:
    """The same checks on Pods (``spec``) and on ShadowPods (``spec.pod``), one policy per kind
    so the API server type-checks each against one schema; each with its binding (Deny)."""
    return [
        *_pod_spec_policy(
            POD_POLICY,
            "object.spec",
            [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE"],
                    "resources": ["pods"],
                },
                # kubectl debug adds containers to a running pod through this subresource.
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["UPDATE"],
                    "resources": ["pods/ephemeralcontainers"],
                },
            ],
        ),
        *_pod_spec_policy(
            SHADOWPOD_POLICY,
            "object.spec.pod",
            [
                {
                    "apiGroups": [SHADOWPOD_GROUP],
                    "apiVersions": [SHADOWPOD_VERSION],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["shadowpods"],
                }
            ],
        ),
    ]


@dataclass(frozen=True)
class SliceCaps:
    """The most a consumer may claim in one ResourceSlice (integer resources only: what the
    provider can count exactly, GPUs and pods)."""

    gpus: int
    pods: int

    def __post_init__(self) -> None:
        if self.gpus < 0 or self.pods < 1:
            raise ValueError(f"slice caps need gpus >= 0 and pods >= 1, got {self}")


def _at_most(resource: str, cap: int) -> str:
    return (
        f"!has(object.spec.resources) || !('{resource}' in object.spec.resources)"
        f" || int(string(object.spec.resources['{resource}'])) <= {cap}"
    )


def render_slice_policy(caps: SliceCaps) -> list[Manifest]:
    """The cap on ResourceSlices in Liqo's tenant namespaces (where the consumer's slice is
    replicated to the provider), and its binding (Deny)."""
    policy: Manifest = {
        "apiVersion": ADMISSION_API,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": SLICE_POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "namespaceSelector": tenant_namespaces(),
                "resourceRules": [
                    {
                        "apiGroups": [SLICE_GROUP],
                        "apiVersions": [SLICE_VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["resourceslices"],
                    }
                ],
            },
            "validations": [
                _validation(
                    _at_most(GPU_RESOURCE, caps.gpus),
                    f"a consumer may claim at most {caps.gpus} '{GPU_RESOURCE}'",
                ),
                _validation(
                    _at_most("pods", caps.pods),
                    f"a consumer may claim at most {caps.pods} pods",
                ),
            ],
        },
    }
    return [policy, _binding(SLICE_POLICY)]


@dataclass(frozen=True)
class OffloadAdmissionArgs:
    slice_caps: SliceCaps
    wait_for: Sequence[pulumi.Resource] = ()
    """Liqo's release: its CRDs (ShadowPod, ResourceSlice) must exist for the policies' rules."""


class OffloadAdmission(pulumi.ComponentResource):
    """The provider's admission policies for what Liqo's consumers run and claim."""

    def __init__(
        self, name: str, args: OffloadAdmissionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:federation:OffloadAdmission", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.wait_for))
        subjects = {POD_POLICY: "pods", SHADOWPOD_POLICY: "shadowpods", SLICE_POLICY: "slices"}
        for manifest in [*render_pod_policies(), *render_slice_policy(args.slice_caps)]:
            role = "binding" if manifest["kind"].endswith("Binding") else "policy"
            subject = subjects[manifest["metadata"]["name"]]
            declare(f"{name}-{subject}-{role}", manifest, child)
        self.register_outputs({"policies": sorted(subjects)})
