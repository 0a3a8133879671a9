"""The exported outputs of each stack: the contract the homelab stack reads from aws-gpu.

Export names are a stable interface (renaming one breaks the other stack), so they are declared
once here, with their secretness. :func:`export_stack_outputs` refuses to export anything that is
not declared, or to miss anything that is, and wraps secret ones with ``Output.secret``;
:class:`AwsGpuReference` reads them back by the same names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi


@dataclass(frozen=True)
class OutputSpec:
    name: str
    description: str
    secret: bool = False


AWS_GPU_OUTPUTS: tuple[OutputSpec, ...] = (
    OutputSpec("region", "AWS region of the stack."),
    OutputSpec(
        "networkPlan",
        "Every address range (config key -> CIDR) as aws-gpu saw it; homelab checks it matches.",
    ),
    OutputSpec("nebulaCaCert", "PEM of the mesh CA certificate (public)."),
    OutputSpec(
        "nebulaCaBundle",
        "PEM of every mesh CA certificate nodes trust (current, and the previous one for a while "
        "after a CA renewal).",
    ),
    OutputSpec(
        "nebulaCaKeyParameter",
        "Name of the SSM SecureString holding the mesh CA key; the homelab reads it at run time "
        "to sign its host certificates (the key is in no stack output, so in no other state).",
    ),
    OutputSpec(
        "nebulaLighthouses",
        "Lighthouse overlay IP -> list of public 'host:port' endpoints (Nebula static_host_map).",
    ),
    OutputSpec("controlNodePublicIp", "Elastic IP of the control node (lighthouse, SSH)."),
    OutputSpec("controlNodeOverlayIp", "Nebula overlay IP of the control node (k3s server)."),
    OutputSpec(
        "controlNodeSshHostKey",
        "SSH host public key of the control node (the program owns it): for known_hosts.",
    ),
    OutputSpec(
        "nodeSshPublicKey",
        "The AWS nodes' login key (aws.sshPublicKey, public): the homelab checks its VMs take "
        "another one.",
    ),
    OutputSpec("k3sApiEndpoint", "URL of the AWS k3s API on the overlay: https://<ip>:6443."),
    OutputSpec(
        "kubeconfig",
        "Admin kubeconfig of the AWS k3s cluster, pointed at k3sApiEndpoint (Liqo peering).",
        secret=True,
    ),
    OutputSpec("gpuWorkerInstanceId", "EC2 instance id of the GPU worker (to start/stop it)."),
    OutputSpec("gpuWorkerGpuType", "Value of the worker's gpu-type node label (e.g. nvidia-t4)."),
    OutputSpec("gpuWorkerGpuCount", "Number of GPUs of the worker's instance type."),
    OutputSpec("modelBucketName", "Name of the S3 bucket holding the LLM model weights."),
    OutputSpec("modelBucketArn", "ARN of the model bucket."),
    OutputSpec(
        "modelUploaderRoleArn",
        "The only role that may write the model bucket; `./dev models` assumes it.",
    ),
    OutputSpec(
        "adminKubeconfig",
        "Admin kubeconfig for Pulumi and liqoctl on the operator's machine: the API on the "
        "overlay (adminAccess 'mesh') or on the Elastic IP (adminAccess 'public', adminCidrs "
        "only).",
        secret=True,
    ),
    OutputSpec(
        "adminAccess",
        "'mesh': SSH and the API of the control node are reached over Nebula only (nothing "
        "open to the internet); 'public': from adminCidrs on the Elastic IP.",
    ),
    OutputSpec(
        "nebulaOperatorCerts",
        "Operator name -> Nebula certificate (group admin) for the public key in "
        "hybridgpu:aws.operators; ./dev mesh-join writes it next to the machine's private key.",
    ),
    OutputSpec("liqoClusterId", "Liqo cluster id of the AWS cluster (the provider)."),
    OutputSpec("liqoVersion", "Liqo chart version installed on the AWS cluster."),
    OutputSpec("llmNamespace", "Namespace the homelab offloads; its model volume lives there."),
    OutputSpec("modelsPrefix", "s3://bucket/prefix/ Ollama reads its models tree from."),
    OutputSpec("modelsVolume", "The models PersistentVolume manifest (homelab declares its twin)."),
    OutputSpec(
        "gpuWakerUrl",
        "gpu-waker on the control node's overlay address: Ollama's API (and /v1) behind a "
        "token; a request starts the stopped GPU worker.",
    ),
    OutputSpec(
        "gpuWakerToken",
        "Bearer token of gpu-waker's clients (Open WebUI, ollama.clientNamespaces).",
        secret=True,
    ),
    OutputSpec(
        "wakeGate",
        "{sleeps: false} when the control node stays on; when the AWS side sleeps, what the "
        "homelab's wake gate needs to start it: {sleeps: true, region, controlInstanceId, "
        "workerInstanceId, trustAnchorArn, profileArn, roleArn, certificate, "
        "wakeTimeoutSeconds} (Roles Anywhere; the certificate is public).",
    ),
    OutputSpec(
        "wakeGatePrivateKey",
        "Key of the wake gate's client certificate (null when the AWS side never sleeps).",
        secret=True,
    ),
    OutputSpec(
        "etcdBackup",
        "Where the homelab's etcd snapshots go: {bucket, region, folder, endpoint} (k3s etcd-s3).",
    ),
    OutputSpec(
        "etcdBackupAccessKeyId", "Access key id of the backup writer (only the snapshot folder)."
    ),
    OutputSpec(
        "etcdBackupSecretAccessKey",
        "Secret key of the backup writer; replace its aws.iam.AccessKey to rotate it.",
        secret=True,
    ),
    OutputSpec(
        "veleroBackup",
        "Where the homelab's Velero backups go: {bucket, region, prefix} (its storage location).",
    ),
    OutputSpec(
        "veleroBackupAccessKeyId", "Access key id of Velero's writer (only the Velero folder)."
    ),
    OutputSpec(
        "veleroBackupSecretAccessKey",
        "Secret key of Velero's writer; replace its aws.iam.AccessKey to rotate it.",
        secret=True,
    ),
    OutputSpec(
        "acmeDns01",
        "{hostedZoneId}: the Route 53 zone the DNS-01 key may write challenges in (null "
        "without aws.acmeDns01).",
    ),
    OutputSpec(
        "acmeDns01AccessKeyId",
        "Access key id of the homelab cert-manager's DNS-01 user (null without aws.acmeDns01).",
    ),
    OutputSpec(
        "acmeDns01SecretAccessKey",
        "Its secret key; replace its aws.iam.AccessKey to rotate it.",
        secret=True,
    ),
)

HOMELAB_OUTPUTS: tuple[OutputSpec, ...] = (
    OutputSpec("awsStack", "Full name of the aws-gpu stack this homelab is linked to."),
    OutputSpec("nebulaHosts", "Node name -> overlay IP of every homelab node on the mesh."),
    OutputSpec("kubeconfig", "Admin kubeconfig of the homelab k3s cluster.", secret=True),
    OutputSpec("k3sApiEndpoint", "URL of the homelab k3s API (the VIP when there is one)."),
    OutputSpec(
        "ingressAddress",
        "LAN address of Traefik (MetalLB): point the web apps' DNS names (Open WebUI, "
        "JupyterHub, Rancher) at it.",
    ),
    OutputSpec("controlPlaneIps", "Control-plane name -> LAN IP."),
    OutputSpec("gpuWorkers", "GPU worker name -> {ip, gpuModel, gpuCount}."),
    OutputSpec("liqoClusterId", "Liqo cluster id of the homelab cluster (the consumer)."),
    OutputSpec("openWebuiUrl", "Open WebUI, through the Traefik ingress."),
    OutputSpec(
        "wakeGateUrl",
        "The wake gate on the first control plane (Ollama's API for the homelab's clients when "
        "the AWS side sleeps); null without one.",
    ),
    OutputSpec(
        "openWebuiAdminPassword",
        "Password of the Open WebUI admin account (openWebui.adminEmail).",
        secret=True,
    ),
    OutputSpec("jupyterhubUrl", "JupyterHub, through the Traefik ingress."),
    OutputSpec(
        "cudaValidation",
        "GPU worker -> {job, namespace, logs}: the CUDA check of each node and how to read it.",
    ),
    OutputSpec(
        "grafanaUrl", "Grafana, through the Traefik ingress (null without homelab.monitoring)."
    ),
    OutputSpec(
        "grafanaAdminPassword",
        "Password of Grafana's 'admin' account (generated; null without homelab.monitoring).",
        secret=True,
    ),
    OutputSpec(
        "tlsCaCert",
        "PEM of the private CA that signs the ingress certificates (homelab.tls.issuer "
        "private-ca): import it into browsers and OS trust stores; null with ACME.",
    ),
)

CONTRACTS: Mapping[str, tuple[OutputSpec, ...]] = {
    "aws-gpu": AWS_GPU_OUTPUTS,
    "homelab": HOMELAB_OUTPUTS,
}


def export_stack_outputs(stack: str, values: Mapping[str, pulumi.Input[Any]]) -> None:
    """Export exactly the outputs the contract of ``stack`` declares."""
    specs = {spec.name: spec for spec in CONTRACTS[stack]}
    missing = sorted(set(specs) - set(values))
    extra = sorted(set(values) - set(specs))
    if missing or extra:
        raise ValueError(
            f"exports of stack '{stack}' do not match stacks/outputs.py: "
            f"missing {missing}, undeclared {extra}"
        )
    for name, spec in specs.items():
        value = values[name]
        pulumi.export(name, pulumi.Output.secret(value) if spec.secret else value)


class MissingStackOutputError(pulumi.RunError):
    """A referenced stack lacks an output this stack needs."""


class UndecryptableStackOutputError(pulumi.RunError):
    """A referenced stack's secret output could not be decrypted by this stack."""


class AwsGpuReference:
    """Typed view of the aws-gpu stack's outputs through a StackReference."""

    def __init__(self, stack_name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        self.stack_name = stack_name
        self._ref = pulumi.StackReference(stack_name, stack_name=stack_name, opts=opts)

    def require(self, name: str) -> pulumi.Output[Any]:
        """The output ``name``; if the stack lacks it, a clear error when the value is needed."""
        specs = {spec.name: spec for spec in AWS_GPU_OUTPUTS}
        if name not in specs:
            raise KeyError(f"'{name}' is not an aws-gpu output declared in stacks/outputs.py")
        stack_name = self.stack_name

        secret = specs[name].secret

        def present(value: Any) -> Any:
            if value is None:
                raise MissingStackOutputError(
                    f"stack '{stack_name}' has no output '{name}'. Deploy the aws-gpu stack "
                    "first (`pulumi up -s aws-gpu`), or fix hybridgpu:homelab.awsStack"
                )
            if secret and not (isinstance(value, str) and value):
                # The engine hands "{}" for a secret output it cannot decrypt and only logs an
                # info line (pulumi/pulumi#19533, pkg/backend/secrets.go): fail here, clearly.
                raise UndecryptableStackOutputError(
                    f"output '{name}' of stack '{stack_name}' came back as {value!r}, not the "
                    "secret it holds: this stack cannot decrypt the aws-gpu stack's secrets. Both "
                    "stacks must use one secrets provider (the same passphrase, or the same "
                    "--secrets-provider, e.g. awskms://...); see README 'Secrets across the two "
                    "stacks'"
                )
            return value

        output = self._ref.get_output(name).apply(present)
        return pulumi.Output.secret(output) if specs[name].secret else output
