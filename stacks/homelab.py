"""The homelab stack: Proxmox GPU VMs, the k3s HA cluster, Nebula on every node, linked to the
aws-gpu stack through a StackReference."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve

from components.nebula_config import default_policy
from components.proxmox_node_assets import GpuMapping, ProxmoxNodeAssets, ProxmoxNodeAssetsArgs
from components.proxmox_vm import ProxmoxVm, ProxmoxVmArgs
from stacks import mesh
from stacks.config import (
    STACK_HOMELAB,
    ConfigError,
    GpuWorkerVm,
    HomelabConfig,
    key,
    load_homelab_config,
)
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


def proxmox_provider(config: HomelabConfig) -> proxmoxve.Provider:
    """API access by token (secret); SSH to the nodes for snippet uploads, which the API cannot
    do (https://registry.terraform.io/providers/bpg/proxmox/latest/docs#ssh-connection)."""
    proxmox = config.homelab.proxmox
    return proxmoxve.Provider(
        "proxmox",
        endpoint=proxmox.endpoint,
        api_token=config.secrets.proxmox_api_token,
        insecure=proxmox.insecure,
        ssh=proxmoxve.ProviderSshArgs(
            username=proxmox.ssh_username,
            private_key=config.secrets.ssh_private_key,
            nodes=[
                proxmoxve.ProviderSshNodeArgs(name=n.name, address=n.ssh_address)
                for n in proxmox.nodes
            ],
        ),
    )


def build_vms(config: HomelabConfig, provider: proxmoxve.Provider) -> dict[str, ProxmoxVm]:
    """Shared assets per Proxmox node, then every VM. VMs depend only on their node's assets,
    never on each other, so Proxmox creates them in parallel."""
    homelab = config.homelab
    on_proxmox = pulumi.ResourceOptions(provider=provider)
    used_nodes = sorted({vm.proxmox_node for vm in homelab.all_vms})
    assets = {
        node: ProxmoxNodeAssets(
            f"{node}-assets",
            ProxmoxNodeAssetsArgs(
                node_name=node,
                image_url=homelab.image.url,
                image_checksum=homelab.image.checksum,
                image_file_name=homelab.image.file_name,
                image_datastore=homelab.proxmox.image_datastore,
                snippets_datastore=homelab.proxmox.snippets_datastore,
                gpu_mappings=[
                    GpuMapping(m.name, m.path, m.device_id, m.subsystem_id, m.iommu_group)
                    for m in homelab.pci_mappings
                    if m.proxmox_node == node and not homelab.allow_raw_pci_ids
                ],
            ),
            opts=on_proxmox,
        )
        for node in used_nodes
    }
    prefix = config.project.network.homelab_lan_cidr.prefixlen
    raw_paths = {m.name: m.path for m in homelab.pci_mappings}
    vms: dict[str, ProxmoxVm] = {}
    for group, _, vm in homelab.vms_with_place():
        node_assets = assets[vm.proxmox_node]
        gpus = vm.gpus if isinstance(vm, GpuWorkerVm) else ()
        vms[vm.name] = ProxmoxVm(
            vm.name,
            ProxmoxVmArgs(
                node_name=vm.proxmox_node,
                vm_id=vm.vm_id,
                name=vm.name,
                cores=vm.cores,
                memory_mib=vm.memory_mib,
                os_disk_gib=vm.disk_gib,
                datastore_id=homelab.proxmox.vm_datastore,
                image_file_id=node_assets.image_file_id,
                bridge=homelab.lan.bridge,
                vlan_id=homelab.lan.vlan_id,
                ip_cidr=f"{vm.ip}/{prefix}",
                gateway=str(homelab.lan.gateway),
                dns_servers=[str(d) for d in homelab.lan.dns_servers],
                search_domain=homelab.lan.search_domain,
                ssh_user=homelab.ssh_user,
                ssh_public_keys=homelab.ssh_public_keys,
                vendor_data_file_id=node_assets.vendor_data_file_id,
                scratch_disk_gib=vm.scratch_disk_gib if isinstance(vm, GpuWorkerVm) else 0,
                gpu_mappings=() if homelab.allow_raw_pci_ids else gpus,
                gpu_raw_ids=[raw_paths[g] for g in gpus] if homelab.allow_raw_pci_ids else (),
                role="gpu-worker" if group == "gpuWorkers" else "control-plane",
            ),
            opts=pulumi.ResourceOptions(
                provider=provider,
                depends_on=[node_assets.mappings[g] for g in gpus if g in node_assets.mappings],
            ),
        )
    return vms


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
    vms = build_vms(config, proxmox_provider(config))
    # Host certificates are signed with the CA the aws-gpu stack owns (secret across the link).
    mesh.homelab_hosts(
        config.project,
        config.homelab,
        ca_cert_pem=aws_gpu.require("nebulaCaCert"),
        ca_key_pem=aws_gpu.require("nebulaCaKey"),
        lighthouses=mesh.reject_overlay_clash(config.homelab, aws_gpu.require("nebulaLighthouses")),
        ssh_private_key=config.secrets.ssh_private_key,
        depends_on={name: [vm.vm] for name, vm in vms.items()},
    )
    export_stack_outputs(
        STACK_HOMELAB,
        {
            "awsStack": config.homelab.aws_stack,
            "nebulaHosts": {vm.name: str(vm.overlay_ip) for vm in config.homelab.all_vms},
        },
    )
