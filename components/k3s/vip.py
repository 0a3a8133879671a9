"""The homelab API VIP: kube-vip in ARP mode on every k3s server, rendered (pure) as the
manifest each server's install script drops into k3s's auto-deploy directory.

Why a manifest on the servers and not a Helm release through Pulumi: Pulumi, the agents and
Liqo reach the API through the VIP, so the VIP has to exist before Pulumi can talk to the
cluster. k3s applies the file itself once its API is up (docs.k3s.io, "Auto-Deploying
Manifests"); the upstream kube-vip guide for k3s does the same (kube-vip.io/docs/usage/k3s).

The settings are the kube-vip chart's (kube-vip/helm-charts kube-vip-0.9.9: values.yaml ``env``,
templates/daemonset.yaml, templates/rbac.yaml) for control-plane mode only: one leader, elected
through a Lease, answers ARP for the VIP; when its server goes down another takes over. Service
load balancing is MetalLB's job (components/platform/lan_load_balancer.py), so ``svc_enable`` is
off and the service permissions of the chart's ClusterRole are reduced to reads.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import yaml

from components.kube.charts import KUBE_VIP_IMAGE
from components.kube.objects import Manifest, app_labels

NAME = "kube-vip"
NAMESPACE = "kube-system"
# k3s labels every server node with this (and agents never).
SERVER_NODE_LABEL = ("node-role.kubernetes.io/control-plane", "true")


@dataclass(frozen=True)
class VipSettings:
    address: str
    """The VIP on the LAN (also on every server's certificate)."""
    interface: str = "eth0"
    """NIC the VIP is added to: Proxmox's cloud-init names the first network device ``eth0``."""
    image: str = KUBE_VIP_IMAGE
    """kube-vip's image reference (tag, and digest when one is configured)."""

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.address)
        if not self.interface or "/" in self.interface:
            raise ValueError(f"interface '{self.interface}' is not a network interface name")


def render_env(vip: VipSettings) -> dict[str, str]:
    """kube-vip's environment (names as in the chart's ``env`` values, plus ``vip_address``
    that its daemonset template sets for control-plane mode)."""
    return {
        "vip_address": vip.address,
        "vip_interface": vip.interface,
        "vip_arp": "true",
        "vip_subnet": "32",
        "cp_enable": "true",
        "vip_leaderelection": "true",
        "svc_enable": "false",
        "svc_election": "false",
        # kube-vip would also balance 6443 over all servers with IPVS; the VIP alone suffices
        # (each server serves the whole API).
        "lb_enable": "false",
        "lb_port": "6443",
        # Metrics only on the node's loopback: the pod shares the host network.
        "prometheus_server": "127.0.0.1:2112",
    }


def render_manifests(vip: VipSettings) -> list[Manifest]:
    labels = app_labels(NAME)
    account = {"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}
    container = {
        "name": NAME,
        "image": vip.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["manager"],
        "env": [{"name": k, "value": v} for k, v in render_env(vip).items()],
        "securityContext": {
            # Adding an address and answering ARP need these two capabilities (chart default).
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
        },
        "resources": {
            "requests": {"cpu": "20m", "memory": "32Mi"},
            "limits": {"memory": "128Mi"},
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NAME, "labels": labels},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "endpoints", "nodes"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["get", "list", "watch", "create", "update"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": NAME,
            },
            "subjects": [account],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": NAME,
                        "hostNetwork": True,
                        "nodeSelector": dict([SERVER_NODE_LABEL]),
                        # On every server whatever its taints: the VIP must follow the API.
                        "tolerations": [{"operator": "Exists"}],
                        "priorityClassName": "system-node-critical",
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [container],
                    },
                },
            },
        },
    ]


def render_manifest_file(vip: VipSettings) -> str:
    header = "# kube-vip for the homelab API VIP, written by Pulumi (hybridgpu homelab stack).\n"
    return header + yaml.safe_dump_all(render_manifests(vip), sort_keys=False)
