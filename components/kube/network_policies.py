"""Ingress isolation of an app namespace (pure rendering plus one component): everything
inbound is denied, then allowed again only from the namespace's own pods and from named sources
(the ingress controller to an app's port). NetworkPolicies are additive, so an app's own policies
(Ollama's client list) still apply on top. k3s enforces them with its embedded network policy
controller (https://docs.k3s.io/networking/networking-services#network-policy-controller)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

from components.kube.objects import Manifest, declare

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# k3s's packaged Traefik in kube-system: its pods carry the chart's selector labels,
# app.kubernetes.io/name (the chart name) and app.kubernetes.io/instance
# ("<release>-<namespace>"; traefik/traefik-helm-chart@v34.2.0 traefik/templates/_helpers.tpl,
# traefik.labelselector), the release being k3s's "traefik" HelmChart.
TRAEFIK_PODS: Mapping[str, str] = {
    "app.kubernetes.io/name": "traefik",
    "app.kubernetes.io/instance": "traefik-kube-system",
}
TRAEFIK_NAMESPACE = "kube-system"


@dataclass(frozen=True)
class IngressAllow:
    """Pods of ``pod_labels`` accept ``ports`` (TCP) from pods of ``from_pods`` in
    ``from_namespace``; from any source when ``from_namespace`` is None (callers that are no
    pods: the API server calling a webhook runs on the host network, which no pod or namespace
    selector matches)."""

    name: str
    pod_labels: Mapping[str, str]
    ports: Sequence[int]
    from_namespace: str | None
    from_pods: Mapping[str, str]


def from_ingress_controller(pod_labels: Mapping[str, str], ports: Sequence[int]) -> IngressAllow:
    return IngressAllow(
        "allow-from-ingress-controller", pod_labels, ports, TRAEFIK_NAMESPACE, TRAEFIK_PODS
    )


def from_api_server(pod_labels: Mapping[str, str], ports: Sequence[int]) -> IngressAllow:
    """An admission webhook's port, which the API server must reach; the webhook itself
    authenticates nothing but serves TLS the API server verifies (caBundle)."""
    return IngressAllow("allow-from-api-server", pod_labels, ports, None, {})


def _source(allow: IngressAllow) -> dict[str, object]:
    if allow.from_namespace is None:
        return {}
    return {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: allow.from_namespace}},
                "podSelector": {"matchLabels": dict(allow.from_pods)},
            }
        ]
    }


def _policy(namespace: str, name: str, spec: Manifest) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def render_isolation(namespace: str, allows: Sequence[IngressAllow] = ()) -> list[Manifest]:
    """Default-deny ingress, same-namespace allowed, and each of ``allows``."""
    policies = [
        _policy(namespace, "default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),
        _policy(
            namespace,
            "allow-same-namespace",
            {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
            },
        ),
    ]
    for allow in allows:
        if not allow.ports:
            raise ValueError(f"{namespace}/{allow.name}: no ports")
        policies.append(
            _policy(
                namespace,
                allow.name,
                {
                    "podSelector": {"matchLabels": dict(allow.pod_labels)},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            **_source(allow),
                            "ports": [{"protocol": "TCP", "port": p} for p in allow.ports],
                        }
                    ],
                },
            )
        )
    return policies


@dataclass(frozen=True)
class NamespaceIsolationArgs:
    namespace: str
    allows: Sequence[IngressAllow] = field(default_factory=tuple)
    wait_for: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """What creates the namespace."""


class NamespaceIsolation(pulumi.ComponentResource):
    """The namespace's ingress policies (:func:`render_isolation`)."""

    def __init__(
        self, name: str, args: NamespaceIsolationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:kube:NamespaceIsolation", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.wait_for))
        names = []
        for manifest in render_isolation(args.namespace, args.allows):
            policy = manifest["metadata"]["name"]
            declare(f"{name}-{policy}", manifest, child)
            names.append(policy)
        self.register_outputs({"namespace": args.namespace, "policies": names})
