"""Pure renderers for the AWS k3s nodes: their k3s ``config.yaml``, the files the node agent
keeps in step, and the bootstrap user data (no Pulumi import: plain values to text).

The nodes' lifecycle (see components/aws/node_files.py for the why):

1. User data only bootstraps, and holds nothing secret: it writes the node agent
   (runtime/node_agent/hybridgpu_node.py) and its systemd units, removes the image's SSH host
   keys, and starts the first sync. The instance ignores later user-data edits (no stop/start).
2. Every sync (at boot before SSH, Nebula and k3s start; then on a timer; and over SSH when Pulumi
   applies a change to the control node) pulls the node's files from SSM: the SSH host key and
   authorized keys, Nebula's files, k3s's config and token, the pinned k3s installer. Changed
   files restart their units; the installers bring k3s (and Nebula) to the pinned versions.

Both clusters' nodes talk k3s over the VPC (node-ip = the private address, flannel on the VPC
interface), as the homelab does over its LAN: only cross-site traffic rides Nebula. So the AWS
pod network keeps the VPC's MTU, the worker needs no Nebula at all, and the two nodes never
hairpin through the internet gateway.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from components.base.files import NodeFile
from components.base.templates import render
from components.k3s.audit import AUDIT_POLICY_PATH, audit_apiserver_args, render_audit_policy
from components.k3s.config import cluster_dns_ip, k3s_installer_url
from components.k3s.pod_security import PSA_CONFIG_PATH, apiserver_arg
from components.kube.labels import check_label_value
from components.nebula.config import K3S_API_PORT

K3sRole = Literal["server", "agent"]

K3S_CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
K3S_TOKEN_PATH = "/etc/rancher/k3s/cluster-token"  # noqa: S105 - a file path, not a secret
K3S_AGENT_TOKEN_PATH = "/etc/rancher/k3s/agent-token"  # noqa: S105 - a file path
K3S_SERVER_CA = "/var/lib/rancher/k3s/server/tls/server-ca.crt"
INSTALL_K3S_PATH = "/usr/local/sbin/hybridgpu-install-k3s"
AGENT_PATH = "/usr/local/sbin/hybridgpu-node"
SSH_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
SERVER_START_TIMEOUT_SECONDS = 600
# Packaged components the AWS cluster does not need: nothing is exposed through an ingress or a
# LoadBalancer there (offloaded pods are reached through Liqo/Nebula), so Traefik and ServiceLB
# would only use memory on the small control node (https://docs.k3s.io/installation/packaged-components).
AWS_K3S_DISABLE = ("traefik", "servicelb")
# EC2 refuses user data above 16 KB (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html).
USER_DATA_LIMIT_BYTES = 16 * 1024
SYNC_INTERVAL = "5min"
CERT_RENEW_DAYS = 90
"""k3s renews certificates within 90 days of expiry when it starts (docs.k3s.io/cli/certificate)."""

AGENT_SOURCE = Path(__file__).resolve().parents[2] / "runtime" / "node_agent" / "hybridgpu_node.py"


def k3s_api_url(server_ip: str) -> str:
    return f"https://{ipaddress.IPv4Address(server_ip)}:{K3S_API_PORT}"


def _dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_LiteralDumper, sort_keys=False, width=1000)


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks: the rendered user data stays reviewable."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _represent_str)


def _k3s_config_text(settings: Mapping[str, Any]) -> str:
    header = (
        "# Written by Pulumi (hybridgpu): k3s reads this at start\n"
        "# (https://docs.k3s.io/installation/configuration#configuration-file).\n"
    )
    return header + _dump_yaml(dict(settings))


def render_k3s_server_config(
    *,
    private_ip: str,
    overlay_ip: str,
    pod_cidr: str,
    service_cidr: str,
    node_taints: Sequence[str],
    disable: Sequence[str] = AWS_K3S_DISABLE,
    node_labels: Sequence[str] = ("node-type=control",),
) -> str:
    """k3s server ``config.yaml`` of the AWS control node.

    k3s runs on the VPC (``node-ip`` = the private address, flannel on that interface). The API
    also answers on the Nebula overlay IP (the homelab's Liqo reaches it there) and on the
    Elastic IP for the admin ranges; ``tls-san`` names the private and overlay IPs, and the admin
    kubeconfig names the built-in ``kubernetes`` SAN instead of the Elastic IP. Agents join with
    the agent-only token (``agent-token-file``), never the server token, which gives full
    control of the cluster (https://docs.k3s.io/cli/token).
    """
    private = str(ipaddress.IPv4Address(private_ip))
    overlay = str(ipaddress.IPv4Address(overlay_ip))
    settings: dict[str, Any] = {
        "node-ip": private,
        "advertise-address": private,
        "tls-san": [private, overlay],
        "cluster-cidr": str(ipaddress.IPv4Network(pod_cidr)),
        "service-cidr": str(ipaddress.IPv4Network(service_cidr)),
        "cluster-dns": cluster_dns_ip(service_cidr),
        "disable": list(disable),
        # Only root reads the admin kubeconfig (k3s's default is 0600 too; stated to be explicit).
        "write-kubeconfig-mode": "0600",
        # Encrypt Secrets at rest in the datastore (https://docs.k3s.io/security/secrets-encryption).
        "secrets-encryption": True,
        "token-file": K3S_TOKEN_PATH,
        "agent-token-file": K3S_AGENT_TOKEN_PATH,
        "node-label": list(node_labels),
        "node-taint": list(node_taints),
        # Audit logging, and Pod Security "restricted" by default with named exemptions
        # (components/k3s/audit.py, components/k3s/pod_security.py).
        "kube-apiserver-arg": [*audit_apiserver_args(), apiserver_arg()],
    }
    return _k3s_config_text(settings)


def pod_security_file(admission_config: str) -> NodeFile:
    """The API server's admission configuration, which the server config names."""
    return NodeFile(
        "k3s/psa.yaml", PSA_CONFIG_PATH, "0600", admission_config, restart=(k3s_unit("server"),)
    )


def render_k3s_agent_config(
    *,
    server_ip: str,
    node_labels: Sequence[str],
    node_taints: Sequence[str],
    default_runtime: str | None = "nvidia",
) -> str:
    """k3s agent ``config.yaml`` of the GPU worker: joins the server on its private IP with the
    agent token.

    ``default-runtime: nvidia`` makes the NVIDIA container runtime (shipped by the GPU AMI, and
    detected by k3s) the node's default, so pods offloaded by Liqo need no ``runtimeClassName``
    (https://github.com/k3s-io/k3s/issues/8700 added the option). Pass ``None`` for an AMI without
    the NVIDIA container toolkit. The taint keeps everything but GPU work (and the DaemonSets
    that tolerate it) off the node that stops when idle.
    """
    for label in node_labels:
        key, sep, value = label.partition("=")
        if not key or not sep:
            raise ValueError(f"node label '{label}' is not key=value")
        check_label_value(value, f"node label '{key}' value")
    settings: dict[str, Any] = {
        "server": k3s_api_url(server_ip),
        "token-file": K3S_AGENT_TOKEN_PATH,
        "node-label": list(node_labels),
        "node-taint": list(node_taints),
    }
    if default_runtime:
        settings["default-runtime"] = default_runtime
    return _k3s_config_text(settings)


def k3s_unit(role: K3sRole) -> str:
    """systemd unit the k3s installer creates: ``k3s`` for a server, ``k3s-agent`` for an agent."""
    return "k3s.service" if role == "server" else "k3s-agent.service"


def render_install_script(*, role: K3sRole, k3s_version: str) -> str:
    """The idempotent k3s installer the node agent runs after each sync."""
    if role not in ("server", "agent"):
        raise ValueError(f"role must be 'server' or 'agent', got {role!r}")
    unit = k3s_unit(role)
    start = (
        f'timeout {SERVER_START_TIMEOUT_SECONDS} systemctl start "$unit"'
        if role == "server"
        else 'systemctl start --no-block "$unit"'
    )
    return render(
        __file__,
        "install-k3s.sh",
        {
            "K3S_ROLE": role,
            "K3S_VERSION": k3s_version,
            "K3S_UNIT": unit,
            "INSTALLER_URL": k3s_installer_url(k3s_version),
            "START_COMMAND": start,
        },
    )


def k3s_files(*, role: K3sRole, k3s_version: str, config: str, token: str) -> list[NodeFile]:
    """The k3s files of a node. ``token`` is the server token (server) or the agent token."""
    if not token or not all(c.isalnum() or c in ":_" for c in token):
        # k3s-ansible: "the token should be a random, alphanumeric string"; the secure agent
        # form adds "K10<hash>::node:" (':' and '_' are fine there).
        raise ValueError("the k3s token must be a non-empty alphanumeric string")
    unit = k3s_unit(role)
    token_path = K3S_TOKEN_PATH if role == "server" else K3S_AGENT_TOKEN_PATH
    return [
        NodeFile("k3s/config.yaml", K3S_CONFIG_PATH, "0600", config, restart=(unit,)),
        NodeFile(f"k3s/{Path(token_path).name}", token_path, "0600", token, restart=(unit,)),
        NodeFile(
            "k3s/install",
            INSTALL_K3S_PATH,
            "0755",
            render_install_script(role=role, k3s_version=k3s_version),
        ),
    ]


def audit_policy_file() -> NodeFile:
    """The server's API audit policy (components/k3s/audit.py), beside its config.yaml."""
    return NodeFile(
        "k3s/audit-policy.yaml",
        AUDIT_POLICY_PATH,
        "0600",
        render_audit_policy(),
        restart=(k3s_unit("server"),),
    )


def server_agent_token_file(token: str) -> NodeFile:
    """The server's copy of the agent token (``agent-token-file``): what agents join with."""
    return NodeFile(
        "k3s/agent-token", K3S_AGENT_TOKEN_PATH, "0600", token, restart=(k3s_unit("server"),)
    )


def ssh_files(
    *, host_key: str, host_public_line: str, user: str, authorized_keys: str
) -> list[NodeFile]:
    """The node's SSH identity (its host key, which every client of the program pins) and who
    may log in. Rotating ``authorizedKeys`` rewrites the file; the instance stays."""
    restart = ("ssh.service",)
    return [
        NodeFile("ssh/host-key", SSH_HOST_KEY, "0600", host_key, restart=restart),
        NodeFile(
            "ssh/host-key.pub", f"{SSH_HOST_KEY}.pub", "0644", host_public_line, restart=restart
        ),
        NodeFile(
            "ssh/authorized_keys",
            f"/home/{user}/.ssh/authorized_keys",
            "0600",
            authorized_keys if authorized_keys.endswith("\n") else authorized_keys + "\n",
            owner=user,
        ),
    ]


def agent_file(source: str | None = None) -> NodeFile:
    """The node agent itself, so a fixed agent reaches nodes that booted with an older one."""
    return NodeFile(
        "agent/hybridgpu-node",
        AGENT_PATH,
        "0755",
        source if source is not None else AGENT_SOURCE.read_text(),
    )


def _b64_gzip(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()


def render_bootstrap_user_data(
    *,
    region: str,
    parameter_path: str,
    ssh_user: str,
    ssh_public_key: str,
    heal: bool,
    gpu_selector: str = "node-type=gpu",
    agent_source: str | None = None,
) -> str:
    """The ``#cloud-config`` of a node's first boot. No secret: every secret arrives through the
    first sync, read with the node's own role."""
    for label in gpu_selector.split(","):
        key, _, value = label.partition("=")
        check_label_value(value, f"selector '{key}' value")
    values = {"REGION": region, "PARAMETER_PATH": parameter_path}
    files: list[dict[str, Any]] = [
        {
            "path": AGENT_PATH,
            "encoding": "gz+b64",
            "content": _b64_gzip(
                agent_source if agent_source is not None else AGENT_SOURCE.read_text()
            ),
            "permissions": "0755",
        },
        {
            "path": "/etc/systemd/system/hybridgpu-node-sync.service",
            "content": render(__file__, "hybridgpu-node-sync.service", values),
            "permissions": "0644",
        },
        {
            "path": "/etc/systemd/system/hybridgpu-node-sync.timer",
            "content": render(
                __file__, "hybridgpu-node-sync.timer", {"SYNC_INTERVAL": SYNC_INTERVAL}
            ),
            "permissions": "0644",
        },
    ]
    units = ["hybridgpu-node-sync.service", "hybridgpu-node-sync.timer"]
    if heal:
        files += [
            {
                "path": "/etc/systemd/system/hybridgpu-node-heal.service",
                "content": render(
                    __file__,
                    "hybridgpu-node-heal.service",
                    {"GPU_SELECTOR": gpu_selector, "RENEW_DAYS": CERT_RENEW_DAYS},
                ),
                "permissions": "0644",
            },
            {
                "path": "/etc/systemd/system/hybridgpu-node-heal.timer",
                "content": render(__file__, "hybridgpu-node-heal.timer", {}),
                "permissions": "0644",
            },
        ]
        units.append("hybridgpu-node-heal.timer")
    document: dict[str, Any] = {
        # The image's host keys are deleted; only a throwaway Ed25519 key is generated (the
        # schema wants at least one), which the first sync replaces with the key the program
        # owns. Every SSH client of the program pins that key, so it refuses the throwaway one
        # (and retries its dial) until then.
        "ssh_deletekeys": True,
        "ssh_genkeytypes": ["ed25519"],
        "ssh_authorized_keys": [ssh_public_key],
        "write_files": files,
        "runcmd": [
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", *units],
            ["systemctl", "start", "--no-block", *(u for u in units if u.endswith(".timer"))],
            ["systemctl", "start", "hybridgpu-node-sync.service"],
        ],
    }
    if ssh_user != "ubuntu":
        document["system_info"] = {"default_user": {"name": ssh_user}}
    text = "#cloud-config\n" + _dump_yaml(document)
    size = len(text.encode())
    if size > USER_DATA_LIMIT_BYTES:
        raise ValueError(
            f"cloud-init user data is {size} bytes; EC2 accepts at most {USER_DATA_LIMIT_BYTES}"
        )
    return text


def runcmd_as_shell(runcmd: Sequence[Any]) -> str:
    """The ``runcmd`` list as the shell script cloud-init runs (list items are exec'd as is)."""
    lines = [
        shlex.join(str(arg) for arg in command) if isinstance(command, list) else str(command)
        for command in runcmd
    ]
    return "#!/bin/sh\n" + "\n".join(lines) + "\n"
