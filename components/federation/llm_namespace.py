"""The LLM namespace on both clusters (pure): declared in the homelab, where Liqo's scheduling
label marks it offloadable before its NamespaceOffloading exists, and labelled by patch on the
AWS cluster, where Liqo creates it. Both carry the same Pod Security level."""

from __future__ import annotations

from components.k3s.pod_security import Level, with_level
from components.kube.objects import Manifest

# Liqo: label the namespace before offloading it, so no pod is scheduled locally meanwhile
# (https://docs.liqo.io/en/stable/usage/namespace-offloading.html).
SCHEDULING_ENABLED_LABEL = "liqo.io/scheduling-enabled"


# Pod Security of the LLM namespace, on both clusters (the pod exists in both): Ollama's pod is
# hardened to "restricted" (tests/test_pod_security.py checks it meets the level); the AWS side
# is also held by the offload admission policy.
POD_SECURITY_LEVEL: Level = "restricted"
POD_SECURITY_REASON = ""


def render_namespace(namespace: str) -> Manifest:
    return with_level(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {SCHEDULING_ENABLED_LABEL: "true"}},
        },
        POD_SECURITY_LEVEL,
        POD_SECURITY_REASON,
    )


def render_remote_namespace(namespace: str) -> Manifest:
    """The Pod Security labels of the namespace Liqo creates on the AWS cluster (applied as a
    patch: Liqo owns the namespace, liqotech/liqo@v1.2.0 namespacemap-controller/enforcement.go;
    without labels the cluster's default, "restricted", would refuse the Ollama pod)."""
    return with_level(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        POD_SECURITY_LEVEL,
        POD_SECURITY_REASON,
    )
