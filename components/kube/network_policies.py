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
    ``from_namespace``; with ``from_namespace`` None, from any source (see
    :func:`from_api_server`)."""

    name: str
    pod_labels: Mapping[str, str]
    ports: Sequence[int]
    from_namespace: str | None
    from_pods: Mapping[str, str] = field(default_factory=dict)


def from_ingress_controller(pod_labels: Mapping[str, str], ports: Sequence[int]) -> IngressAllow:
    return IngressAllow(
        "allow-from-ingress-controller", pod_labels, ports, TRAEFIK_NAMESPACE, TRAEFIK_PODS
    )


def from_api_server(name: str, pod_labels: Mapping[str, str], ports: Sequence[int]) -> IngressAllow:
    """The API server calling a pod (an admission webhook, its service proxy). k3s runs it in
    the server's host process, so its connections come from a node address (the flannel
    tunnel's, inside the pod range), which no pod or namespace selector can name: the allow
    admits any source on exactly these ports of exactly these pods, as kube-prometheus-stack's
    own operator policy does (prometheus-community/helm-charts charts/kube-prometheus-stack/
    templates/prometheus-operator/networkpolicy.yaml: ingress by port only)."""
    return IngressAllow(name, pod_labels, ports, None)


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
        if not allow.pod_labels:
            raise ValueError(f"{namespace}/{allow.name}: selects every pod")
        rule: Manifest = {"ports": [{"protocol": "TCP", "port": p} for p in allow.ports]}
        if allow.from_namespace is not None:
            rule = {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {NAMESPACE_NAME_LABEL: allow.from_namespace}
                        },
                        "podSelector": {"matchLabels": dict(allow.from_pods)},
                    }
                ],
                **rule,
            }
        policies.append(
            _policy(
                namespace,
                allow.name,
                {
                    "podSelector": {"matchLabels": dict(allow.pod_labels)},
                    "policyTypes": ["Ingress"],
                    "ingress": [rule],
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
