"""Which namespaces each cluster exempts from Pod Security (everything else is ``restricted``,
components/k3s/pod_security.py), each with the reason its pods need the host. A namespace the
program declares itself carries its level as labels instead (no exemption needed)."""

from __future__ import annotations

from components.federation import liqo
from components.k3s.pod_security import SYSTEM_EXEMPTIONS, render_admission_config
from components.platform import (
    dcgm_exporter,
    gpu_operator,
    jupyterhub,
    lan_load_balancer,
    nvidia_device_plugin,
    storage_classes,
)
from stacks.config import AwsGpuConfig, HomelabConfig

LIQO = {
    liqo.NAMESPACE: (
        "Liqo's fabric DaemonSet is privileged on the host network (liqotech/liqo@v1.2.0 "
        "deployments/liqo/templates/liqo-fabric-daemonset.yaml); its gateways, in the tenant "
        "namespaces, hold NET_ADMIN for WireGuard, and Liqo labels those namespaces privileged "
        "itself (pkg/tenantNamespace/namespaceManager.go)"
    )
}
# Rancher's own namespaces on the cluster it runs in: its agents and Fleet need the host
# (https://ranchermanager.docs.rancher.com/v2.14/reference-guides/rancher-security/psa-restricted-exemptions).
RANCHER_NAMESPACES = (
    "cattle-system",
    "cattle-fleet-system",
    "cattle-fleet-local-system",
    "cattle-impersonation-system",
    "cattle-global-data",
    "cattle-provisioning-capi-system",
    "cattle-capi-system",
    "cattle-turtles-system",
    "cattle-ui-plugin-system",
    "fleet-local",
    "fleet-default",
)


def aws_exemptions() -> dict[str, str]:
    return {
        **SYSTEM_EXEMPTIONS,
        **LIQO,
        nvidia_device_plugin.NAMESPACE: (
            "the device plugin registers on the kubelet's device-plugin socket (a hostPath)"
        ),
        dcgm_exporter.NAMESPACE: (
            "the DCGM exporter reads the kubelet's pod-resources socket (a hostPath) and needs "
            "SYS_ADMIN for DCGM's profiling metrics"
        ),
    }


def homelab_exemptions(config: HomelabConfig) -> dict[str, str]:
    exemptions = {
        **SYSTEM_EXEMPTIONS,
        **LIQO,
        gpu_operator.NAMESPACE: (
            "the GPU Operator's driver container builds and loads kernel modules, its toolkit "
            "rewrites containerd's config (privileged, hostPath)"
        ),
        lan_load_balancer.NAMESPACE: (
            "MetalLB's speaker answers ARP for the LAN addresses on the host network (NET_RAW)"
        ),
        storage_classes.NAMESPACE: (
            "the NFS provisioner mounts the export as an nfs volume, a type 'restricted' refuses"
        ),
        jupyterhub.NAMESPACE: (
            "z2jh adds a privileged iptables init container to every user pod "
            "(singleuser.cloudMetadata.blockWithIptables, default true in chart 4.4.0) and sets "
            "no seccomp profile or capability drop on user pods"
        ),
    }
    if config.homelab.platform.rancher.enabled:
        reason = "Rancher's agents and Fleet (Rancher's list of PSA-restricted exemptions)"
        exemptions |= dict.fromkeys(RANCHER_NAMESPACES, reason)
    return exemptions


def aws_admission_config(config: AwsGpuConfig) -> str:
    del config  # the AWS cluster's set does not depend on configuration today
    return render_admission_config(aws_exemptions(), "stacks/pod_security.py")


def homelab_admission_config(config: HomelabConfig) -> str:
    return render_admission_config(homelab_exemptions(config), "stacks/pod_security.py")
