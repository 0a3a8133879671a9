"""Installing Nebula on a node, both ways the stacks need (pure renderers, no Pulumi).

* A file bundle (:func:`node_files`): every file a node needs with its path and mode, the
  binary installer and the systemd unit included. EC2 nodes receive it through their boot-time
  file sync (components/aws), homelab VMs over SSH.
* Over SSH (Proxmox VMs): the command runs the constant script ``templates/apply-nebula-files.sh``
  as root and sends the files on stdin (:func:`render_stdin_bundle`), so no key is in any command
  text; the script rewrites changed files and restarts Nebula only then.

The binary is a pinned release verified by SHA-256, for x86_64 hosts.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from typing import Any

from components.base.files import NodeFile
from components.base.templates import render

NEBULA_VERSION = "v1.9.5"
# SHA-256 of nebula-linux-amd64.tar.gz of v1.9.5, as pinned by a public pyinfra deployment
# (NEBULA_HASH beside the v1.9.5 download URL); GitHub's release page lists the same SHA256SUMS.
# Newer patch releases (1.9.6 fixes a relay-migration panic) are not adopted until a checksum
# from a source we can verify is at hand: an unverified download is worse than a known bug.
NEBULA_SHA256 = "af57ded8f3370f0486bb24011942924b361d77fa34e3478995b196a5441dbf71"
NEBULA_URL = f"https://github.com/slackhq/nebula/releases/download/{NEBULA_VERSION}/nebula-linux-amd64.tar.gz"
NEBULA_ARCHITECTURES = ("x86_64",)
"""Architectures the pinned download exists for (its checksum is for amd64 only)."""
BIN_DIR = "/usr/local/bin"
ETC_DIR = "/etc/nebula"
UNIT_PATH = "/etc/systemd/system/nebula.service"
INSTALL_SCRIPT_PATH = "/usr/local/sbin/hybridgpu-install-nebula"


@dataclass(frozen=True)
class NebulaFiles:
    """What a node needs: its config and PKI material (the key is secret)."""

    config_yaml: str
    ca_pem: str
    """Every CA certificate the node trusts (a bundle during CA renewal)."""
    cert_pem: str
    key_pem: str


SYSTEMD_UNIT = render(__file__, "nebula.service", {"BIN_DIR": BIN_DIR, "ETC_DIR": ETC_DIR})
BINARY_INSTALL = render(
    __file__,
    "install-nebula.sh",
    {
        "NEBULA_VERSION": NEBULA_VERSION,
        "NEBULA_URL": NEBULA_URL,
        "NEBULA_SHA256": NEBULA_SHA256,
        "BIN_DIR": BIN_DIR,
    },
)
APPLY_SCRIPT = render(
    __file__,
    "apply-nebula-files.sh",
    {"ETC_DIR": ETC_DIR, "UNIT_PATH": UNIT_PATH, "INSTALL_SCRIPT_PATH": INSTALL_SCRIPT_PATH},
)


NEBULA_UNIT = "nebula.service"


def node_files(files: NebulaFiles) -> list[NodeFile]:
    """Every file of a Nebula node (names as the SSH bundle knows them). Config and key are
    root-only; certificates are public. A change of any of them restarts Nebula."""
    restart = (NEBULA_UNIT,)
    return [
        NodeFile("config.yml", f"{ETC_DIR}/config.yml", "0600", files.config_yaml, restart=restart),
        NodeFile("ca.crt", f"{ETC_DIR}/ca.crt", "0644", files.ca_pem, restart=restart),
        NodeFile("host.crt", f"{ETC_DIR}/host.crt", "0644", files.cert_pem, restart=restart),
        NodeFile("host.key", f"{ETC_DIR}/host.key", "0600", files.key_pem, restart=restart),
        NodeFile("install-nebula", INSTALL_SCRIPT_PATH, "0755", BINARY_INSTALL),
        NodeFile("nebula.service", UNIT_PATH, "0644", SYSTEMD_UNIT, restart=restart),
    ]


def render_stdin_bundle(files: NebulaFiles) -> str:
    """What the SSH command sends on stdin: ``<name> <mode> <base64>`` per line."""
    return "".join(
        f"{f.name} {f.mode} {base64.b64encode(f.content.encode()).decode()}\n"
        for f in node_files(files)
    )


def render_ssh_uninstall_script() -> str:
    """Bash run on delete: stop Nebula and remove what the install wrote."""
    return (
        "#!/bin/bash\n"
        "set -euo pipefail\n"
        "systemctl disable --now nebula.service 2>/dev/null || true\n"
        f"rm -f {UNIT_PATH} {INSTALL_SCRIPT_PATH}\n"
        f"rm -rf {ETC_DIR}\n"
        "systemctl daemon-reload\n"
    )


def as_root(script: str, name: str) -> str:
    """The command line that runs ``script`` as root through sudo (a cloud image's SSH user is
    not root). The script is an argument, so the command's stdin stays free for its data."""
    return f"sudo bash -c {shlex.quote(script)} {shlex.quote(name)}"


def render_cloud_init_fragment(files: NebulaFiles) -> dict[str, list[Any]]:
    """cloud-config ``write_files`` and ``runcmd`` that install and start Nebula on first boot."""
    write_files: list[dict[str, Any]] = [
        {"path": f.path, "content": f.content, "owner": "root:root", "permissions": f.mode}
        for f in node_files(files)
    ]
    runcmd: list[Any] = [
        [INSTALL_SCRIPT_PATH],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "nebula.service"],
    ]
    return {"write_files": write_files, "runcmd": runcmd}
