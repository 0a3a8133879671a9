"""The homelab's wake gate: gpu-waker in gate mode on the first homelab k3s server.

When the AWS side sleeps, gpu-waker on the AWS control node is stopped with it, so Open WebUI
and the other clients talk to this gate instead. It checks the same client token, starts the two
AWS nodes on a request (or on a Pending GPU pod that may run on Liqo's virtual node) with
short-lived IAM Roles Anywhere credentials, holds the request until gpu-waker on AWS answers, and
forwards it there (gpu-waker on AWS then holds it until Ollama is up). It stops nothing: the AWS
side goes back to sleep by itself.

Installed like gpu-waker on AWS (same bundle, same install script, a host service; see
``components/aws/gpu_waker_render.py``): the token, the certificate and its key travel on the
command's stdin, never in its text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_command import remote

from components.aws.gpu_waker import install_command
from components.aws.gpu_waker_render import (
    GateSettings,
    WakerBundle,
    remote_command,
    render_install_script,
    render_rbac,
    stdin_payload,
)
from components.kube.objects import declare


@dataclass(frozen=True)
class WakeGateArgs:
    listen_ip: str
    """The homelab server's LAN address: where the homelab's clients reach the gate."""
    port: int
    gate: pulumi.Input[dict[str, Any]]
    """aws-gpu's ``wakeGate`` output (instance ids, ARNs, certificate, wake timeout)."""
    private_key: pulumi.Input[str]
    """aws-gpu's ``wakeGatePrivateKey`` (secret)."""
    upstream_url: pulumi.Input[str]
    """gpu-waker on AWS (aws-gpu ``gpuWakerUrl``)."""
    client_token: pulumi.Input[str]
    bundle: WakerBundle
    ssh: remote.ConnectionArgs
    kubernetes: pulumi.ProviderResource
    """The homelab cluster's provider: the ServiceAccount the gate lists pods with."""
    wait_for: Sequence[pulumi.Resource] = ()
    machine: pulumi.Resource | None = None
    """The server's VM: destroying it skips the uninstall (``deleted_with``)."""


def gate_settings(
    gate: dict[str, Any], listen_ip: str, port: int, upstream_url: str
) -> GateSettings:
    return GateSettings(
        control_instance_id=gate["controlInstanceId"],
        worker_instance_id=gate["workerInstanceId"],
        region=gate["region"],
        listen_ip=listen_ip,
        port=port,
        wake_timeout_seconds=int(gate["wakeTimeoutSeconds"]),
        upstream_url=upstream_url,
        trust_anchor_arn=gate["trustAnchorArn"],
        profile_arn=gate["profileArn"],
        role_arn=gate["roleArn"],
    )


class WakeGate(pulumi.ComponentResource):
    url: str
    """``http://<server LAN IP>:<port>``: Ollama's API (and /v1) for the homelab's clients."""

    def __init__(
        self, name: str, args: WakeGateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:llm:WakeGate", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes)
        rbac = [
            declare(f"{name}-{manifest['kind'].lower()}", manifest, on_cluster)
            for manifest in render_rbac()
        ]
        bundle = args.bundle

        def script(values: list[Any]) -> str:
            gate, upstream = values
            settings = gate_settings(gate, args.listen_ip, args.port, upstream)
            return remote_command(render_install_script(settings, bundle.sha256))

        install_text = pulumi.Output.all(args.gate, args.upstream_url).apply(script)
        stdin = pulumi.Output.all(args.client_token, args.gate, args.private_key).apply(
            lambda v: stdin_payload(v[0], bundle, (v[1]["certificate"], v[2]))
        )
        self.install = install_command(
            f"{name}-install",
            ssh=args.ssh,
            script=install_text,
            stdin=stdin,
            parent=self,
            depends_on=[*args.wait_for, *rbac],
            machine=args.machine,
        )
        self.url = f"http://{args.listen_ip}:{args.port}"
        self.register_outputs({"url": self.url, "bundleSha256": bundle.sha256})
