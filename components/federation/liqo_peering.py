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


def _preamble(settings: PeeringSettings) -> list[str]:
    version = shlex.quote(settings.liqo_version)
    return [
        "#!/bin/bash",
        "set -euo pipefail",
        "umask 077",
        "if ! command -v liqoctl >/dev/null 2>&1; then",
        f'  echo "liqoctl not found on PATH; install liqoctl {settings.liqo_version}: '
        f'https://docs.liqo.io/en/{settings.liqo_version}/installation/liqoctl.html" >&2',
        "  exit 1",
        "fi",
        "client=$(liqoctl version --client 2>/dev/null | sed -n 's/^Client version: //p')",
        f'if [ "$client" != {version} ]; then',
        f'  echo "liqoctl is ${{client:-unknown}} but the Liqo charts are {settings.liqo_version};'
        ' Liqo does not peer across versions, install the matching liqoctl" >&2',
        "  exit 1",
        "fi",
        "workdir=$(mktemp -d)",
        "trap 'rm -rf \"$workdir\"' EXIT",
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
            'liqoctl peer "${kubeconfigs[@]}" --skip-confirm \\',
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
            'out=$(liqoctl unpeer "${kubeconfigs[@]}" --skip-confirm'
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
