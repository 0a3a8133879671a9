"""The homelab stack: Proxmox GPU VMs, the k3s HA cluster, Nebula on every node, linked to the
aws-gpu stack through a StackReference."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_proxmoxve as proxmoxve
import pulumi_random as random

from components.base.ssh_keys import HostKey
from components.k3s.cluster import K3sCluster, K3sClusterArgs, connection
from components.k3s.config import K3sClusterSettings, K3sNode, cluster_dns_ip, server_taints
from components.k3s.vip import VipSettings
from components.kube.charts import KUBE_VIP, with_digest
from components.kube.labels import GPU_NODE_LABEL
from components.nebula.config import default_policy
from components.nebula.host import NebulaHost
from components.proxmox.node_assets import GpuMapping, ProxmoxNodeAssets, ProxmoxNodeAssetsArgs
from components.proxmox.vm import ProxmoxVm, ProxmoxVmArgs
from stacks import access, mesh
from stacks.backups import etcd_snapshots, homelab_snapshot_store, homelab_velero
from stacks.config import (
    STACK_HOMELAB,
    GpuWorkerVm,
    HomelabConfig,
    HomelabSettings,
    load_homelab_config,
)
from stacks.cross_stack import check_same_network_plan, check_same_value, check_wake_gate, gate
from stacks.federation import GateHost, ProviderSide, homelab_federation
from stacks.outputs import AwsGpuReference, export_stack_outputs
from stacks.platform import AwsScrapeTargets, homelab_platform
from stacks.pod_security import homelab_admission_config
from stacks.renewal import RenewalClock
from stacks.tls import check_acme_zone, issuer_of


def proxmox_provider(
    config: HomelabConfig,
    after_checks: pulumi.Output[list[pulumi.Resource]],
    ssh_private_key: pulumi.Input[str],
) -> proxmoxve.Provider:
    """API access by token (secret); SSH to the nodes for snippet uploads, which the API cannot
    do (https://registry.terraform.io/providers/bpg/proxmox/latest/docs#ssh-connection). The
    first resource of the stack: it waits for the cross-stack checks."""
    proxmox = config.homelab.proxmox
    return proxmoxve.Provider(
        "proxmox",
        endpoint=proxmox.endpoint,
        api_token=config.secrets.proxmox_api_token,
        insecure=proxmox.insecure,
        ssh=proxmoxve.ProviderSshArgs(
            username=proxmox.ssh_username,
            private_key=ssh_private_key,
            nodes=[
                proxmoxve.ProviderSshNodeArgs(name=n.name, address=n.ssh_address)
                for n in proxmox.nodes
            ],
        ),
        opts=pulumi.ResourceOptions(depends_on=after_checks),
    )


def build_vms(
    config: HomelabConfig,
    provider: proxmoxve.Provider,
    host_keys: dict[str, pulumi.Output[HostKey]],
) -> dict[str, ProxmoxVm]:
    """Shared assets per Proxmox node, then every VM. VMs depend only on their node's assets,
    never on each other, so Proxmox creates them in parallel. Control planes are protected:
    replacing or deleting one (an etcd member) needs `pulumi state unprotect` first."""
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
                shared_snippet_datastore=homelab.proxmox.snippets_datastore
                if any(
                    vm.proxmox_node == node and vm.name in homelab.existing_host_keys
                    for vm in homelab.all_vms
                )
                else None,
                gpu_mappings=[
                    GpuMapping(m.name, m.path, m.device_id, m.subsystem_id, m.iommu_group)
                    for m in homelab.pci_mappings
                    if m.proxmox_node == node
                    and not homelab.allow_raw_pci_ids
                    and homelab.pci_mappings_created_by == "pulumi"
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
        is_control_plane = group == "controlPlanes"
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
                snippets_datastore=homelab.proxmox.snippets_datastore,
                host_key=host_keys.get(vm.name),
                existing_vendor_data_file_id=node_assets.shared_vendor_data_file_id
                if vm.name in homelab.existing_host_keys
                else None,
                scratch_disk_gib=vm.scratch_disk_gib if isinstance(vm, GpuWorkerVm) else 0,
                # The mappings' name outputs: the VM depends on them, so it is destroyed first.
                # Mappings an administrator created are used by name only.
                gpu_mappings=()
                if homelab.allow_raw_pci_ids
                else list(gpus)
                if homelab.pci_mappings_created_by == "admin"
                else [node_assets.mappings[g].name for g in gpus],
                gpu_raw_ids=[raw_paths[g] for g in gpus] if homelab.allow_raw_pci_ids else (),
                role="control-plane" if is_control_plane else "gpu-worker",
                protect=is_control_plane,
            ),
            opts=on_proxmox,
        )
    return vms


def mesh_ca_key(aws_gpu: AwsGpuReference) -> pulumi.Output[str]:
    """The mesh CA key, read from the aws-gpu stack's SSM parameter in its region."""
    provider = aws.Provider("aws-gpu-account", region=aws_gpu.require("region"))
    parameter = aws.ssm.get_parameter_output(
        name=aws_gpu.require("nebulaCaKeyParameter"),
        with_decryption=True,
        opts=pulumi.InvokeOutputOptions(provider=provider),
    )
    return pulumi.Output.secret(parameter.value)


def cluster_settings(config: HomelabConfig) -> K3sClusterSettings:
    homelab = config.homelab
    network = config.project.network
    vip = homelab.k3s.api_vip
    return K3sClusterSettings(
        version=config.project.k3s_version,
        api_endpoint=str(vip if vip is not None else homelab.control_planes[0].ip),
        pod_cidr=str(network.homelab_pod_cidr),
        service_cidr=str(network.homelab_service_cidr),
        cluster_dns=cluster_dns_ip(str(network.homelab_service_cidr)),
        disable=homelab.k3s.disable,
        vip=VipSettings(
            str(vip),
            homelab.k3s.vip_interface,
            image=with_digest(KUBE_VIP, homelab.image_digests.kube_vip),
        )
        if vip is not None
        else None,
        etcd_snapshots=etcd_snapshots(homelab),
        pod_security=homelab_admission_config(config),
    )


def cluster_nodes(homelab: HomelabSettings) -> list[K3sNode]:
    servers = [
        K3sNode(
            vm.name,
            str(vm.ip),
            "first-server" if i == 0 else "server",
            taints=server_taints(),
            # The AWS cluster's Liqo may reach this API over the overlay.
            extra_tls_sans=(str(vm.overlay_ip),),
        )
        for i, vm in enumerate(homelab.control_planes)
    ]
    agents = [
        K3sNode(
            vm.name,
            str(vm.ip),
            "agent",
            # What the GPU Operator, JupyterHub profiles and the CUDA checks select on.
            labels=(
                "=".join(GPU_NODE_LABEL),
                f"gpu-type={vm.gpu_model}",
                "accelerator=nvidia",
                "nvidia.com/gpu.present=true",
            ),
            scratch_mount=homelab.platform.scratch_path if vm.scratch_disk_gib else None,
        )
        for vm in homelab.gpu_workers
    ]
    return servers + agents


def build_cluster(
    config: HomelabConfig,
    vms: dict[str, ProxmoxVm],
    nebula_hosts: dict[str, NebulaHost],
    after_checks: pulumi.Output[list[pulumi.Resource]],
    host_keys: dict[str, pulumi.Input[str]],
) -> K3sCluster:
    homelab = config.homelab
    # Generated once, kept in state; alphanumeric (k3s-ansible's sample warns about specials).
    # Protected: k3s encrypts its datastore with it, so a new one would lock every server out.
    token = random.RandomPassword(
        "k3s-token",
        length=48,
        special=False,
        opts=pulumi.ResourceOptions(depends_on=after_checks, protect=True),
    ).result
    wait_for: dict[str, list[pulumi.Resource]] = {}
    for name in vms:
        install = nebula_hosts[name].install
        wait_for[name] = [install] if install is not None else []
    return K3sCluster(
        "homelab-k3s",
        K3sClusterArgs(
            settings=cluster_settings(config),
            nodes=cluster_nodes(homelab),
            token=token,
            ssh_user=homelab.ssh_user,
            ssh_private_key=config.secrets.ssh_private_key,
            host_keys=host_keys,
            api_ssh_host=access.cluster_ssh_host(homelab, cluster_settings(config).api_endpoint),
            machines={name: vm.vm for name, vm in vms.items()},
            wait_for=wait_for,
            cluster_name=homelab.federation.cluster_id,
        ),
    )


def gate_host(
    config: HomelabConfig,
    vms: dict[str, ProxmoxVm],
    host_keys: dict[str, pulumi.Input[str]],
    cluster: K3sCluster,
) -> GateHost:
    """The wake gate runs on the first control plane: the cluster-init server, on the mesh."""
    homelab = config.homelab
    first = homelab.control_planes[0]
    return GateHost(
        ip=str(first.ip),
        ssh=connection(
            str(first.ip),
            homelab.ssh_user,
            config.secrets.ssh_private_key,
            host_key=host_keys[first.name],
        ),
        machine=vms[first.name].vm,
        wait_for=cluster.ready,
    )


def main() -> None:
    config = load_homelab_config()
    mesh.checked(
        mesh.mesh_settings(config.project),
        mesh.homelab_nodes(config.homelab, config.project),
        default_policy(),
        lighthouse_elsewhere=True,  # the aws-gpu control node
    )
    aws_gpu = AwsGpuReference(config.homelab.aws_stack)
    proxmox_key, proxmox_key_check = access.proxmox_ssh_key(config)
    after_checks = gate(
        proxmox_key_check,
        access.check_distinct_node_keys(config, aws_gpu.require("nodeSshPublicKey")),
        check_same_network_plan(config, aws_gpu.require("networkPlan")),
        check_same_value(
            "liqoVersion",
            config.project.liqo_version,
            aws_gpu.require("liqoVersion"),
            "Liqo does not peer across versions",
        ),
        check_same_value(
            "llmNamespace",
            config.project.llm_namespace,
            aws_gpu.require("llmNamespace"),
            "the AWS models volume is bound to that namespace",
        ),
        check_acme_zone(config, aws_gpu),
        check_wake_gate(config.homelab.ollama.wake_gate, aws_gpu.require("wakeGate")),
    )
    host_keys = access.vm_host_keys(config.homelab)
    pinned = access.pinned_host_keys(config.homelab, host_keys)
    vms = build_vms(config, proxmox_provider(config, after_checks, proxmox_key), host_keys)
    # Host certificates are signed with the CA the aws-gpu stack owns. Its key is read from
    # SSM at run time with the operator's AWS credentials (an invoke: its result is kept in no
    # state), so this stack's state never holds it.
    clock = RenewalClock()
    nebula_hosts = mesh.homelab_hosts(
        config.project,
        config.homelab,
        clock=clock,
        ca_cert_pem=aws_gpu.require("nebulaCaCert"),
        ca_bundle_pem=aws_gpu.require("nebulaCaBundle"),
        ca_key_pem=mesh_ca_key(aws_gpu),
        lighthouses=mesh.reject_overlay_clash(config.homelab, aws_gpu.require("nebulaLighthouses")),
        ssh_private_key=config.secrets.ssh_private_key,
        host_keys=pinned,
        machines={name: vm.vm for name, vm in vms.items()},
    )
    cluster = build_cluster(config, vms, nebula_hosts, after_checks, pinned)
    settings = cluster_settings(config)
    # The platform and federation layers: the cluster's API, as admin, once every node is in.
    # The cluster id names the cluster, so a new API address (a VIP added later) updates the
    # provider instead of replacing it and everything it manages (pulumi_kubernetes Provider
    # cluster_identifier).
    wake_gate = gate_host(config, vms, pinned, cluster) if config.homelab.ollama.wake_gate else None
    homelab_k8s = k8s.Provider(
        "homelab-k8s",
        kubeconfig=cluster.kubeconfig,
        enable_server_side_apply=True,
        cluster_identifier=config.homelab.federation.cluster_id,
        opts=pulumi.ResourceOptions(depends_on=cluster.ready),
    )
    platform = homelab_platform(
        config,
        homelab_k8s,
        AwsScrapeTargets(
            control_node_overlay_ip=aws_gpu.require("controlNodeOverlayIp"),
            gpu_waker_token=aws_gpu.require("gpuWakerToken"),
            worker_gpu_count=aws_gpu.require("gpuWorkerGpuCount"),
            wake_gate_address=wake_gate.address if wake_gate is not None else None,
        ),
        issuer=issuer_of(config, aws_gpu, clock),
    )
    homelab_snapshot_store(config.homelab, aws_gpu, pulumi.ResourceOptions(provider=homelab_k8s))
    homelab_velero(config.homelab, aws_gpu, pulumi.ResourceOptions(provider=homelab_k8s))
    federation = homelab_federation(
        config,
        provider=homelab_k8s,
        consumer_kubeconfig=cluster.kubeconfig,
        # Liqo publishes its own API address in the identities it issues as a provider; the
        # homelab only consumes (the consumer talks to the provider's API, docs.liqo.io
        # "Inter-cluster authentication"), so its address is the HA endpoint on the LAN.
        api_server_url=settings.api_url,
        remote=ProviderSide(
            cluster_id=aws_gpu.require("liqoClusterId"),
            admin_kubeconfig=aws_gpu.require("adminKubeconfig"),
            gateway_address=aws_gpu.require("controlNodeOverlayIp"),
            models_volume=aws_gpu.require("modelsVolume"),
            waker_url=aws_gpu.require("gpuWakerUrl"),
            waker_token=aws_gpu.require("gpuWakerToken"),
            wake_gate=aws_gpu.require("wakeGate") if config.homelab.ollama.wake_gate else None,
            wake_gate_key=aws_gpu.require("wakeGatePrivateKey")
            if config.homelab.ollama.wake_gate
            else None,
        ),
        gate_host=wake_gate,
        wait_for=[platform.gpu_stack],
        ingress=platform.ingress,
        tls=platform.tls,
    )
    export_stack_outputs(
        STACK_HOMELAB,
        {
            "kubeconfig": cluster.kubeconfig,
            "k3sApiEndpoint": settings.api_url,
            "ingressAddress": platform.ingress_address,
            "controlPlaneIps": {vm.name: str(vm.ip) for vm in config.homelab.control_planes},
            "gpuWorkers": {
                vm.name: {"ip": str(vm.ip), "gpuModel": vm.gpu_model, "gpuCount": len(vm.gpus)}
                for vm in config.homelab.gpu_workers
            },
            "awsStack": config.homelab.aws_stack,
            "nebulaHosts": {vm.name: str(vm.overlay_ip) for vm in config.homelab.all_vms},
            "liqoClusterId": config.homelab.federation.cluster_id,
            "openWebuiUrl": federation.open_webui_url,
            "wakeGateUrl": federation.wake_gate_url,
            "openWebuiAdminPassword": federation.open_webui_admin_password,
            "jupyterhubUrl": platform.jupyterhub_url,
            "cudaValidation": platform.cuda_validation,
            "grafanaUrl": platform.grafana_url,
            "grafanaAdminPassword": platform.grafana_admin_password,
            "tlsCaCert": platform.tls_ca_cert,
        },
    )
