"""Who may reach Ollama: NetworkPolicies on both clusters (pure rendering). Homelab side: the
client namespaces; AWS side, where the pod runs and the policy is enforced (Liqo does not
reflect NetworkPolicies): only gpu-waker's source range."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.kube.network_policies import NAMESPACE_NAME_LABEL
from components.kube.objects import Manifest, app_labels
from components.nebula.config import OLLAMA_PORT

APP = "ollama"


def _ollama_policy(namespace: str, sources: list[dict[str, Any]]) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{APP}-clients", "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": app_labels(APP)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": OLLAMA_PORT}]}],
        },
    }


def render_homelab_policy(namespace: str, client_namespaces: Sequence[str]) -> Manifest:
    """Homelab side: only pods of the client namespaces may reach Ollama."""
    if not client_namespaces:
        raise ValueError("client_namespaces is empty; Open WebUI's namespace at least")
    return _ollama_policy(
        namespace,
        [
            {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: ns}}}
            for ns in sorted(set(client_namespaces))
        ],
    )


def render_remote_policy(namespace: str, proxy_source_cidr: str) -> Manifest:
    """AWS side, where the pod actually runs (and where the policy is enforced; Liqo does not
    reflect NetworkPolicies): only the proxy's source range reaches the Ollama port."""
    return _ollama_policy(namespace, [{"ipBlock": {"cidr": proxy_source_cidr}}])
