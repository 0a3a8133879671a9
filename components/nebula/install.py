"""Installing Nebula on a node, both ways the stacks need (pure renderers, no Pulumi).

* EC2: :func:`render_cloud_init_fragment` returns ``write_files`` + ``runcmd`` for a larger
  cloud-config (the node component merges it, Nebula before k3s).
* Proxmox VMs: :func:`render_ssh_install_script` is run by pulumi-command over SSH; the command is
  re-run (and Nebula restarted) only when its text, i.e. the config or a certificate, changes.

Both install a pinned release, verified by SHA-256, for x86_64 Ubuntu hosts.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

NEBULA_VERSION = "v1.9.5"
# SHA-256 of nebula-linux-amd64.tar.gz of v1.9.5, as pinned by a public pyinfra deployment
# (NEBULA_HASH beside the v1.9.5 download URL); GitHub's release page lists the same SHA256SUMS.
NEBULA_SHA256 = "af57ded8f3370f0486bb24011942924b361d77fa34e3478995b196a5441dbf71"
NEBULA_URL = f"https://github.com/slackhq/nebula/releases/download/{NEBULA_VERSION}/nebula-linux-amd64.tar.gz"
BIN_DIR = "/usr/local/bin"
ETC_DIR = "/etc/nebula"
UNIT_PATH = "/etc/systemd/system/nebula.service"
INSTALL_SCRIPT_PATH = "/usr/local/sbin/hybridgpu-install-nebula"


@dataclass(frozen=True)
class NebulaFiles:
    """What a node needs: its config and PKI material (the key is secret)."""

    config_yaml: str
    ca_pem: str
    cert_pem: str
    key_pem: str


SYSTEMD_UNIT = f"""\
[Unit]
Description=Nebula overlay network (hybridgpu)
Wants=network-online.target
After=network-online.target
Before=k3s.service k3s-agent.service

[Service]
Type=simple
ExecStartPre={BIN_DIR}/nebula -test -config {ETC_DIR}/config.yml
ExecStart={BIN_DIR}/nebula -config {ETC_DIR}/config.yml
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=5
# Needs to create the tun device and set routes; nothing more.
CapabilityBoundingSet=CAP_NET_ADMIN
AmbientCapabilities=CAP_NET_ADMIN
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ReadOnlyPaths={ETC_DIR}

[Install]
WantedBy=multi-user.target
"""

# Downloads the pinned release unless that version is already installed. Runs as root.
BINARY_INSTALL = f"""\
#!/bin/bash
# Install Nebula {NEBULA_VERSION} (pinned, checksum-verified). Idempotent.
set -euo pipefail
want="{NEBULA_VERSION.removeprefix("v")}"
installed=$({BIN_DIR}/nebula -version 2>/dev/null || true)
if [ "$installed" = "Version: $want" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 5 --retry-delay 3 -o "$tmp/nebula.tar.gz" {NEBULA_URL}
echo "{NEBULA_SHA256}  $tmp/nebula.tar.gz" | sha256sum -c --quiet
tar -xzf "$tmp/nebula.tar.gz" -C "$tmp" nebula nebula-cert
install -m 0755 -o root -g root "$tmp/nebula" "$tmp/nebula-cert" {BIN_DIR}/
"""


def _file_modes() -> dict[str, str]:
    # Config and key are root-only; certificates are public.
    return {"config.yml": "0600", "ca.crt": "0644", "host.crt": "0644", "host.key": "0600"}


def _contents(files: NebulaFiles) -> dict[str, str]:
    return {
        "config.yml": files.config_yaml,
        "ca.crt": files.ca_pem,
        "host.crt": files.cert_pem,
        "host.key": files.key_pem,
    }


def render_cloud_init_fragment(files: NebulaFiles) -> dict[str, list[Any]]:
    """cloud-config ``write_files`` and ``runcmd`` that install and start Nebula on first boot."""
    modes = _file_modes()
    write_files: list[dict[str, Any]] = [
        {
            "path": f"{ETC_DIR}/{name}",
            "content": text,
            "owner": "root:root",
            "permissions": modes[name],
        }
        for name, text in _contents(files).items()
    ]
    write_files += [
        {"path": INSTALL_SCRIPT_PATH, "content": BINARY_INSTALL, "permissions": "0755"},
        {"path": UNIT_PATH, "content": SYSTEMD_UNIT, "permissions": "0644"},
    ]
    runcmd: list[Any] = [
        [INSTALL_SCRIPT_PATH],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "nebula.service"],
    ]
    return {"write_files": write_files, "runcmd": runcmd}


def merge_cloud_config(*fragments: Mapping[str, Any]) -> dict[str, Any]:
    """Merge cloud-config fragments: lists are concatenated in order, other keys must agree."""
    merged: dict[str, Any] = {}
    for fragment in fragments:
        for name, value in fragment.items():
            if isinstance(value, list) and isinstance(merged.get(name, []), list):
                merged[name] = [*merged.get(name, []), *value]
            elif name in merged and merged[name] != value:
                raise ValueError(f"cloud-config key '{name}' set twice with different values")
            else:
                merged[name] = value
    return merged


def dump_cloud_config(config: Mapping[str, Any]) -> str:
    return "#cloud-config\n" + yaml.safe_dump(dict(config), sort_keys=False, width=1000)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def render_ssh_install_script(files: NebulaFiles) -> str:
    """Bash run as root over SSH: install the pinned binary, write the files, (re)start Nebula
    only if something changed. File contents travel base64-encoded (no quoting pitfalls) and
    nothing secret is echoed (no ``set -x``)."""
    modes = _file_modes()
    lines = [
        "#!/bin/bash",
        "# Install/refresh Nebula (hybridgpu). Prints no secret.",
        "set -euo pipefail",
        "umask 077",
        f"install -d -m 0755 -o root -g root {ETC_DIR}",
        "changed=0",
        "put() {  # put <path> <mode> <base64 content>: replace only when different",
        "  local path=$1 mode=$2 tmp",
        "  tmp=$(mktemp)",
        '  printf %s "$3" | base64 -d > "$tmp"',
        '  if ! cmp -s "$tmp" "$path"; then',
        '    install -m "$mode" -o root -g root "$tmp" "$path"',
        "    changed=1",
        "  fi",
        '  rm -f "$tmp"',
        "}",
    ]
    for name, text in _contents(files).items():
        lines.append(f"put {ETC_DIR}/{name} {modes[name]} {shlex.quote(_b64(text))}")
    lines += [
        f"put {INSTALL_SCRIPT_PATH} 0755 {shlex.quote(_b64(BINARY_INSTALL))}",
        f"put {UNIT_PATH} 0644 {shlex.quote(_b64(SYSTEMD_UNIT))}",
        f"{INSTALL_SCRIPT_PATH}",
        "systemctl daemon-reload",
        "systemctl enable nebula.service >/dev/null",
        'if [ "$changed" = 1 ] || ! systemctl is-active --quiet nebula.service; then',
        "  systemctl restart nebula.service",
        "fi",
        "systemctl is-active --quiet nebula.service",
        'echo "nebula: active"',
    ]
    return "\n".join(lines) + "\n"


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


def as_root(script: str) -> str:
    """Run ``script`` through ``sudo bash`` from a quoted here-document: the SSH user of a cloud
    image is not root, and the quoted delimiter keeps the script's text from any expansion."""
    delimiter = "HYBRIDGPU_SCRIPT_EOF"
    if delimiter in script:
        raise ValueError("script contains the here-document delimiter")
    return f"sudo bash -s <<'{delimiter}'\n{script.rstrip()}\n{delimiter}\n"
