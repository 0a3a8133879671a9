"""gpu-waker in the aws-gpu stack (issue #15): the controller that owns the GPU worker's power
state, on the always-on control node, and the client token the homelab uses to reach it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.aws.gpu_waker import GpuWaker, GpuWakerArgs
from components.aws.gpu_waker_render import load_bundle
from components.aws.k3s_node import AwsK3sNode
from components.federation.ollama import APP as OLLAMA_APP
from components.k3s.cluster import connection
from components.kube.objects import app_labels
from components.nebula.config import GPU_WAKER_PORT, OLLAMA_PORT
from stacks.config import AwsGpuConfig

RUNTIME_PACKAGE = Path(__file__).resolve().parent.parent / "runtime" / "gpu_waker"


@dataclass(frozen=True)
class WakerEndpoint:
    url: str
    token: pulumi.Output[str]


def aws_gpu_waker(
    config: AwsGpuConfig,
    *,
    control_node: AwsK3sNode,
    control_role_name: pulumi.Input[str],
    gpu_worker: AwsK3sNode,
    cluster: k8s.Provider,
    host_key: pulumi.Input[str],
    wait_for: list[pulumi.Resource],
    opts: pulumi.ResourceOptions,
) -> WakerEndpoint:
    settings = config.aws
    waker = settings.gpu_waker
    # Generated once and kept (secret) in state; alphanumeric so it is a plain bearer token.
    token = pulumi.Output.secret(
        random.RandomPassword("gpu-waker-client-token", length=48, special=False).result
    )
    component = GpuWaker(
        "gpu-waker",
        GpuWakerArgs(
            worker_instance_id=gpu_worker.instance_id,
            worker_instance_arn=gpu_worker.instance_arn,
            control_role_name=control_role_name,
            region=settings.region,
            listen_ip=str(settings.control_node.overlay_ip),
            port=GPU_WAKER_PORT,
            idle_stop_minutes=waker.idle_stop_minutes,
            wake_timeout_seconds=waker.wake_timeout_seconds,
            manage_power=waker.enabled,
            upstream_namespace=config.project.llm_namespace,
            # The offloaded pod keeps the homelab pod's labels on AWS (liqotech/liqo
            # pkg/virtualKubelet/forge/pods.go RemoteShadowPod copies them, v1.x).
            upstream_selector=app_labels(OLLAMA_APP),
            upstream_port=OLLAMA_PORT,
            client_token=token,
            bundle=load_bundle(RUNTIME_PACKAGE),
            ssh=connection(
                control_node.public_ip,
                settings.ssh_user,
                config.secrets.ssh_private_key,
                host_key=host_key,
            ),
            kubernetes=cluster,
            wait_for=wait_for,
            machine=control_node.instance,
        ),
        opts=opts,
    )
    return WakerEndpoint(url=component.url, token=token)
