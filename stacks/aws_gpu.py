"""The aws-gpu stack: VPC, always-on control node (Nebula lighthouse + k3s server), stoppable GPU
worker, S3 model bucket and budget. It owns the Nebula mesh CA."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.aws.budget import CostBudget, CostBudgetArgs
from components.aws.cloud_init import (
    AWS_K3S_DISABLE,
    K3sRole,
    k3s_install_part,
    render_cloud_config,
    render_k3s_agent_config,
    render_k3s_server_config,
)
from components.aws.k3s_node import AmiQuery, AwsK3sNode, AwsK3sNodeArgs, SpotOptions
from components.aws.model_bucket import ModelBucket, ModelBucketArgs
from components.aws.network import AwsNetwork, AwsNetworkArgs
from components.aws.node_iam import NodeRole, NodeRoleArgs
from components.federation.ollama import model_directories
from components.k3s.config import k3s_api_url
from components.k3s.kubeconfig import KubeconfigFetch, KubeconfigFetchArgs
from components.kube.labels import gpu_node_labels
from components.nebula.ca import NebulaCa
from components.nebula.config import K3S_API_PORT, default_policy
from components.nebula.host import NebulaHost
from stacks import mesh
from stacks.config import STACK_AWS_GPU, AmiSelector, AwsGpuConfig, load_aws_gpu_config
from stacks.federation import aws_federation
from stacks.outputs import export_stack_outputs
from stacks.platform import aws_platform

COST_TAG_KEY = "Project"
"""Default tag the budget filters on."""


def default_tags(config: AwsGpuConfig) -> dict[str, str]:
    """Cost tags on every taggable resource; ``aws.tags`` may add to them (or override)."""
    return {
        COST_TAG_KEY: "hybridgpu",
        "Stack": pulumi.get_stack(),
        "ManagedBy": "pulumi",
        **config.aws.tags,
    }


def aws_provider(config: AwsGpuConfig) -> aws.Provider:
    """The one AWS provider of the stack; its default tags put cost tags on every taggable
    resource (https://www.pulumi.com/registry/packages/aws/api-docs/provider/#default_tags).
    Components add their own ``Role`` tag, which the provider merges with these."""
    return aws.Provider(
        "aws",
        region=config.aws.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=default_tags(config)),
    )


def ami_of(selector: AmiSelector) -> str | AmiQuery:
    """The configured AMI: a fixed id, or a lookup (most recent match)."""
    if selector.id is not None:
        return selector.id
    assert selector.name_pattern is not None  # guaranteed by AmiSelector
    return AmiQuery(
        owners=selector.owners,
        name_pattern=selector.name_pattern,
        architecture=selector.architecture,
    )


def node_user_data(
    *,
    role: K3sRole,
    k3s_config: str,
    k3s_version: str,
    overlay_ip: str,
    token: pulumi.Output[str],
    extra_parts: pulumi.Input[Mapping[str, Any]] | None = None,
) -> pulumi.Output[str]:
    """The node's ``#cloud-config``: ``extra_parts`` (the Nebula install fragment: packages,
    write_files, runcmd; its runcmd runs first) merged with the k3s install. Secret, because it
    holds the k3s token."""

    def render(values: list[Any]) -> str:
        token_value, extra = values
        part = k3s_install_part(
            role=role,
            k3s_version=k3s_version,
            k3s_config=k3s_config,
            token=token_value,
            overlay_ip=overlay_ip,
        )
        return render_cloud_config(part, extra_parts=extra)

    return pulumi.Output.secret(pulumi.Output.all(token, extra_parts).apply(render))


def main() -> None:
    config = load_aws_gpu_config()
    network_plan = config.project.network
    settings = config.aws
    control_mesh_node, worker_mesh_node = mesh.aws_nodes(settings)
    mesh.checked(
        mesh.mesh_settings(config.project),
        [control_mesh_node, worker_mesh_node],
        default_policy(),
    )
    provider = aws_provider(config)
    on_aws = pulumi.ResourceOptions(provider=provider)

    # The configured zone, else the region's first one. A GPU type is not offered in every
    # zone: set availabilityZone when the first one lacks it.
    zone: pulumi.Input[str] = (
        settings.availability_zone
        or (
            aws.get_availability_zones_output(
                state="available", opts=pulumi.InvokeOutputOptions(provider=provider)
            ).names[0]
        )
    )
    network = AwsNetwork(
        "network",
        AwsNetworkArgs(
            vpc_cidr=str(network_plan.aws_vpc_cidr),
            subnet_cidr=str(network_plan.aws_subnet_cidr),
            availability_zone=zone,
            admin_cidrs=[str(cidr) for cidr in settings.admin_cidrs],
            nebula_port=config.project.nebula.listen_port,
        ),
        opts=on_aws,
    )

    bucket_settings = settings.model_bucket
    models = ModelBucket(
        "models",
        ModelBucketArgs(
            name_prefix=bucket_settings.name_prefix,
            force_destroy=bucket_settings.force_destroy,
            noncurrent_version_expiration_days=bucket_settings.noncurrent_version_expiration_days,
            abort_incomplete_upload_days=bucket_settings.abort_incomplete_upload_days,
            # Ollama starts on an empty store: the directories it needs exist from the start.
            directories=model_directories(settings.model_store.prefix),
        ),
        opts=on_aws,
    )
    control_role = NodeRole("control-node", NodeRoleArgs(role="control-node"), opts=on_aws)
    gpu_role = NodeRole(
        "gpu-worker",
        NodeRoleArgs(role="gpu-worker", model_bucket_arn=models.arn),
        opts=on_aws,
    )

    # Shared secret that joins agents to the server. Alphanumeric: k3s-ansible's sample
    # warns against special characters. random's result is secret in state; wrapped here too,
    # so everything derived from it is secret even where the provider's marking does not reach.
    token = pulumi.Output.secret(
        random.RandomPassword("k3s-token", length=48, special=False).result
    )
    k3s_version = config.project.k3s_version
    control = settings.control_node
    worker = settings.gpu_worker
    control_ip = str(control.overlay_ip)
    api_endpoint = k3s_api_url(control_ip)

    # This stack owns the mesh CA (see README: where the Nebula CA key lives).
    ca = NebulaCa("mesh-ca", mesh.ca_args(config.project))
    nebula_port = config.project.nebula.listen_port
    control_nebula = NebulaHost(
        "control-node-nebula",
        mesh.host_args(
            config.project,
            control_mesh_node,
            ca_cert_pem=ca.cert_pem,
            ca_key_pem=ca.key_pem,
            lighthouses={},  # it is the lighthouse
        ),
    )

    control_node = AwsK3sNode(
        "control-node",
        AwsK3sNodeArgs(
            role="control-node",
            instance_type=control.instance_type,
            ami=ami_of(control.ami),
            subnet_id=network.subnet_id,
            security_group_ids=[network.security_group_id],
            instance_profile=control_role.instance_profile_name,
            ssh_public_key=settings.ssh_public_key,
            root_volume_gib=control.root_volume_gib,
            user_data=node_user_data(
                role="server",
                k3s_config=render_k3s_server_config(
                    overlay_ip=control_ip,
                    pod_cidr=str(network_plan.aws_pod_cidr),
                    service_cidr=str(network_plan.aws_service_cidr),
                    disable=AWS_K3S_DISABLE,
                ),
                k3s_version=k3s_version,
                overlay_ip=control_ip,
                token=token,
                extra_parts=control_nebula.cloud_init_fragment,
            ),
            elastic_ip=True,
        ),
        opts=on_aws,
    )

    lighthouses = mesh.lighthouse_map(control_ip, control_node.public_ip, nebula_port)
    worker_nebula = NebulaHost(
        "gpu-worker-nebula",
        mesh.host_args(
            config.project,
            worker_mesh_node,
            ca_cert_pem=ca.cert_pem,
            ca_key_pem=ca.key_pem,
            lighthouses=lighthouses,
        ),
    )

    # GPU worker AMI default: AWS's "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)",
    # which ships the NVIDIA driver and the NVIDIA container toolkit; k3s detects the nvidia
    # container runtime at start, so the node needs no driver install at boot.
    gpu_worker = AwsK3sNode(
        "gpu-worker",
        AwsK3sNodeArgs(
            role="gpu-worker",
            instance_type=worker.instance_type,
            ami=ami_of(worker.ami),
            subnet_id=network.subnet_id,
            security_group_ids=[network.security_group_id],
            instance_profile=gpu_role.instance_profile_name,
            ssh_public_key=settings.ssh_public_key,
            root_volume_gib=worker.root_volume_gib,
            user_data=node_user_data(
                role="agent",
                k3s_config=render_k3s_agent_config(
                    server_ip=control_ip,
                    overlay_ip=str(worker.overlay_ip),
                    node_labels=gpu_node_labels(worker.gpu_type_label),
                ),
                k3s_version=k3s_version,
                overlay_ip=str(worker.overlay_ip),
                token=token,
                extra_parts=worker_nebula.cloud_init_fragment,
            ),
            spot=(
                SpotOptions(
                    request_type=worker.spot.request_type,
                    interruption_behavior=worker.spot.interruption_behavior,
                    max_price_usd_per_hour=worker.spot.max_price_usd_per_hour,
                )
                if worker.market == "spot"
                else None
            ),
        ),
        opts=on_aws,
    )

    wait_for: list[pulumi.Resource] = [control_node.instance]
    if control_node.eip_association is not None:
        wait_for.append(control_node.eip_association)
    kubeconfig = KubeconfigFetch(
        "control-node-kubeconfig",
        KubeconfigFetchArgs(
            host=control_node.public_ip,
            user=settings.ssh_user,
            private_key=config.secrets.ssh_private_key,
            server_url=api_endpoint,
            instance_id=control_node.instance_id,
            wait_for=wait_for,
            admin_server_url=control_node.public_ip.apply(
                lambda ip: f"https://{ip}:{K3S_API_PORT}"
            ),
        ),
    )
    # Kubernetes layer of the AWS cluster, applied from the operator's machine through the
    # admin-range API access (the overlay is not reachable from there).
    cluster = k8s.Provider(
        "aws-gpu-k8s", kubeconfig=kubeconfig.admin_kubeconfig, enable_server_side_apply=True
    )
    aws_platform(cluster)
    model_store = aws_federation(config, cluster, models.bucket_name)

    budget = settings.budget
    CostBudget(
        "monthly",
        CostBudgetArgs(
            monthly_limit_usd=budget.monthly_limit_usd,
            thresholds_percent=budget.thresholds_percent,
            emails=budget.emails,
            cost_tag=(COST_TAG_KEY, default_tags(config)[COST_TAG_KEY]),
            name_prefix=f"hybridgpu-{pulumi.get_stack()}-",
        ),
        opts=on_aws,
    )

    export_stack_outputs(
        STACK_AWS_GPU,
        {
            "region": settings.region,
            "networkPlan": {k: str(v) for k, v in network_plan.named_ranges().items()},
            "nebulaCaCert": ca.cert_pem,
            "nebulaCaKey": ca.key_pem,
            "nebulaLighthouses": lighthouses,
            "controlNodePublicIp": control_node.public_ip,
            "controlNodeOverlayIp": control_ip,
            "k3sApiEndpoint": api_endpoint,
            "kubeconfig": kubeconfig.kubeconfig,
            "gpuWorkerInstanceId": gpu_worker.instance_id,
            "gpuWorkerGpuType": worker.gpu_type_label,
            "gpuWorkerGpuCount": worker.gpu_count,
            "modelBucketName": models.bucket_name,
            "modelBucketArn": models.arn,
            "adminKubeconfig": kubeconfig.admin_kubeconfig,
            "liqoClusterId": settings.federation.cluster_id,
            "liqoVersion": config.project.liqo_version,
            "llmNamespace": config.project.llm_namespace,
            "modelsPrefix": models.bucket_name.apply(
                lambda bucket: f"s3://{bucket}/{settings.model_store.prefix}"
            ),
            "modelsVolume": model_store.manifest,
        },
    )
