"""Liqo installed as a real Helm release (its CRD-upgrade and uninstall hooks must run) on one
cluster, with the values ``liqoctl install k3s`` would generate, spelled out.

Both clusters get the same chart version (``hybridgpu:liqoVersion``); Liqo does not peer across
versions (https://docs.liqo.io/en/stable/installation/install.html).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.kube.charts import helm_release, liqo_chart

NAMESPACE = "liqo"
RELEASE_NAME = "liqo"
# The virtual node Liqo creates for a provider: label and taint of Liqo 1.x
# (pkg/virtualKubelet/liqoNodeProvider, https://docs.liqo.io/en/stable/usage/offloading.html).
VIRTUAL_NODE_LABEL = ("liqo.io/type", "virtual-node")
REMOTE_CLUSTER_ID_LABEL = "liqo.io/remote-cluster-id"
VIRTUAL_NODE_TAINT_KEY = "virtual-node.liqo.io/not-allowed"
VIRTUAL_NODE_TAINT_EFFECT = "NoExecute"


@dataclass(frozen=True)
class Placement:
    """Where Liqo's own pods run: its controllers (``common``) on ``node_selector`` nodes with
    ``tolerations``, its gateway with the same tolerations (the chart's gateway template has
    tolerations but no node selector: liqotech/liqo@v1.2.0 deployments/liqo/values.yaml
    ``networking.gatewayTemplates.pod``), its fabric DaemonSet on every node."""

    node_selector: Mapping[str, str]
    tolerations: Sequence[Mapping[str, str]]
    fabric_tolerations: Sequence[Mapping[str, str]] = ()
    """The fabric's: every node's taints by name, never a bare ``operator: Exists``, which would
    also tolerate a stopped node's unreachable taint and make an upgrade wait for a pod that
    cannot start (components/kube/labels.py STOPPED_NODE_TAINT)."""


def render_liqo_values(
    *,
    cluster_id: str,
    api_server_url: str,
    pod_cidr: str,
    service_cidr: str,
    reserved_subnets: Sequence[str],
    cluster_labels: Mapping[str, str],
    placement: Placement | None = None,
    offloaded_api_access: bool = False,
) -> dict[str, Any]:
    """Chart values (deployments/liqo/values.yaml of Liqo 1.x).

    ``offloaded_api_access``: whether pods this cluster offloads reach its API. Liqo's default
    is yes: the virtual kubelet mounts the pod's ServiceAccount token and routes
    ``kubernetes.default`` to this cluster's API (liqotech/liqo@v1.2.0
    docs/advanced/kubernetes-api.md; templates/liqo-vk-options-template.yaml appends
    ``--enable-apiserver-support=true`` unless the flag is given). Off here: the virtual kubelet
    then drops the token from the remote pod (pkg/virtualKubelet/forge/pods.go, RemoteVolumes,
    APIServerSupportDisabled), so a compromised pod on the provider holds no credential of the
    homelab. A pod cannot ask for it back (its ``liqo.io/api-server-support`` annotation only
    takes ``disabled`` or ``remote``, the provider's API)."""
    if not api_server_url.startswith("https://"):
        raise ValueError(f"api_server_url '{api_server_url}' must be an https:// URL")
    networking: dict[str, Any] = {
        "enabled": True,
        # What `liqoctl install k3s` sets: the nftables monitor is costly on k3s.
        "fabric": {"config": {"nftablesMonitor": False}},
    }
    placed: dict[str, Any] = {}
    if placement is not None:
        tolerations = [dict(t) for t in placement.tolerations]
        placed["common"] = {
            "nodeSelector": dict(placement.node_selector),
            "tolerations": tolerations,
        }
        networking["gatewayTemplates"] = {"pod": {"tolerations": tolerations}}
        # The fabric programs every node's routes, the GPU worker's included.
        networking["fabric"]["tolerations"] = [dict(t) for t in placement.fabric_tolerations]
    virtual_kubelet = {
        "virtualKubelet": {
            "extra": {"args": [f"--enable-apiserver-support={str(offloaded_api_access).lower()}"]}
        }
    }
    return {
        **placed,
        **virtual_kubelet,
        # The address peers use for this cluster's API: its Nebula IP, never localhost.
        "apiServer": {"address": api_server_url},
        "discovery": {"config": {"clusterID": cluster_id, "clusterLabels": dict(cluster_labels)}},
        "ipam": {
            "podCIDRs": [pod_cidr],
            "serviceCIDR": service_cidr,
            # Ranges Liqo must never hand out for remapping: the LAN, the VPC and the overlay
            # (its own pod/service ranges are added by Liqo itself).
            "reservedSubnets": list(reserved_subnets),
        },
        "networking": networking,
        "telemetry": {"enabled": False},
        "metrics": {"enabled": False},
    }


@dataclass(frozen=True)
class LiqoArgs:
    version: str
    cluster_id: str
    api_server_url: str
    pod_cidr: str
    service_cidr: str
    reserved_subnets: Sequence[str]
    cluster_labels: Mapping[str, str] = field(default_factory=dict)
    placement: Placement | None = None


class Liqo(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: LiqoArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:federation:Liqo", name, None, opts)
        self.values = render_liqo_values(
            cluster_id=args.cluster_id,
            api_server_url=args.api_server_url,
            pod_cidr=args.pod_cidr,
            service_cidr=args.service_cidr,
            reserved_subnets=args.reserved_subnets,
            cluster_labels=args.cluster_labels,
            placement=args.placement,
        )
        self.release = helm_release(
            f"{name}-release",
            release_name=RELEASE_NAME,
            chart=liqo_chart(args.version),
            namespace=NAMESPACE,
            values=self.values,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"clusterId": args.cluster_id, "releaseStatus": self.release.status})
