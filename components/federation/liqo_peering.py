"""Liqo peering of the homelab (consumer) with the AWS cluster (provider), run by ``liqoctl``
on the machine running Pulumi.

Networking rides the Nebula overlay: the gateway server is a NodePort on the provider, the
client dials the provider node's overlay IP (never a LoadBalancer: there is none and nothing
crosses the internet outside Nebula), and the WireGuard MTU fits inside Nebula's. The virtual
node gets fixed resources, including GPUs, so it keeps advertising them while the EC2 worker
is stopped (https://docs.liqo.io/en/stable/advanced/peering/offloading-in-depth.html).

Both kubeconfigs reach the script through its environment (secret in Pulumi state) and are
written to a private temporary directory (0700, files 0600) removed on exit; the script
prints neither.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_command import local

from components.federation.liqo import NAMESPACE

CONSUMER_ENV = "HYBRIDGPU_CONSUMER_KUBECONFIG"
PROVIDER_ENV = "HYBRIDGPU_PROVIDER_KUBECONFIG"
# Liqo's gateway server port inside the provider cluster (liqoctl's default, 51840); the
# NodePort in front of it is what crosses Nebula.
GATEWAY_SERVICE_PORT = 51840
ARCHIVE_ENV = "HYBRIDGPU_LIQOCTL_ARCHIVE"
"""An already downloaded ``liqoctl-<os>-<arch>.tar.gz`` (offline machines); else it is fetched."""

# SHA-256 of each liqoctl release archive, per platform. Liqo's release publishes the archives
# without a checksum file (liqotech/liqo .github/workflows/integration.yml@v1.2.0: "Create
# Archives", then release-action); its krew-release-bot step writes their SHA-256 into the krew
# index, which is where these come from: kubernetes-sigs/krew-index plugins/liqo.yaml@9a6de979
# ("new version v1.2.0 of liqo", uri + sha256 per platform).
LIQOCTL_SHA256: dict[str, dict[str, str]] = {
    "v1.2.0": {
        "linux-amd64": "88c81be5abfe118bb5d7d45cfde6787267b26bbd5d1c2430486f7017146bf15f",
        "linux-arm64": "ed7d2f38cd2fe93ab16b67b4f0d4660a9405b5d2e8a88ca2ef3f80f96f6591b7",
        "darwin-amd64": "5196e8f1a2679a36a7c9a8eea222fa46adeab874e0bb8623c8ccd6622d1bea86",
        "darwin-arm64": "1bf9ca1340f95bbca5585372e898ff95cbdfaa846421962ef767dbad54933a65",
    },
}
# uname -s/-m of the operator's machine -> the archive's platform name.
PLATFORMS = {
    "Linux-x86_64": "linux-amd64",
    "Linux-aarch64": "linux-arm64",
    "Linux-arm64": "linux-arm64",
    "Darwin-x86_64": "darwin-amd64",
    "Darwin-arm64": "darwin-arm64",
}


def liqoctl_release_url(version: str) -> str:
    return f"https://github.com/liqotech/liqo/releases/download/{version}"


@dataclass(frozen=True)
class PeeringSettings:
    liqo_version: str
    gateway_nodeport: int
    mtu: int
    cpu: str
    memory: str
    pods: int
    resources: Mapping[str, int]
    """Extended resources advertised on the virtual node, e.g. {"nvidia.com/gpu": 1}."""
    timeout: str = "10m"
    liqoctl_sha256: Mapping[str, str] | None = None
    """Platform -> SHA-256 of its liqoctl archive; default: LIQOCTL_SHA256[liqo_version]."""
    liqoctl_url: str | None = None
    """Where the archives are; default: the Liqo release of ``liqo_version``."""

    @property
    def checksums(self) -> Mapping[str, str]:
        """Empty for a version with no pinned digests: the scripts then refuse to run (a plan
        still shows the upgrade; the `up` stops at the peering, naming what to add)."""
        if self.liqoctl_sha256 is not None:
            return self.liqoctl_sha256
        return LIQOCTL_SHA256.get(self.liqo_version, {})


def _fetch_liqoctl(settings: PeeringSettings) -> list[str]:
    """liqoctl from its release archive, verified by SHA-256 before anything of it runs, into
    the (private, deleted on exit) work directory; nothing is taken from PATH."""
    sums = settings.checksums
    cases = [
        f"  {uname}) platform={platform}; sha={shlex.quote(sums[platform])} ;;"
        for uname, platform in PLATFORMS.items()
        if platform in sums
    ]
    base = shlex.quote(settings.liqoctl_url or liqoctl_release_url(settings.liqo_version))
    return [
        'case "$(uname -s)-$(uname -m)" in',
        *cases,
        f'  *) echo "no pinned liqoctl {settings.liqo_version} checksum for'
        " $(uname -s)-$(uname -m); add it to LIQOCTL_SHA256"
        ' (components/federation/liqo_peering.py)" >&2; exit 1 ;;',
        "esac",
        f'archive="${{{ARCHIVE_ENV}:-}}"',
        'if [ -z "$archive" ]; then',
        '  archive="$workdir/liqoctl-$platform.tar.gz"',
        f'  if ! curl -fsSL --retry 3 -o "$archive" {base}/"liqoctl-$platform.tar.gz"; then',
        f'    echo "could not download liqoctl {settings.liqo_version} ($platform); or set'
        f' {ARCHIVE_ENV} to the downloaded liqoctl-$platform.tar.gz" >&2',
        "    exit 1",
        "  fi",
        "fi",
        'if [ ! -f "$archive" ]; then echo "$archive: no such file" >&2; exit 1; fi',
        "if command -v sha256sum >/dev/null 2>&1; then",
        '  sum=$(sha256sum "$archive")',
        "else",
        '  sum=$(shasum -a 256 "$archive")',
        "fi",
        "sum=${sum%% *}",
        'if [ "$sum" != "$sha" ]; then',
        f'  echo "liqoctl archive $archive has SHA-256 $sum, not the pinned $sha (Liqo'
        f' {settings.liqo_version}, $platform); refusing to run it" >&2',
        "  exit 1",
        "fi",
        'tar -xzf "$archive" -C "$workdir" liqoctl',
        'liqoctl="$workdir/liqoctl"',
    ]


def _preamble(settings: PeeringSettings) -> list[str]:
    version = shlex.quote(settings.liqo_version)
    return [
        "#!/bin/bash",
        "set -euo pipefail",
        "umask 077",
        "workdir=$(mktemp -d)",
        "trap 'rm -rf \"$workdir\"' EXIT",
        *_fetch_liqoctl(settings),
        "client=$(\"$liqoctl\" version --client 2>/dev/null | sed -n 's/^Client version: //p')",
        f'if [ "$client" != {version} ]; then',
        f'  echo "liqoctl is ${{client:-unknown}} but the Liqo charts are {settings.liqo_version};'
        ' Liqo does not peer across versions" >&2',
        "  exit 1",
        "fi",
        f'printf "%s" "${CONSUMER_ENV}" > "$workdir/consumer"',
        f'printf "%s" "${PROVIDER_ENV}" > "$workdir/provider"',
        'chmod 0600 "$workdir/consumer" "$workdir/provider"',
        "kubeconfigs=(",
        '  --kubeconfig "$workdir/consumer" --namespace ' + NAMESPACE,
        '  --remote-kubeconfig "$workdir/provider" --remote-namespace ' + NAMESPACE,
        ")",
    ]


def render_peer_script(settings: PeeringSettings, gateway_address: str) -> str:
    """``gateway_address``: the provider node the gateway client dials (its Nebula IP)."""
    resource_flags = [
        f"  --resource {shlex.quote(f'{name}={count}')}"
        for name, count in sorted(settings.resources.items())
    ]
    return "\n".join(
        [
            *_preamble(settings),
            '"$liqoctl" peer "${kubeconfigs[@]}" --skip-confirm \\',
            f"  --timeout {shlex.quote(settings.timeout)} \\",
            "  --gw-server-service-type NodePort \\",
            f"  --gw-server-service-port {GATEWAY_SERVICE_PORT} \\",
            f"  --gw-server-service-nodeport {settings.gateway_nodeport} \\",
            f"  --gw-client-address {shlex.quote(gateway_address)} \\",
            f"  --gw-client-port {settings.gateway_nodeport} \\",
            f"  --mtu {settings.mtu} \\",
            f"  --cpu {shlex.quote(settings.cpu)} \\",
            f"  --memory {shlex.quote(settings.memory)} \\",
            f"  --pods {settings.pods} \\",
            " \\\n".join(resource_flags),
            f'echo "peered with the Liqo cluster at {gateway_address}"',
            "",
        ]
    )


def render_unpeer_script(settings: PeeringSettings) -> str:
    """Unpeer; an absent peering (already removed by hand) is not an error, anything else is."""
    return "\n".join(
        [
            *_preamble(settings),
            "status=0",
            'out=$("$liqoctl" unpeer "${kubeconfigs[@]}" --skip-confirm'
            f" --timeout {shlex.quote(settings.timeout)} 2>&1) || status=$?",
            'if [ "$status" -ne 0 ]; then',
            '  if printf "%s" "$out" | grep -qi "not found"; then',
            '    echo "no peering to undo"',
            "    exit 0",
            "  fi",
            '  printf "%s\\n" "$out" >&2',
            '  exit "$status"',
            "fi",
            'echo "unpeered"',
            "",
        ]
    )


@dataclass(frozen=True)
class LiqoPeeringArgs:
    settings: PeeringSettings
    gateway_address: pulumi.Input[str]
    """The provider node's overlay IP (from the aws-gpu stack's outputs)."""
    consumer_kubeconfig: pulumi.Input[str]
    provider_kubeconfig: pulumi.Input[str]
    depends_on: tuple[pulumi.Resource, ...] = ()
    """Both Liqo installs (or the one in this stack): peering needs them, and on destroy the
    peering is undone before Liqo is uninstalled."""


class LiqoPeering(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: LiqoPeeringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:federation:LiqoPeering", name, None, opts)
        address = pulumi.Output.from_input(args.gateway_address)
        self.command = local.Command(
            f"{name}-liqoctl",
            create=address.apply(lambda a: render_peer_script(args.settings, a)),
            delete=render_unpeer_script(args.settings),
            interpreter=["/bin/bash", "-c"],
            environment={
                CONSUMER_ENV: pulumi.Output.secret(args.consumer_kubeconfig),
                PROVIDER_ENV: pulumi.Output.secret(args.provider_kubeconfig),
            },
            # liqoctl's progress goes to stdout; errors (never a credential) to stderr.
            logging=local.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.register_outputs({"gatewayAddress": args.gateway_address})
