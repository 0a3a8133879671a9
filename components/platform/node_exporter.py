"""Prometheus's node exporter on the AWS nodes (CPU, memory, disk, network of the control node
and the GPU worker), scraped by the homelab Prometheus over the mesh like the DCGM exporter
(components/platform/monitoring.py). The homelab's own nodes get theirs from
kube-prometheus-stack.

Only the control node is on the mesh, so both exporters are reached through NodePorts on its
overlay address. A NodePort Service forwards to every endpoint it selects, and the pods of one
DaemonSet share their labels: one release per node, each with its own selector and NodePort,
keeps "which node answered" fixed. The worker's exporter runs on the host network, so the
control node's kube-proxy forwards to the worker's VPC address (a security-group rule between
the nodes, components/aws/network.py CLUSTER_PORTS)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.k3s.pod_security import with_level
from components.kube.charts import PROMETHEUS_NODE_EXPORTER, helm_release
from components.kube.labels import tolerations_of
from components.kube.objects import Manifest, declare
from components.nebula.config import NODE_EXPORTER_PORT

NAMESPACE = "node-exporter"
METRICS_PORT = NODE_EXPORTER_PORT
POD_SECURITY_REASON = (
    "node exporter reads the host's /proc, /sys and / (hostPath mounts) in the host's PID and "
    "network namespaces, so its CPU, disk and network figures are the node's, not a pod's"
)


@dataclass(frozen=True)
class NodeTarget:
    """One node's exporter: a release named ``node-exporter-<role>`` on the nodes of
    ``node_selector``, reachable on ``node_port`` of every node of the cluster."""

    role: str
    node_selector: Mapping[str, str]
    node_port: int
    node_taints: Sequence[str] = ()
    """Taints of those nodes (``key[=value]:Effect``), tolerated by name."""


def render_namespace() -> Manifest:
    return with_level(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        "privileged",
        POD_SECURITY_REASON,
    )


def render_values(target: NodeTarget) -> dict[str, Any]:
    """Chart values (charts/prometheus-node-exporter/values.yaml of the pinned tag). The chart's
    defaults keep: host network and PID, read-only root, UID 65534. Its default toleration of
    every NoSchedule taint is replaced by the node's own taints: it would also tolerate the
    stopped worker's unreachable taint, and an upgrade would wait for a pod that cannot start
    (components/kube/labels.py STOPPED_NODE_TAINT)."""
    # A hard node affinity rather than nodeSelector, whose chart default (kubernetes.io/os) we
    # keep; the chart's own default affinity (no Fargate, no virtual kubelets) only applies
    # while this one is empty, and our nodes are neither.
    terms = [
        {"key": label, "operator": "In", "values": [value]}
        for label, value in sorted(target.node_selector.items())
    ]
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": terms}]
                }
            }
        },
        "service": {
            "type": "NodePort",
            "nodePort": target.node_port,
            # Listen on the node's own (VPC) address only, not on the overlay: the homelab
            # reaches it through the NodePort, the one port the mesh opens for it.
            "listenOnAllInterfaces": False,
        },
        "tolerations": tolerations_of(target.node_taints),
        # No Prometheus Operator on the AWS cluster: the homelab scrapes the NodePort.
        "prometheus": {"monitor": {"enabled": False}},
    }


@dataclass(frozen=True)
class NodeExporterArgs:
    targets: Sequence[NodeTarget]


class NodeExporter(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: NodeExporterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:NodeExporter", name, None, opts)
        namespace = declare(
            f"{name}-namespace", render_namespace(), pulumi.ResourceOptions(parent=self)
        )
        self.releases = [
            helm_release(
                f"{name}-{target.role}",
                release_name=f"{name}-{target.role}",
                chart=PROMETHEUS_NODE_EXPORTER,
                namespace=NAMESPACE,
                values=render_values(target),
                create_namespace=False,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
            )
            for target in args.targets
        ]
        self.register_outputs({"releases": [t.role for t in args.targets]})
