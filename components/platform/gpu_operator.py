"""NVIDIA GPU Operator on the homelab k3s cluster (driver, container toolkit, device plugin, GFD,
DCGM exporter), configured for k3s's own containerd."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pulumi

from components.kube.charts import GPU_OPERATOR, helm_release
from components.kube.labels import GPU_RESOURCE, NVIDIA_RUNTIME_CLASS, toleration

# k3s runs its own containerd: config and socket live under k3s's paths, not /etc/containerd
# (https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/getting-started.html,
# "Rancher Kubernetes Engine 2 / K3s"; https://docs.k3s.io/advanced#nvidia-container-runtime).
K3S_CONTAINERD_CONFIG = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
K3S_CONTAINERD_SOCKET = "/run/k3s/containerd/containerd.sock"
# GPUs only through the device plugin: the toolkit ignores NVIDIA_VISIBLE_DEVICES in unprivileged
# containers and takes the device list only from the volume mounts the plugin adds for a pod's
# nvidia.com/gpu request, so a pod without a request gets no GPU whatever its environment says
# (NVIDIA gpu-operator docs, security.rst "Preventing Unprivileged Access to GPUs"; the toolkit
# flags: NVIDIA/nvidia-container-toolkit cmd/nvidia-ctk-installer, EnvVars
# ACCEPT_NVIDIA_VISIBLE_DEVICES_ENVVAR_WHEN_UNPRIVILEGED / ..._AS_VOLUME_MOUNTS). Privileged
# containers still see every GPU: that is what Pod Security keeps from workloads.
GPU_ONLY_THROUGH_THE_PLUGIN_TOOLKIT_ENV = (
    {"name": "ACCEPT_NVIDIA_VISIBLE_DEVICES_ENVVAR_WHEN_UNPRIVILEGED", "value": "false"},
    {"name": "ACCEPT_NVIDIA_VISIBLE_DEVICES_AS_VOLUME_MOUNTS", "value": "true"},
)
DEVICE_LIST_STRATEGY_ENV = {"name": "DEVICE_LIST_STRATEGY", "value": "volume-mounts"}
NAMESPACE = "gpu-operator"

DriverMode = Literal["operator", "preinstalled"]


def render_gpu_operator_values(
    *, driver: DriverMode, tolerate_taints: tuple[str, ...], site_label: str | None = None
) -> dict[str, Any]:
    """Chart values (deployments/gpu-operator/values.yaml of the pinned version). The runtime is
    detected by the operator (``operator.defaultRuntime`` is gone since v25.3); the toolkit env
    names are the ones the operator's controller reads (controllers/object_controls.go)."""
    tolerations = [toleration(t) for t in tolerate_taints] + [
        # GPU nodes are often tainted for GPU work only; the operands must still run there.
        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    ]
    # With the homelab Prometheus (site_label set), the operator creates a ServiceMonitor for its
    # DCGM exporter; the relabeling tags every GPU series with its site, as the AWS scrape does.
    service_monitor: dict[str, Any] = (
        {
            "enabled": True,
            "relabelings": [
                {"targetLabel": "site", "replacement": site_label, "action": "replace"}
            ],
        }
        if site_label is not None
        # No Prometheus operator CRDs on the cluster to receive a ServiceMonitor.
        else {"enabled": False}
    )
    return {
        "driver": {"enabled": driver == "operator"},
        "toolkit": {
            "enabled": True,
            "env": [
                {"name": "CONTAINERD_CONFIG", "value": K3S_CONTAINERD_CONFIG},
                {"name": "CONTAINERD_SOCKET", "value": K3S_CONTAINERD_SOCKET},
                {"name": "CONTAINERD_RUNTIME_CLASS", "value": NVIDIA_RUNTIME_CLASS},
                # Not CONTAINERD_SET_AS_DEFAULT: k3s rewrites config.toml at every start, so the
                # toolkit's default would vanish with the next restart. k3s itself registers the
                # `nvidia` runtime from the operator's install dir at each start
                # (k3s-io/k3s pkg/agent/containerd/nvidia.go, "usr/local/nvidia/toolkit"), so
                # GPU pods name runtimeClassName `nvidia` (JupyterHub profiles, CUDA checks).
                *GPU_ONLY_THROUGH_THE_PLUGIN_TOOLKIT_ENV,
            ],
        },
        "devicePlugin": {"enabled": True, "env": [DEVICE_LIST_STRATEGY_ENV]},
        "gfd": {"enabled": True},
        "dcgmExporter": {"enabled": True, "serviceMonitor": service_monitor},
        "daemonsets": {"tolerations": tolerations},
        "node-feature-discovery": {"worker": {"tolerations": tolerations}},
    }


@dataclass(frozen=True)
class GpuOperatorArgs:
    driver: DriverMode
    tolerate_taints: tuple[str, ...] = ()
    """The project's node taints (``key=value:Effect``) the operands must tolerate."""
    site_label: str | None = None
    """Set when the cluster has Prometheus: the ``site`` label of the DCGM exporter's series."""


class GpuOperator(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: GpuOperatorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:GpuOperator", name, None, opts)
        self.values = render_gpu_operator_values(
            driver=args.driver, tolerate_taints=args.tolerate_taints, site_label=args.site_label
        )
        self.release = helm_release(
            f"{name}-release",
            release_name="gpu-operator",
            chart=GPU_OPERATOR,
            namespace=NAMESPACE,
            values=self.values,
            # The driver container compiles and loads the kernel module on first start.
            timeout_seconds=1800,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"releaseStatus": self.release.status})
