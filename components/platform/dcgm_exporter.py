"""NVIDIA's DCGM exporter on the AWS GPU worker. The AWS cluster runs the device plugin, not the
GPU Operator (which would bring its own exporter), so the exporter comes from its own chart; a
NodePort Service makes it reachable on the control node's overlay address, where the homelab
Prometheus scrapes it (components/platform/monitoring.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from components.kube.charts import DCGM_EXPORTER, helm_release
from components.kube.labels import GPU_RESOURCE, NVIDIA_RUNTIME_CLASS
from components.kube.objects import Manifest, declare

NAMESPACE = "dcgm-exporter"
RELEASE = "dcgm-exporter"
# The exporter's listen port (NVIDIA/dcgm-exporter deployment/values.yaml@4.5.3-4.8.2
# service.port) and the chart's selector labels (templates/_helpers.tpl, selectorLabels: the
# chart name and the release name).
METRICS_PORT = 9400
SELECTOR = {"app.kubernetes.io/name": "dcgm-exporter", "app.kubernetes.io/instance": RELEASE}


def render_dcgm_exporter_values(node_selector: Mapping[str, str]) -> dict[str, Any]:
    """Chart values (deployment/values.yaml of the pinned tag)."""
    return {
        # DCGM needs the driver libraries, which only the NVIDIA runtime mounts.
        "runtimeClassName": NVIDIA_RUNTIME_CLASS,
        "nodeSelector": dict(node_selector),
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
        # No Prometheus Operator on the AWS cluster: the homelab scrapes through the NodePort.
        "serviceMonitor": {"enabled": False},
    }


def render_node_port_service(node_port: int) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{RELEASE}-mesh", "namespace": NAMESPACE},
        "spec": {
            "type": "NodePort",
            "selector": dict(SELECTOR),
            "ports": [
                {
                    "name": "metrics",
                    "port": METRICS_PORT,
                    "targetPort": METRICS_PORT,
                    "nodePort": node_port,
                    "protocol": "TCP",
                }
            ],
        },
    }


@dataclass(frozen=True)
class DcgmExporterArgs:
    node_selector: Mapping[str, str]
    node_port: int


class DcgmExporter(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: DcgmExporterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:DcgmExporter", name, None, opts)
        self.values = render_dcgm_exporter_values(args.node_selector)
        self.release = helm_release(
            f"{name}-release",
            release_name=RELEASE,
            chart=DCGM_EXPORTER,
            namespace=NAMESPACE,
            values=self.values,
            opts=pulumi.ResourceOptions(parent=self),
        )
        declare(
            f"{name}-node-port",
            render_node_port_service(args.node_port),
            pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
        )
        self.register_outputs({"releaseStatus": self.release.status})
