"""gpu-waker on the AWS control node: the controller that owns the GPU worker's power state.

The component grants the control node's instance role Start/StopInstances on the worker (and
DescribeInstances), declares the ServiceAccount it reads the cluster with, and installs the
service over SSH (see ``gpu_waker_render`` for why a host service and how the code gets there).
The client token and the code bundle travel on the command's stdin, never in its text: a failed
command prints its text, and stdin stays a secret input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi_command import remote

from components.aws.gpu_waker_render import (
    WakerBundle,
    WakerSettings,
    power_policy,
    remote_command,
    render_install_script,
    render_rbac,
    render_uninstall_script,
    stdin_payload,
)
from components.kube.objects import declare


@dataclass(frozen=True)
class GpuWakerArgs:
    worker_instance_id: pulumi.Input[str]
    worker_instance_arn: pulumi.Input[str]
    control_role_name: pulumi.Input[str]
    """The control node's instance role: the service uses its credentials (IMDSv2)."""
    region: str
    listen_ip: str
    """The control node's Nebula address: the only address the proxy listens on."""
    port: int
    idle_stop_minutes: int
    wake_timeout_seconds: int
    manage_power: bool
    upstream_namespace: str
    upstream_selector: dict[str, str]
    upstream_port: int
    client_token: pulumi.Input[str]
    bundle: WakerBundle
    ssh: remote.ConnectionArgs
    """SSH to the control node (as for the kubeconfig fetch)."""
    kubernetes: pulumi.ProviderResource
    """The AWS cluster's Kubernetes provider."""
    control_instance_id: pulumi.Input[str] | None = None
    control_instance_arn: pulumi.Input[str] | None = None
    sleep_after_minutes: int | None = None
    """The control node stops itself this long after the worker stopped, nothing asked
    (the whole AWS side sleeps; the homelab's wake gate starts it). None: always on."""
    wait_for: Sequence[pulumi.Resource] = ()
    machine: pulumi.Resource | None = None
    """The control node: destroying it skips the uninstall (``deleted_with``)."""
    """The control node and k3s being up (the kubeconfig fetch)."""

    def __post_init__(self) -> None:
        if not 1 <= self.idle_stop_minutes <= 24 * 60:
            raise ValueError(f"idle_stop_minutes {self.idle_stop_minutes} is outside 1..1440")
        if self.wake_timeout_seconds <= 0:
            raise ValueError("wake_timeout_seconds must be positive")
        if self.sleep_after_minutes is not None and (
            self.control_instance_id is None or self.control_instance_arn is None
        ):
            raise ValueError("sleep_after_minutes needs the control node's id and ARN")


class GpuWaker(pulumi.ComponentResource):
    url: str
    """``http://<control node overlay IP>:<port>``: where the homelab reaches Ollama."""

    def __init__(
        self, name: str, args: GpuWakerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:GpuWaker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        policy = aws.iam.RolePolicy(
            f"{name}-power",
            role=args.control_role_name,
            policy=pulumi.Output.all(
                args.worker_instance_arn,
                args.control_instance_arn if args.sleep_after_minutes is not None else None,
            ).apply(
                lambda arns: power_policy(
                    arns[0], manage_power=args.manage_power, sleep_arn=arns[1]
                )
            ),
            opts=child,
        )
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes)
        rbac = [
            declare(f"{name}-{manifest['kind'].lower()}", manifest, on_cluster)
            for manifest in render_rbac()
        ]

        def script(ids: list[str | None]) -> str:
            worker_id, control_id = ids
            assert worker_id is not None
            sleeping = args.sleep_after_minutes is not None
            settings = WakerSettings(
                instance_id=worker_id,
                region=args.region,
                listen_ip=args.listen_ip,
                port=args.port,
                idle_stop_minutes=args.idle_stop_minutes,
                wake_timeout_seconds=args.wake_timeout_seconds,
                manage_power=args.manage_power,
                upstream_namespace=args.upstream_namespace,
                upstream_selector=args.upstream_selector,
                upstream_port=args.upstream_port,
                sleep_instance_id=control_id if sleeping else None,
                sleep_after_minutes=args.sleep_after_minutes,
            )
            return remote_command(render_install_script(settings, args.bundle.sha256))

        install_text = pulumi.Output.all(args.worker_instance_id, args.control_instance_id).apply(
            script
        )
        bundle = args.bundle
        self.install = install_command(
            f"{name}-install",
            ssh=args.ssh,
            script=install_text,
            stdin=pulumi.Output.from_input(args.client_token).apply(
                lambda token: stdin_payload(token, bundle)
            ),
            parent=self,
            depends_on=[*args.wait_for, policy, *rbac],
            machine=args.machine,
        )
        self.url = f"http://{args.listen_ip}:{args.port}"
        self.register_outputs({"url": self.url, "bundleSha256": bundle.sha256})


def install_command(
    name: str,
    *,
    ssh: remote.ConnectionArgs,
    script: pulumi.Output[str],
    stdin: pulumi.Output[str],
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
    machine: pulumi.Resource | None,
) -> remote.Command:
    """gpu-waker's install over SSH, on the AWS control node or as the homelab's wake gate:
    the idempotent install script as create and update, its secrets on stdin only."""
    return remote.Command(
        name,
        connection=ssh,
        create=script,
        # The same idempotent script. Any changed input, stdin included (a new token, a renewed
        # certificate), is an update that runs it: the provider has no custom diff
        # (pulumi/pulumi-command provider/pkg/provider/remote/commandController.go, Update runs
        # `update`).
        update=script,
        delete=remote_command(render_uninstall_script()),
        stdin=pulumi.Output.secret(stdin),
        logging=remote.Logging.STDERR,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            delete_before_replace=True,
            deleted_with=machine,
        ),
    )
