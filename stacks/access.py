"""Who and what the stacks trust: every machine's SSH host key (generated, pinned), the separate
SSH keys of Proxmox, the homelab VMs and the AWS nodes, and who may write the model bucket
(README "Verified hosts and least privilege")."""

from __future__ import annotations

import base64
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.aws.model_bucket import ModelBucket
from components.aws.model_bucket_policy import ModelBucketPolicy, ModelBucketPolicyArgs
from components.aws.model_uploader import ModelUploader, ModelUploaderArgs
from components.aws.network import AwsNetwork
from components.aws.node_iam import NodeRole
from components.base.ssh_keys import HostKey, host_key_from_seed
from stacks.config import (
    AwsGpuConfig,
    ConfigError,
    HomelabConfig,
    HomelabSettings,
    ModelBucketSettings,
    key,
)


def ssh_host_key(name: str, comment: str) -> pulumi.Output[HostKey]:
    """A machine's SSH host key, derived from a seed kept in state (secret). The seed is a
    ``RandomBytes`` resource: created once, so every later ``up`` derives the same key, and a
    replaced machine (same name) boots with the key its clients already pin. Removing the
    machine from config removes its seed; adding it back gives a new key."""
    seed = random.RandomBytes(f"{name}-ssh-host-key-seed", length=32)
    return pulumi.Output.secret(
        seed.base64.apply(lambda s: host_key_from_seed(base64.b64decode(s), comment))
    )


def uploader_principals(
    provider: aws.Provider, bucket: ModelBucketSettings
) -> pulumi.Input[list[str]]:
    """Who may assume the model uploader role: ``modelBucket.uploaderPrincipals``, else the
    account (then each principal's own IAM policy must allow sts:AssumeRole on the role)."""
    if bucket.uploader_principals:
        return list(bucket.uploader_principals)
    account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(provider=provider))
    return account.account_id.apply(lambda a: [f"arn:aws:iam::{a}:root"])


def model_access(
    config: AwsGpuConfig,
    provider: aws.Provider,
    network: AwsNetwork,
    models: ModelBucket,
    gpu_role: NodeRole,
) -> ModelUploader:
    """Only the uploader role writes models; the GPU worker's role reads them only through the
    VPC's S3 endpoint (README "Model integrity")."""
    settings = config.aws
    on_aws = pulumi.ResourceOptions(provider=provider)
    uploader = ModelUploader(
        "model-uploader",
        ModelUploaderArgs(
            bucket_arn=models.arn,
            prefix=settings.model_store.prefix,
            trusted_principals=uploader_principals(provider, settings.model_bucket),
        ),
        opts=on_aws,
    )
    if network.s3_endpoint_id is None:
        raise ValueError("the network has no S3 endpoint: give it the region")
    ModelBucketPolicy(
        "models",
        ModelBucketPolicyArgs(
            bucket_id=models.bucket_id,
            bucket_arn=models.arn,
            uploader_role_arn=uploader.role_arn,
            reader_role_arns=[gpu_role.role.arn],
            vpc_endpoint_id=network.s3_endpoint_id,
            stack_keys=models.directory_keys,
            moved_from=models,
        ),
        opts=pulumi.ResourceOptions(provider=provider, depends_on=models.settled),
    )
    return uploader


CONTROL_PLANE_HOST_KEY = "homelab-control-plane"
"""The control planes share one SSH host key: cluster-level commands SSH to the API VIP, which
any of them may hold, and pulumi-command pins exactly one key (hostKey). Sharing costs no
separation: each control plane is an etcd member and holds the cluster's CA keys anyway."""


def vm_host_keys(homelab: HomelabSettings) -> dict[str, pulumi.Output[HostKey]]:
    """Each VM's generated SSH host key (secret; seeds in state, so stable across ups and kept by
    a replaced VM): the control planes' shared key, one key per GPU worker. VMs listed in
    ``existingHostKeys`` get none: they keep the key they have."""
    existing = homelab.existing_host_keys
    keys: dict[str, pulumi.Output[HostKey]] = {}
    if any(vm.name not in existing for vm in homelab.control_planes):
        shared = ssh_host_key(CONTROL_PLANE_HOST_KEY, CONTROL_PLANE_HOST_KEY)
        keys.update({vm.name: shared for vm in homelab.control_planes if vm.name not in existing})
    keys.update(
        {
            vm.name: ssh_host_key(vm.name, vm.name)
            for vm in homelab.gpu_workers
            if vm.name not in existing
        }
    )
    return keys


def pinned_host_keys(
    homelab: HomelabSettings, keys: dict[str, pulumi.Output[HostKey]]
) -> dict[str, pulumi.Input[str]]:
    """What SSH clients pin per VM (``ssh-ed25519 AAAA...``, public, so not secret): the
    generated key, or the one configured for a VM that predates generated keys."""
    pinned: dict[str, pulumi.Input[str]] = {
        name: pulumi.Output.unsecret(key.apply(lambda k: k.public_key))
        for name, key in keys.items()
    }
    for name, line in homelab.existing_host_keys.items():
        pinned[name] = " ".join(line.split()[:2])
    return pinned


def cluster_ssh_host(homelab: HomelabSettings, api_endpoint: str) -> str:
    """Where cluster-level commands SSH to: the API endpoint (the VIP, held by any control
    plane), which needs one key on every control plane. With a control plane that predates
    generated keys they differ, so these commands go to the first control plane itself."""
    if any(vm.name in homelab.existing_host_keys for vm in homelab.control_planes):
        return str(homelab.control_planes[0].ip)
    return api_endpoint


def proxmox_ssh_key(config: HomelabConfig) -> tuple[pulumi.Output[str], pulumi.Output[Any]]:
    """The key the Proxmox provider's SSH uses, and a check for the gate. Separate keys for the
    hypervisor, the VMs and the AWS nodes: a key taken from one (a VM's authorized user, a
    copied state) must not open the others. ``proxmoxSshPrivateKey`` unset keeps the one-key
    setup of earlier stacks working, with a warning; set, it must differ from the VMs' key."""
    secrets = config.secrets
    if secrets.proxmox_ssh_private_key is None:
        pulumi.log.warn(
            f"{key('proxmoxSshPrivateKey')} is not set: the VMs' {key('sshPrivateKey')} also "
            "opens the Proxmox nodes. Give Proxmox its own key (README 'Verified hosts and "
            "least privilege')"
        )
        return secrets.ssh_private_key, pulumi.Output.from_input(None)

    def distinct(keys: list[str]) -> None:
        if keys[0].strip() == keys[1].strip():
            raise ConfigError(
                f"{key('proxmoxSshPrivateKey')}: the same key as {key('sshPrivateKey')}; give "
                "Proxmox its own key, or unset it to use one key for both (not recommended)"
            )

    check = pulumi.Output.all(secrets.proxmox_ssh_private_key, secrets.ssh_private_key).apply(
        distinct
    )
    return secrets.proxmox_ssh_private_key, check


def check_distinct_node_keys(
    config: HomelabConfig, aws_key: pulumi.Output[Any]
) -> pulumi.Output[Any]:
    """The AWS nodes' login key (aws-gpu ``aws.sshPublicKey``) must not also open the VMs."""
    ours = {" ".join(k.split()[:2]) for k in config.homelab.ssh_public_keys}

    def compare(theirs: Any) -> Any:
        if theirs and " ".join(str(theirs).split()[:2]) in ours:
            raise ConfigError(
                f"{key('homelab')}.sshPublicKeys: holds the aws-gpu stack's aws.sshPublicKey; "
                "the AWS nodes and the homelab VMs take separate keys"
            )
        return theirs

    return aws_key.apply(compare)
