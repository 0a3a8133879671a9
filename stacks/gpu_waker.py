"""gpu-waker in the aws-gpu stack (issue #15): the controller that owns the GPU worker's power
state, on the control node, and the client token the homelab uses to reach it. When the AWS side
sleeps (``gpuWaker.sleepAfterMinutes``), also the wake gate's access: a CA, the gate's client
certificate and the Roles Anywhere trust anchor, profile and role that let it start the nodes."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.aws.gpu_waker import GpuWaker, GpuWakerArgs
from components.aws.gpu_waker_render import load_bundle
from components.aws.k3s_node import AwsK3sNode
from components.aws.wake_access import WakeAccess, WakeAccessArgs
from components.base.renewal import Validity
from components.base.x509_ca import X509Ca, ca_from_seed, client_cert_from_seed
from components.federation.ollama import APP as OLLAMA_APP
from components.k3s.cluster import connection
from components.kube.objects import app_labels
from components.nebula.config import GPU_WAKER_PORT, OLLAMA_PORT
from stacks.config import AwsGpuConfig
from stacks.renewal import RenewalClock

RUNTIME_PACKAGE = Path(__file__).resolve().parent.parent / "runtime" / "gpu_waker"
WAKE_GATE_CN = "hybridgpu-wake-gate"
"""Subject CN of the gate's certificate: the only one the wake role trusts."""
# The CA lives as long as the homelab's TLS CA and renews a year ahead; the gate's certificate
# is re-issued by the first aws-gpu `up` 60 days before it expires, which leaves the homelab
# two months for an `up` that installs it (README "The AWS side sleeps").
WAKE_CA_VALIDITY_DAYS, WAKE_CA_RENEW_BEFORE_DAYS = 3650, 365
WAKE_CERT_VALIDITY_DAYS, WAKE_CERT_RENEW_BEFORE_DAYS = 365, 60


@dataclass(frozen=True)
class WakerEndpoint:
    url: str
    token: pulumi.Output[str]
    gate: dict[str, Any]
    """The wake gate's settings for the homelab (output ``wakeGate``; ``sleeps`` false: the
    control node stays on and no gate is needed)."""
    gate_private_key: pulumi.Output[str] | None
    """The gate certificate's key (secret output ``wakeGatePrivateKey``)."""


def aws_gpu_waker(
    config: AwsGpuConfig,
    *,
    control_node: AwsK3sNode,
    admin_host: pulumi.Input[str],
    control_role_name: pulumi.Input[str],
    gpu_worker: AwsK3sNode,
    cluster: k8s.Provider,
    host_key: pulumi.Input[str],
    wait_for: list[pulumi.Resource],
    clock: RenewalClock,
    opts: pulumi.ResourceOptions,
) -> WakerEndpoint:
    settings = config.aws
    waker = settings.gpu_waker
    sleep_minutes = waker.control_sleep_minutes
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
                admin_host,
                settings.ssh_user,
                config.secrets.ssh_private_key,
                host_key=host_key,
            ),
            kubernetes=cluster,
            control_instance_id=control_node.instance_id,
            control_instance_arn=control_node.instance_arn,
            sleep_after_minutes=sleep_minutes,
            wait_for=wait_for,
            machine=control_node.instance,
        ),
        opts=opts,
    )
    if sleep_minutes is None:
        return WakerEndpoint(
            url=component.url, token=token, gate={"sleeps": False}, gate_private_key=None
        )
    credentials = gate_credentials(clock)
    access = WakeAccess(
        "wake-access",
        WakeAccessArgs(
            ca_cert_pem=credentials.ca_cert_pem,
            instance_arns=[control_node.instance_arn, gpu_worker.instance_arn],
            common_name=WAKE_GATE_CN,
            name_prefix=f"hybridgpu-{pulumi.get_stack()}-",
        ),
        opts=opts,
    )
    gate = {
        "sleeps": True,
        "region": settings.region,
        "controlInstanceId": control_node.instance_id,
        "workerInstanceId": gpu_worker.instance_id,
        "trustAnchorArn": access.trust_anchor_arn,
        "profileArn": access.profile_arn,
        "roleArn": access.role_arn,
        "certificate": credentials.cert_pem,
        "wakeTimeoutSeconds": waker.wake_timeout_seconds,
    }
    return WakerEndpoint(
        url=component.url, token=token, gate=gate, gate_private_key=credentials.key_pem
    )


@dataclass(frozen=True)
class GateCredentials:
    ca_cert_pem: pulumi.Output[str]
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    """Secret."""


def gate_credentials(clock: RenewalClock) -> GateCredentials:
    """The wake CA and the gate's certificate, deterministic (components/base/x509_ca.py): the
    keys come from seeds kept in state and the validity from the renewal windows, so `up` twice
    changes nothing and the next window re-issues."""
    ca_seed = random.RandomBytes("wake-ca-key-seed", length=32)
    gate_seed = random.RandomBytes("wake-gate-key-seed", length=32)
    ca = pulumi.Output.all(
        ca_seed.base64, clock.validity(WAKE_CA_VALIDITY_DAYS, WAKE_CA_RENEW_BEFORE_DAYS)
    ).apply(lambda v: _ca(v[0], v[1]))
    cert = pulumi.Output.all(
        ca, gate_seed.base64, clock.validity(WAKE_CERT_VALIDITY_DAYS, WAKE_CERT_RENEW_BEFORE_DAYS)
    ).apply(
        lambda v: client_cert_from_seed(
            v[0], base64.b64decode(v[1]), WAKE_GATE_CN, v[2].not_before, v[2].not_after
        )
    )
    return GateCredentials(
        ca_cert_pem=pulumi.Output.unsecret(ca.apply(lambda c: c.cert_pem)),
        cert_pem=pulumi.Output.unsecret(cert.apply(lambda c: c.cert_pem)),
        key_pem=pulumi.Output.secret(cert.apply(lambda c: c.key_pem)),
    )


def _ca(seed_b64: str, validity: Validity) -> X509Ca:
    return ca_from_seed(
        base64.b64decode(seed_b64), "hybridgpu wake CA", validity.not_before, validity.not_after
    )
