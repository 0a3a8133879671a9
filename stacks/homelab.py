"""The homelab stack: Proxmox GPU VMs, the k3s HA cluster, Nebula on every node, linked to the
aws-gpu stack through a StackReference."""

from __future__ import annotations

from typing import Any

import pulumi

from components.nebula_config import default_policy
from stacks import mesh
from stacks.config import STACK_HOMELAB, ConfigError, HomelabConfig, key, load_homelab_config
from stacks.outputs import AwsGpuReference, export_stack_outputs


def check_same_network_plan(
    config: HomelabConfig, aws_plan: pulumi.Output[Any]
) -> pulumi.Output[Any]:
    """Both stacks must have validated the same ranges; a stack-level override in only one of
    them would let overlaps through."""
    ours = {k: str(v) for k, v in config.project.network.named_ranges().items()}

    def compare(theirs: dict[str, str]) -> dict[str, str]:
        differing = sorted(k for k in ours if theirs.get(k) != ours[k])
        if differing:
            first = differing[0]
            raise ConfigError(
                f"{key(first)}: homelab has {ours[first]} but the aws-gpu stack was deployed with "
                f"{theirs.get(first)}; set the network plan once, in Pulumi.yaml "
                f"(differing keys: {', '.join(differing)})"
            )
        return theirs

    return aws_plan.apply(compare)


def main() -> None:
    config = load_homelab_config()
    mesh.checked(
        mesh.mesh_settings(config.project),
        mesh.homelab_nodes(config.homelab),
        default_policy(),
        lighthouse_elsewhere=True,  # the aws-gpu control node
    )
    aws_gpu = AwsGpuReference(config.homelab.aws_stack)
    check_same_network_plan(config, aws_gpu.require("networkPlan"))
    # Host certificates are signed with the CA the aws-gpu stack owns (secret across the link).
    mesh.homelab_hosts(
        config.project,
        config.homelab,
        ca_cert_pem=aws_gpu.require("nebulaCaCert"),
        ca_key_pem=aws_gpu.require("nebulaCaKey"),
        lighthouses=mesh.reject_overlay_clash(config.homelab, aws_gpu.require("nebulaLighthouses")),
        ssh_private_key=config.secrets.ssh_private_key,
    )
    export_stack_outputs(
        STACK_HOMELAB,
        {
            "awsStack": config.homelab.aws_stack,
            "nebulaHosts": {vm.name: str(vm.overlay_ip) for vm in config.homelab.all_vms},
        },
    )
