"""Rendering for the homelab k3s cluster (pure): config.yaml per node and the scripts Pulumi runs
over SSH (``templates/``, filled by :mod:`components.k3s.scripts`). k3s reads
/etc/rancher/k3s/config.yaml; its keys are the CLI flags without ``--``
(https://docs.k3s.io/installation/configuration#configuration-file)."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

import yaml

from components.k3s import scripts
from components.k3s.audit import audit_apiserver_args, render_audit_policy
from components.k3s.etcd_snapshots import EtcdSnapshots, etcd_snapshot_config
from components.k3s.pod_security import PSA_CONFIG_PATH, apiserver_arg
from components.k3s.vip import VipSettings, render_manifest_file
from components.kube.labels import CONTROL_PLANE_TAINT
from components.nebula.config import K3S_API_PORT

K3S_CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
K3S_TOKEN_PATH = "/etc/rancher/k3s/cluster-token"  # noqa: S105 - a path, not a credential


def k3s_installer_url(k3s_version: str) -> str:
    """The install script of the pinned release's tag, so the installer is pinned too (the
    ``get.k3s.io`` script changes over time). ``+`` in the tag is percent-encoded for the URL.
    One helper for both clusters (the AWS nodes' cloud-init uses it too)."""
    return f"https://raw.githubusercontent.com/k3s-io/k3s/{quote(k3s_version, safe='')}/install.sh"


def k3s_api_url(server_ip: str) -> str:
    """URL of the k3s API on the server's overlay address."""
    return f"https://{ipaddress.IPv4Address(server_ip)}:{K3S_API_PORT}"


def cluster_dns_ip(service_cidr: str) -> str:
    """CoreDNS service IP: the 10th address of the service range, as k3s's default 10.43.0.10 is
    of 10.43.0.0/16 (https://docs.k3s.io/cli/server#networking). Set explicitly because the
    service range is not the default one."""
    return str(ipaddress.IPv4Network(service_cidr)[10])


Role = Literal["first-server", "server", "agent"]


@dataclass(frozen=True)
class K3sNode:
    name: str
    ip: str
    """LAN address: node-ip, and where SSH reaches the node."""
    role: Role
    labels: Sequence[str] = field(default_factory=tuple)
    """``key=value`` labels Pulumi keeps on the Node (set after registration, edits applied)."""
    taints: Sequence[str] = field(default_factory=tuple)
    """``key=value:Effect`` taints Pulumi keeps on the Node (servers: the control-plane taint,
    also given at registration so nothing is scheduled there before it is set)."""
    scratch_mount: str | None = None
    """Where to format (once) and mount the VM's scratch disk; None: the node has none."""
    extra_tls_sans: Sequence[str] = field(default_factory=tuple)
    """More API addresses on a server's certificate (its Nebula IP, for Liqo)."""

    @property
    def is_server(self) -> bool:
        return self.role != "agent"


@dataclass(frozen=True)
class K3sClusterSettings:
    version: str
    api_endpoint: str
    """Address of the API: the VIP when there is one, else the first server's IP. Joining
    nodes, Pulumi and Liqo use it; it is on every server's certificate."""
    pod_cidr: str
    service_cidr: str
    cluster_dns: str
    disable: Sequence[str] = ("servicelb",)
    vip: VipSettings | None = None
    """kube-vip holds ``api_endpoint`` on the server that leads; None: no VIP."""
    etcd_snapshots: EtcdSnapshots | None = None
    """Scheduled etcd snapshots copied to S3 on every server; None: k3s's local defaults."""
    pod_security: str = ""
    """The API server's admission configuration (components/k3s/pod_security.py), written on
    every server; empty: none."""

    def __post_init__(self) -> None:
        if self.vip is not None and self.vip.address != self.api_endpoint:
            raise ValueError(
                f"api_endpoint {self.api_endpoint} must be the VIP {self.vip.address} when a "
                "VIP is configured"
            )

    @property
    def api_url(self) -> str:
        return f"https://{self.api_endpoint}:{K3S_API_PORT}"


def render_node_config(node: K3sNode, cluster: K3sClusterSettings) -> str:
    """config.yaml of one node. Intra-cluster traffic stays on the LAN: node-ip is the LAN
    address and flannel uses that interface (no flannel-iface); Nebula carries only
    cross-cluster traffic. Labels are not here: k3s would apply them at registration only and
    a change would restart k3s for nothing (membership.sh keeps them)."""
    config: dict[str, object] = {
        "token-file": K3S_TOKEN_PATH,
        "node-ip": node.ip,
    }
    if node.role == "first-server":
        config["cluster-init"] = True  # embedded etcd, HA from the first server on
    else:
        # Through the VIP when there is one, so a node can join while any server is down
        # (https://docs.k3s.io/datastore/ha-embedded: a fixed registration address).
        config["server"] = cluster.api_url
    if node.is_server:
        config |= {
            "tls-san": sorted({cluster.api_endpoint, node.ip, *node.extra_tls_sans}),
            "cluster-cidr": cluster.pod_cidr,
            "service-cidr": cluster.service_cidr,
            "cluster-dns": cluster.cluster_dns,
            "disable": list(cluster.disable),
            "node-taint": list(node.taints),
            "write-kubeconfig-mode": "0600",
            "secrets-encryption": True,
            "kube-apiserver-arg": [
                *audit_apiserver_args(),
                *([apiserver_arg()] if cluster.pod_security else []),
            ],
        }
        if cluster.etcd_snapshots is not None:
            config |= etcd_snapshot_config(cluster.etcd_snapshots)
    header = f"# {K3S_CONFIG_PATH} of {node.name}, written by Pulumi (hybridgpu homelab stack).\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def server_taints() -> tuple[str, ...]:
    """What every homelab server carries: nothing but system pods run on control planes."""
    return (CONTROL_PLANE_TAINT,)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def render_install_script(node: K3sNode, cluster: K3sClusterSettings) -> str:
    """templates/install.sh for ``node``: config and token written (0600; the token arrives on
    stdin), the pinned installer run when the version differs, k3s restarted only on a change.
    The servers also get the kube-vip manifest; the first server waits until the VIP answers,
    since every other node joins through it."""
    wait_for_vip = cluster.vip is not None and node.role == "first-server"
    return scripts.render(
        "install.sh",
        NODE_NAME=node.name,
        INSTALL_EXEC="server" if node.is_server else "agent",
        SERVICE=k3s_service(node),
        K3S_VERSION=cluster.version,
        INSTALLER_URL=k3s_installer_url(cluster.version),
        CONFIG_B64=_b64(render_node_config(node, cluster)),
        MANIFEST_B64=(
            _b64(render_manifest_file(cluster.vip))
            if cluster.vip is not None and node.is_server
            else ""
        ),
        PSA_B64=(_b64(cluster.pod_security) if cluster.pod_security and node.is_server else ""),
        PSA_PATH=PSA_CONFIG_PATH,
        SCRATCH_MOUNT=node.scratch_mount or "",
        AUDIT_POLICY_B64=_b64(render_audit_policy()) if node.is_server else "",
        WAIT_FOR_URL=f"{cluster.api_url}/cacerts" if wait_for_vip else "",
    )


def k3s_service(node: K3sNode) -> str:
    """systemd unit the k3s installer creates."""
    return "k3s" if node.is_server else "k3s-agent"


def render_uninstall_script(node: K3sNode) -> str:
    script = "k3s-agent-uninstall.sh" if node.role == "agent" else "k3s-uninstall.sh"
    path = f"/usr/local/bin/{script}"
    return f"#!/bin/bash\nset -euo pipefail\nif [ -x {path} ]; then sudo {path}; fi\n"
