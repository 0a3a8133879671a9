"""NVIDIA device plugin on the AWS cluster. The GPU worker's AMI ships the driver and the NVIDIA
container toolkit, and k3s registers the ``nvidia`` runtime it finds (creating the RuntimeClass
itself, https://docs.k3s.io/advanced#nvidia-container-runtime), so the full GPU Operator is not
needed there: the plugin alone makes ``nvidia.com/gpu`` allocatable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from components.kube.charts import NVIDIA_DEVICE_PLUGIN, helm_release
from components.kube.labels import GPU_RESOURCE, NVIDIA_RUNTIME_CLASS

NAMESPACE = "nvidia-device-plugin"


def render_device_plugin_values(node_selector: Mapping[str, str]) -> dict[str, Any]:
    """Chart values (deployments/helm/nvidia-device-plugin/values.yaml)."""
    return {
        # The plugin must run under the NVIDIA runtime to see the driver libraries.
        "runtimeClassName": NVIDIA_RUNTIME_CLASS,
        "nodeSelector": dict(node_selector),
        "tolerations": [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
        ],
        "gfd": {"enabled": False},
        # Devices only as volume mounts for a pod's nvidia.com/gpu request; the AWS worker's
        # toolkit accepts nothing else from unprivileged containers (components/aws/templates/
        # install-k3s.sh; NVIDIA gpu-operator docs security.rst). deployments/helm/
        # nvidia-device-plugin/values.yaml@v0.20.0 `deviceListStrategy`.
        "deviceListStrategy": "volume-mounts",
    }


@dataclass(frozen=True)
class NvidiaDevicePluginArgs:
    node_selector: Mapping[str, str]


class NvidiaDevicePlugin(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: NvidiaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:NvidiaDevicePlugin", name, None, opts)
        self.values = render_device_plugin_values(args.node_selector)
        self.release = helm_release(
            f"{name}-release",
            release_name="nvidia-device-plugin",
            chart=NVIDIA_DEVICE_PLUGIN,
            namespace=NAMESPACE,
            values=self.values,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"releaseStatus": self.release.status})
