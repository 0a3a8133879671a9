"""Pure renderers for the AWS k3s nodes: k3s ``config.yaml`` and the cloud-init user data.

No Pulumi import on purpose: every function here maps plain values to text, so it is unit-tested
directly and its output is exactly what ``./dev plan aws-gpu`` writes for review.

Boot sequence of a node (cloud-init runs ``write_files`` before ``runcmd``):

1. ``write_files``: the k3s config (0600), the cluster token (0600), a systemd drop-in that orders
   k3s after Nebula, the wait-for-Nebula script and the pinned k3s install script.
2. ``runcmd``: first the commands of ``extra_parts`` (the Nebula install fragment), then the k3s
   install script, which installs the pinned release and enables the unit so it starts on every
   boot: a stopped-then-started GPU worker rejoins by itself.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import yaml

from components.k3s.config import cluster_dns_ip, k3s_api_url, k3s_installer_url
from components.kube.labels import check_label_value

K3sRole = Literal["server", "agent"]

K3S_CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
K3S_TOKEN_PATH = "/etc/rancher/k3s/cluster-token"  # noqa: S105 - a file path, not a secret
INSTALL_SCRIPT_PATH = "/usr/local/sbin/hybridgpu-install-k3s"
WAIT_SCRIPT_PATH = "/usr/local/sbin/hybridgpu-wait-for-nebula"
NEBULA_INTERFACE = "nebula1"
NEBULA_UNIT = "nebula.service"
NEBULA_WAIT_SECONDS = 120
SERVER_START_TIMEOUT_SECONDS = 600
# Packaged components the AWS cluster does not need: nothing is exposed through an ingress or a
# LoadBalancer there (offloaded pods are reached through Liqo/Nebula), so Traefik and ServiceLB
# would only use memory on the small control node (https://docs.k3s.io/installation/packaged-components).
AWS_K3S_DISABLE = ("traefik", "servicelb")
# EC2 refuses user data above 16 KB (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html).
USER_DATA_LIMIT_BYTES = 16 * 1024
CLOUD_CONFIG_KEYS = ("packages", "write_files", "runcmd")
"""Keys a cloud-config fragment may carry; anything else is rejected rather than dropped."""

UNIT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9:_.@-]+\.service$")
INTERFACE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _check_interface(interface: str) -> None:
    if not INTERFACE_PATTERN.match(interface):
        raise ValueError(f"'{interface}' is not a network interface name")


def _dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_LiteralDumper, sort_keys=False, width=1000)


class _LiteralDumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings as ``|`` blocks (readable scripts) and no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _represent_str)


def _k3s_config_text(settings: Mapping[str, Any]) -> str:
    header = (
        "# /etc/rancher/k3s/config.yaml, written by Pulumi (hybridgpu aws-gpu stack).\n"
        "# Keys are the k3s CLI flags without '--' (https://docs.k3s.io/installation/configuration).\n"
    )
    return header + _dump_yaml(dict(settings))


def render_k3s_server_config(
    *,
    overlay_ip: str,
    pod_cidr: str,
    service_cidr: str,
    disable: Sequence[str] = AWS_K3S_DISABLE,
    interface: str = NEBULA_INTERFACE,
    node_labels: Sequence[str] = ("node-type=control",),
) -> str:
    """k3s server ``config.yaml`` of the AWS control node.

    Everything k3s says about itself goes over the Nebula overlay: ``node-ip`` and
    ``advertise-address`` are the overlay IP, flannel's VXLAN runs on ``nebula1``. No
    ``bind-address``: binding the API to the overlay IP alone would make k3s fail whenever Nebula
    starts late. The security group admits 6443 from the admin ranges only (Pulumi's Kubernetes
    provider and liqoctl on the operator's machine); everyone else reaches it through the overlay
    (and Nebula's firewall). ``tls-san`` holds the overlay IP only: the admin kubeconfig names
    the built-in ``kubernetes`` SAN as its TLS server name instead of the Elastic IP.
    """
    _check_interface(interface)
    ip = str(ipaddress.IPv4Address(overlay_ip))
    settings: dict[str, Any] = {
        "node-ip": ip,
        "advertise-address": ip,
        "tls-san": [ip],
        "cluster-cidr": str(ipaddress.IPv4Network(pod_cidr)),
        "service-cidr": str(ipaddress.IPv4Network(service_cidr)),
        "cluster-dns": cluster_dns_ip(service_cidr),
        "flannel-iface": interface,
        "disable": list(disable),
        # Only root reads the admin kubeconfig (k3s's default is 0600 too; stated to be explicit).
        "write-kubeconfig-mode": "0600",
        # Encrypt Secrets at rest in the datastore (https://docs.k3s.io/security/secrets-encryption).
        "secrets-encryption": True,
        "token-file": K3S_TOKEN_PATH,
        "node-label": list(node_labels),
    }
    return _k3s_config_text(settings)


def render_k3s_agent_config(
    *,
    server_ip: str,
    overlay_ip: str,
    node_labels: Sequence[str],
    interface: str = NEBULA_INTERFACE,
    default_runtime: str | None = "nvidia",
) -> str:
    """k3s agent ``config.yaml`` of the GPU worker: joins the server over the overlay.

    ``default-runtime: nvidia`` makes the NVIDIA container runtime (shipped by the GPU AMI, and
    detected by k3s) the node's default, so pods offloaded by Liqo need no ``runtimeClassName``
    (https://github.com/k3s-io/k3s/issues/8700 added the option). Pass ``None`` for an AMI without
    the NVIDIA container toolkit.
    """
    _check_interface(interface)
    for label in node_labels:
        key, sep, value = label.partition("=")
        if not key or not sep:
            raise ValueError(f"node label '{label}' is not key=value")
        check_label_value(value, f"node label '{key}' value")
    settings: dict[str, Any] = {
        "server": k3s_api_url(server_ip),
        "token-file": K3S_TOKEN_PATH,
        "node-ip": str(ipaddress.IPv4Address(overlay_ip)),
        "flannel-iface": interface,
        "node-label": list(node_labels),
    }
    if default_runtime:
        settings["default-runtime"] = default_runtime
    return _k3s_config_text(settings)


def k3s_unit(role: K3sRole) -> str:
    """systemd unit the k3s installer creates: ``k3s`` for a server, ``k3s-agent`` for an agent."""
    return "k3s" if role == "server" else "k3s-agent"


def render_install_script(*, role: K3sRole, k3s_version: str) -> str:
    """Script that installs the pinned k3s release once, enables the unit and starts it.

    The installer (pinned by tag) downloads the release binary and checks it against the
    release's sha256sum file. ``INSTALL_K3S_SKIP_START`` then lets this script decide how to
    start: a server start waits for k3s to be ready (bounded, so cloud-init reports a failure the
    kubeconfig fetch can show); an agent start does not wait, because an agent that cannot reach
    its server blocks ``systemctl start`` forever (TimeoutStartSec=0 in the k3s unit) and with it
    cloud-init (the "agent hangs at enable and start" failure of k3s-ansible).
    """
    if role not in ("server", "agent"):
        raise ValueError(f"role must be 'server' or 'agent', got {role!r}")
    unit = k3s_unit(role)
    start = (
        f"timeout {SERVER_START_TIMEOUT_SECONDS} systemctl start {unit}"
        if role == "server"
        else f"systemctl start --no-block {unit}"
    )
    return f"""#!/bin/bash
# Installs the pinned k3s release (k3s {role}); written by Pulumi (components/aws_cloud_init.py).
set -euo pipefail

readonly K3S_VERSION={shlex.quote(k3s_version)}
readonly INSTALLER_URL={shlex.quote(k3s_installer_url(k3s_version))}

if [[ "$(k3s --version 2>/dev/null || true)" == *"k3s version ${{K3S_VERSION}} "* ]]; then
  echo "hybridgpu: k3s ${{K3S_VERSION}} is already installed"
else
  installer=$(mktemp)
  trap 'rm -f "$installer"' EXIT
  curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 \\
    --retry 5 --retry-delay 5 --output "$installer" "$INSTALLER_URL"
  INSTALL_K3S_VERSION="$K3S_VERSION" INSTALL_K3S_EXEC={role} INSTALL_K3S_SKIP_START=true \\
    sh "$installer"
fi

# Enabled: k3s starts on every boot (after Nebula, see the drop-in), so a stopped node rejoins.
systemctl enable {unit}
{start}
"""


def render_wait_for_nebula_script() -> str:
    """``ExecStartPre`` of k3s: wait (bounded) until the overlay interface has the node's IP.

    ``After=nebula.service`` only orders the start; the tun device gets its address a moment
    later, and k3s must not start before that (``node-ip`` and flannel use it).
    """
    return """#!/bin/bash
# Waits until a network interface carries an IPv4 address; written by Pulumi (hybridgpu).
# usage: hybridgpu-wait-for-nebula INTERFACE ADDRESS TIMEOUT_SECONDS
set -euo pipefail

interface=${1:?usage: hybridgpu-wait-for-nebula INTERFACE ADDRESS TIMEOUT_SECONDS}
address=${2:?usage: hybridgpu-wait-for-nebula INTERFACE ADDRESS TIMEOUT_SECONDS}
timeout_seconds=${3:-120}
deadline=$((SECONDS + timeout_seconds))

has_address() {
  local addresses
  addresses=$(ip -4 -o addr show dev "$interface" 2>/dev/null || true)
  [[ "$addresses" == *" inet ${address}/"* ]]
}

until has_address; do
  if ((SECONDS >= deadline)); then
    echo "hybridgpu: ${interface} has no address ${address} after ${timeout_seconds}s;" \\
      "check Nebula (journalctl -u nebula)" >&2
    exit 1
  fi
  sleep 2
done
"""


def render_nebula_dropin(
    *, overlay_ip: str, nebula_unit: str = NEBULA_UNIT, interface: str = NEBULA_INTERFACE
) -> str:
    """systemd drop-in for the k3s unit: start after Nebula, stop with it, wait for the IP."""
    if not UNIT_NAME_PATTERN.match(nebula_unit):
        raise ValueError(f"'{nebula_unit}' is not a systemd service unit name")
    _check_interface(interface)
    ip = ipaddress.IPv4Address(overlay_ip)
    return (
        "# Written by Pulumi (hybridgpu): k3s runs on the Nebula overlay (node-ip,\n"
        "# flannel-iface), so it starts after Nebula and is stopped with it.\n"
        "[Unit]\n"
        f"After={nebula_unit}\n"
        f"Requires={nebula_unit}\n"
        "\n"
        "[Service]\n"
        f"ExecStartPre={WAIT_SCRIPT_PATH} {interface} {ip} {NEBULA_WAIT_SECONDS}\n"
    )


def k3s_install_part(
    *,
    role: K3sRole,
    k3s_version: str,
    k3s_config: str,
    token: str,
    overlay_ip: str,
    nebula_unit: str = NEBULA_UNIT,
    interface: str = NEBULA_INTERFACE,
) -> dict[str, Any]:
    """The cloud-config fragment that installs k3s (``token`` makes it a secret document)."""
    if not token or not token.isalnum():
        # k3s-ansible: "the token should be a random, alphanumeric string".
        raise ValueError("the k3s token must be a non-empty alphanumeric string")
    unit = k3s_unit(role)
    return {
        "packages": ["curl"],
        "write_files": [
            _file(K3S_CONFIG_PATH, k3s_config, "0600"),
            _file(K3S_TOKEN_PATH, token, "0600"),
            _file(WAIT_SCRIPT_PATH, render_wait_for_nebula_script(), "0755"),
            _file(
                f"/etc/systemd/system/{unit}.service.d/10-after-nebula.conf",
                render_nebula_dropin(
                    overlay_ip=overlay_ip, nebula_unit=nebula_unit, interface=interface
                ),
                "0644",
            ),
            _file(
                INSTALL_SCRIPT_PATH,
                render_install_script(role=role, k3s_version=k3s_version),
                "0700",
            ),
        ],
        "runcmd": [[INSTALL_SCRIPT_PATH]],
    }


def _file(path: str, content: str, permissions: str) -> dict[str, str]:
    return {"path": path, "content": content, "owner": "root:root", "permissions": permissions}


def merge_cloud_config_parts(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge fragments in order: packages de-duplicated, write_files and runcmd concatenated.

    A key other than packages/write_files/runcmd, or two files with the same path, is an error:
    silently dropping or overwriting part of a node's boot would be found only on the node.
    """
    packages: list[str] = []
    write_files: list[dict[str, Any]] = []
    runcmd: list[Any] = []
    for part in parts:
        unknown = sorted(set(part) - set(CLOUD_CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"cloud-config fragment has unsupported keys {unknown}; allowed: "
                f"{list(CLOUD_CONFIG_KEYS)}"
            )
        for package in part.get("packages", ()):
            if package not in packages:
                packages.append(package)
        for entry in part.get("write_files", ()):
            if any(existing["path"] == entry["path"] for existing in write_files):
                raise ValueError(f"two cloud-config fragments write {entry['path']}")
            write_files.append(dict(entry))
        runcmd.extend(part.get("runcmd", ()))
    merged: dict[str, Any] = {}
    if packages:
        merged["packages"] = packages
    if write_files:
        merged["write_files"] = write_files
    if runcmd:
        merged["runcmd"] = runcmd
    return merged


def render_cloud_config(
    *parts: Mapping[str, Any], extra_parts: Mapping[str, Any] | None = None
) -> str:
    """A ``#cloud-config`` document from fragments.

    ``extra_parts`` (the Nebula install fragment) is merged FIRST, so its ``runcmd`` runs before
    k3s is installed and the overlay exists when k3s starts.
    """
    merged = merge_cloud_config_parts([*([extra_parts] if extra_parts else []), *parts])
    document = "#cloud-config\n" + _dump_yaml(merged)
    size = len(document.encode())
    if size > USER_DATA_LIMIT_BYTES:
        raise ValueError(
            f"cloud-init user data is {size} bytes; EC2 accepts at most {USER_DATA_LIMIT_BYTES}"
        )
    return document


def runcmd_as_shell(runcmd: Sequence[Any]) -> str:
    """The ``runcmd`` list as the shell script cloud-init runs (list items are exec'd as is)."""
    lines = [
        shlex.join(str(arg) for arg in command) if isinstance(command, list) else str(command)
        for command in runcmd
    ]
    return "#!/bin/sh\n" + "\n".join(lines) + "\n"
