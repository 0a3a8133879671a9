"""Rendering for the homelab k3s cluster (pure): config.yaml per node and the SSH install
script. k3s reads /etc/rancher/k3s/config.yaml; its keys are the CLI flags without ``--``
(https://docs.k3s.io/installation/configuration#configuration-file)."""

from __future__ import annotations

import base64
import ipaddress
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import yaml

from components.kube.labels import CONTROL_PLANE_TAINT
from components.nebula.config import K3S_API_PORT

K3S_CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
K3S_TOKEN_PATH = "/etc/rancher/k3s/cluster-token"  # noqa: S105 - a path, not a credential
# The installer is fetched from the pinned release tag, so the script itself is pinned too.
INSTALLER_URL = "https://raw.githubusercontent.com/k3s-io/k3s/{version}/install.sh"
# Proxmox names a VM disk by its bus slot: the scratch disk is scsi1 (components/proxmox/vm.py).
SCRATCH_DEVICE = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1"
SCRATCH_LABEL = "hgscratch"


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
    scratch_mount: str | None = None
    """Where to format (once) and mount the VM's scratch disk; None: the node has none."""
    extra_tls_sans: Sequence[str] = field(default_factory=tuple)
    """More API addresses on a server's certificate (its Nebula IP, for Liqo)."""


@dataclass(frozen=True)
class K3sClusterSettings:
    version: str
    api_endpoint: str
    """Address clients and joining nodes use (VIP/DNS name or the first server's IP)."""
    first_server_ip: str
    pod_cidr: str
    service_cidr: str
    cluster_dns: str
    disable: Sequence[str] = ("servicelb",)


def render_node_config(node: K3sNode, cluster: K3sClusterSettings) -> str:
    """config.yaml of one node. Intra-cluster traffic stays on the LAN: node-ip is the LAN
    address and flannel uses that interface (no flannel-iface); Nebula carries only
    cross-cluster traffic."""
    config: dict[str, object] = {
        "token-file": K3S_TOKEN_PATH,
        "node-ip": node.ip,
    }
    if node.role == "first-server":
        config["cluster-init"] = True  # embedded etcd, HA from the first server on
    else:
        # Servers join the first one; agents too (the API endpoint may be a VIP only later).
        config["server"] = f"https://{cluster.first_server_ip}:6443"
    if node.role != "agent":
        config |= {
            "tls-san": sorted({cluster.api_endpoint, node.ip, *node.extra_tls_sans}),
            "cluster-cidr": cluster.pod_cidr,
            "service-cidr": cluster.service_cidr,
            "cluster-dns": cluster.cluster_dns,
            "disable": list(cluster.disable),
            "node-taint": [CONTROL_PLANE_TAINT],
            "write-kubeconfig-mode": "0600",
            "secrets-encryption": True,
        }
    if node.labels:
        config["node-label"] = list(node.labels)
    header = f"# {K3S_CONFIG_PATH} of {node.name}, written by Pulumi (hybridgpu homelab stack).\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def render_scratch_mount(mount_point: str | None) -> list[str]:
    """Script lines: format the scratch disk once (never a disk that has a file system), mount
    it by label at ``mount_point`` now and at boot (``nofail``: a missing disk never blocks
    boot)."""
    if mount_point is None:
        return []
    target = shlex.quote(mount_point)
    fstab_line = shlex.quote(
        f"LABEL={SCRATCH_LABEL} {mount_point} ext4 defaults,nofail,discard 0 2"
    )
    return [
        f"if [ ! -b {SCRATCH_DEVICE} ]; then",
        f'  echo "scratch disk {SCRATCH_DEVICE} not found" >&2',
        "  exit 1",
        "fi",
        f"if ! sudo blkid {SCRATCH_DEVICE} >/dev/null 2>&1; then",
        f"  sudo mkfs.ext4 -q -L {SCRATCH_LABEL} {SCRATCH_DEVICE}",
        "fi",
        f"sudo install -d -m 0755 {target}",
        f"if ! grep -q {shlex.quote('LABEL=' + SCRATCH_LABEL + ' ')} /etc/fstab; then",
        f"  echo {fstab_line} | sudo tee -a /etc/fstab >/dev/null",
        "fi",
        f"sudo mountpoint -q {target} || sudo mount {target}",
    ]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def render_install_script(node: K3sNode, cluster: K3sClusterSettings) -> str:
    """Bash run over SSH (via sudo): wait for cloud-init, write config and the join token (0600;
    the token arrives on stdin, so it is in no command line), run the pinned installer.
    Re-running is safe; a new version or config upgrades in place (the installer restarts k3s).
    Nothing secret is printed."""
    service = "k3s-agent" if node.role == "agent" else "k3s"
    exec_mode = "agent" if node.role == "agent" else "server"
    url = INSTALLER_URL.format(version=cluster.version)
    return "\n".join(
        [
            "#!/bin/bash",
            f"# Install k3s {cluster.version} on {node.name} ({node.role}). Prints no secret.",
            "set -euo pipefail",
            "umask 077",
            "status=0",
            "sudo timeout 900 cloud-init status --wait </dev/null >/dev/null || status=$?",
            'if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then',
            '  echo "cloud-init did not finish (exit $status) on this VM" >&2',
            "  exit 1",
            "fi",
            *render_scratch_mount(node.scratch_mount),
            "sudo install -d -m 0755 /etc/rancher/k3s",
            f"sudo install -m 0600 /dev/stdin {K3S_TOKEN_PATH}  # the token, from stdin",
            f"printf %s {shlex.quote(_b64(render_node_config(node, cluster)))} | base64 -d"
            f" | sudo install -m 0600 /dev/stdin {K3S_CONFIG_PATH}",
            "installed=$(k3s --version 2>/dev/null | head -n1 || true)",
            f'if [[ "$installed" != *"{cluster.version}"* ]] '
            f"|| ! systemctl is-active --quiet {service}; then",
            "  tmp=$(mktemp)",
            "  trap 'rm -f \"$tmp\"' EXIT",
            f'  curl -fsSL --retry 5 --retry-delay 3 -o "$tmp" {url}',
            f"  sudo env INSTALL_K3S_VERSION={shlex.quote(cluster.version)}"
            f' INSTALL_K3S_EXEC={exec_mode} sh "$tmp" </dev/null >/dev/null',
            "else",
            f"  sudo systemctl restart {service}  # same version: pick up a changed config",
            "fi",
            f"timeout 300 sh -c 'until systemctl is-active --quiet {service}; do sleep 2; done'",
            f'echo "k3s {cluster.version}: {service} active on {node.name}"',
            "",
        ]
    )


def render_uninstall_script(node: K3sNode) -> str:
    script = "k3s-agent-uninstall.sh" if node.role == "agent" else "k3s-uninstall.sh"
    path = f"/usr/local/bin/{script}"
    return f"#!/bin/bash\nset -euo pipefail\nif [ -x {path} ]; then sudo {path}; fi\n"
