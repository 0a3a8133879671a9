"""The aws-gpu stack: VPC, always-on control node (Nebula lighthouse + k3s server), stoppable GPU
worker, S3 model bucket and budget. It owns the Nebula mesh CA."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.aws.budget import CostBudget, CostBudgetArgs
from components.aws.cloud_init import (
    AGENT_PATH,
    k3s_api_url,
    render_k3s_agent_config,
    render_k3s_server_config,
)
from components.aws.k3s_node import AmiQuery, AwsK3sNode, AwsK3sNodeArgs
from components.aws.model_bucket import ModelBucket, ModelBucketArgs
from components.aws.network import AwsNetwork, AwsNetworkArgs
from components.aws.node_files import NodeFiles, NodeFilesArgs
from components.aws.node_iam import NodeRole, NodeRoleArgs
from components.aws.parameters import SecureParameters, SecureParametersArgs
from components.federation.ollama import model_directories
from components.k3s.kubeconfig import KubeconfigFetch, KubeconfigFetchArgs
from components.kube.labels import (
    CONTROL_NODE_LABEL,
    CONTROL_PLANE_TAINT,
    GPU_TAINT,
    gpu_node_labels,
)
from components.nebula.ca import NebulaCa
from components.nebula.config import K3S_API_PORT, default_policy
from components.nebula.host import NebulaHost
from stacks import aws_nodes, mesh
from stacks.config import (
    STACK_AWS_GPU,
    AmiSelector,
    AwsGpuConfig,
    ConfigError,
    key,
    load_aws_gpu_config,
)
from stacks.federation import aws_federation
from stacks.outputs import export_stack_outputs
from stacks.platform import aws_platform
from stacks.renewal import RenewalClock

COST_TAG_KEY = "Project"
KUBECONFIG_REFRESH_DAYS = 30
"""The admin kubeconfig is read again every 30 days: k3s renews its one-year client certificate
when it restarts within 90 days of expiry (the control node's heal timer restarts it then), so
the copy in state keeps at least two months of validity while `up` runs monthly."""
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


def control_private_ip(config: AwsGpuConfig) -> str:
    """The control node's fixed private address: agents join it by address, before it exists
    (AWS reserves the first four addresses of a subnet; the tenth host is free)."""
    return str(list(config.project.network.aws_subnet_cidr.hosts())[9])


def offered_instance_type(
    provider: aws.Provider, instance_type: str, zone: pulumi.Input[str]
) -> pulumi.Output[str]:
    """``instance_type`` once EC2 confirms it is offered in ``zone``; a clear error otherwise,
    before the worker is registered (not every GPU type exists in every zone)."""
    offerings = aws.ec2.get_instance_type_offerings_output(
        location_type="availability-zone",
        filters=pulumi.Output.from_input(zone).apply(
            lambda where: [
                aws.ec2.GetInstanceTypeOfferingsFilterArgs(
                    name="instance-type", values=[instance_type]
                ),
                aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="location", values=[where]),
            ]
        ),
        opts=pulumi.InvokeOutputOptions(provider=provider),
    )

    def check(values: list[Any]) -> str:
        offered, where = values
        if instance_type not in (offered or []):
            raise ConfigError(
                f"{key('aws')}.gpuWorker.instanceType: {instance_type} is not offered in "
                f"{where}; pick another type or set {key('aws')}.availabilityZone to a zone that "
                f"offers it (aws ec2 describe-instance-type-offerings --location-type "
                f"availability-zone --filters Name=instance-type,Values={instance_type})"
            )
        return instance_type

    return pulumi.Output.all(offerings.instance_types, zone).apply(check)


def main() -> None:
    config = load_aws_gpu_config()
    network_plan = config.project.network
    settings = config.aws
    control_mesh_node = mesh.aws_control_node(settings, config.project)
    mesh.checked(mesh.mesh_settings(config.project), [control_mesh_node], default_policy())
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
    worker_type = offered_instance_type(provider, settings.gpu_worker.instance_type, zone)
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
    control_path = aws_nodes.node_parameter_path("control-node")
    worker_path = aws_nodes.node_parameter_path("gpu-worker")
    control_role = NodeRole(
        "control-node",
        NodeRoleArgs(
            role="control-node",
            parameter_path_arn=aws_nodes.parameter_path_arn(
                provider, settings.region, control_path
            ),
        ),
        opts=on_aws,
    )
    gpu_role = NodeRole(
        "gpu-worker",
        NodeRoleArgs(
            role="gpu-worker",
            parameter_path_arn=aws_nodes.parameter_path_arn(provider, settings.region, worker_path),
            model_bucket_arn=models.arn,
            model_prefix=settings.model_store.prefix,
        ),
        opts=on_aws,
    )

    # The server token gives full control of the cluster; agents get the agent-only token
    # (https://docs.k3s.io/cli/token). Both live in state, protected: a new server token would
    # lock k3s out of its own datastore ("bootstrap data already found and encrypted with
    # different token", k3s-io/k3s#4640). Alphanumeric, as k3s-ansible's sample advises.
    server_token = pulumi.Output.secret(
        random.RandomPassword(
            "k3s-token", length=48, special=False, opts=pulumi.ResourceOptions(protect=True)
        ).result
    )
    agent_password = pulumi.Output.secret(
        random.RandomPassword(
            "k3s-agent-token", length=48, special=False, opts=pulumi.ResourceOptions(protect=True)
        ).result
    )
    k3s_version = config.project.k3s_version
    control = settings.control_node
    worker = settings.gpu_worker
    control_overlay_ip = str(control.overlay_ip)
    private_ip = control_private_ip(config)

    # This stack owns the mesh CA (see README: where the Nebula CA key lives). Its key reaches
    # the homelab stack through an SSM SecureString the homelab reads at run time, never through
    # a stack output, so no other state holds it.
    clock = RenewalClock()
    ca = NebulaCa("mesh-ca", mesh.ca_args(config.project, clock))
    mesh_secrets = SecureParameters(
        "mesh",
        SecureParametersArgs(
            path=mesh.mesh_parameter_path(pulumi.get_stack()),
            values={mesh.CA_KEY_PARAMETER: ca.key_pem},
            role="mesh",
            description="Nebula mesh CA signing key (hybridgpu); the homelab stack signs with it",
        ),
        opts=on_aws,
    )
    nebula_port = config.project.nebula.listen_port
    control_nebula = NebulaHost(
        "control-node-nebula",
        mesh.host_args(
            config.project,
            control_mesh_node,
            clock=clock,
            ca_cert_pem=ca.cert_pem,
            ca_bundle_pem=ca.bundle_pem,
            ca_key_pem=ca.key_pem,
            lighthouses={},  # it is the lighthouse
        ),
    )

    control_host_key = aws_nodes.ssh_host_key("control-node", "control-node")
    control_files = NodeFiles(
        "control-node-files",
        NodeFilesArgs(
            path=control_path,
            role="control-node",
            files=[
                *aws_nodes.agent_spec(),
                *aws_nodes.ssh_specs(config, control_host_key),
                *aws_nodes.nebula_specs(control_nebula.files),
                *aws_nodes.k3s_specs(
                    role="server",
                    k3s_version=k3s_version,
                    config_text=render_k3s_server_config(
                        private_ip=private_ip,
                        overlay_ip=control_overlay_ip,
                        pod_cidr=str(network_plan.aws_pod_cidr),
                        service_cidr=str(network_plan.aws_service_cidr),
                        node_taints=(CONTROL_PLANE_TAINT,),
                        node_labels=("=".join(CONTROL_NODE_LABEL),),
                    ),
                    token=server_token,
                ),
                *aws_nodes.server_agent_token_spec(agent_password),
            ],
            run=[
                ["/usr/local/sbin/hybridgpu-install-nebula"],
                ["/usr/local/sbin/hybridgpu-install-k3s"],
                # Agents upgrade after the server: drain them first (heal gives them back).
                [AGENT_PATH, "drain-for-upgrade", "--version", k3s_version],
            ],
            enable=["nebula.service", "k3s.service"],
        ),
        opts=on_aws,
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
            root_volume_gib=control.root_volume_gib,
            user_data=aws_nodes.bootstrap(config, "control-node", heal=True),
            # Nothing on the control node needs IMDS from a pod: one hop keeps pods (incl.
            # offloaded ones) away from the instance role.
            imds_hop_limit=1,
            private_ip=private_ip,
            elastic_ip=True,
            protect=True,
        ),
        opts=pulumi.ResourceOptions(
            provider=provider, depends_on=[control_files.manifest_parameter]
        ),
    )
    control_apply = aws_nodes.apply_on_control_node(
        "control-node-apply",
        config=config,
        node=control_node,
        files=control_files,
        host_key=control_host_key,
        ssh_host=control_node.public_ip,
    )
    lighthouses = mesh.lighthouse_map(control_overlay_ip, control_node.public_ip, nebula_port)

    # The agent token pins the server's CA (k3s's secure token form "K10<ca sha256>::node:<pw>",
    # https://docs.k3s.io/cli/token#token-format), known once the server has started.
    agent_token = pulumi.Output.secret(
        pulumi.Output.all(control_apply.server_ca_sha256, agent_password).apply(
            lambda v: f"K10{v[0]}::node:{v[1]}"
        )
    )
    worker_host_key = aws_nodes.ssh_host_key("gpu-worker", "gpu-worker")
    worker_files = NodeFiles(
        "gpu-worker-files",
        NodeFilesArgs(
            path=worker_path,
            role="gpu-worker",
            files=[
                *aws_nodes.agent_spec(),
                *aws_nodes.ssh_specs(config, worker_host_key),
                *aws_nodes.k3s_specs(
                    role="agent",
                    k3s_version=k3s_version,
                    config_text=render_k3s_agent_config(
                        server_ip=private_ip,
                        node_labels=gpu_node_labels(worker.gpu_type_label),
                        node_taints=(GPU_TAINT,),
                    ),
                    token=agent_token,
                ),
            ],
            run=[["/usr/local/sbin/hybridgpu-install-k3s"]],
            enable=["k3s-agent.service"],
        ),
        # Published only once the server applied its own (version skew: servers first).
        opts=pulumi.ResourceOptions(provider=provider, depends_on=[control_apply.command]),
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
            # Registered only once EC2 confirmed the type is offered in the zone.
            subnet_id=pulumi.Output.all(worker_type, network.subnet_id).apply(lambda v: v[1]),
            security_group_ids=[network.security_group_id],
            instance_profile=gpu_role.instance_profile_name,
            root_volume_gib=worker.root_volume_gib,
            user_data=aws_nodes.bootstrap(config, "gpu-worker", heal=False),
            # Mountpoint for S3 v2 reads the role's credentials from IMDS inside its pod, one
            # hop behind the node (mountpoint-s3-csi-driver docs/UPGRADING_TO_V2.md); other pods
            # are kept from IMDS by a NetworkPolicy in every namespace they run in.
            imds_hop_limit=2,
            spot=aws_nodes.spot_options(config),
            cost_tags=default_tags(config),
        ),
        opts=pulumi.ResourceOptions(
            provider=provider, depends_on=[worker_files.manifest_parameter]
        ),
    )

    kubeconfig = KubeconfigFetch(
        "control-node-kubeconfig",
        KubeconfigFetchArgs(
            host=control_node.public_ip,
            user=settings.ssh_user,
            private_key=config.secrets.ssh_private_key,
            server_url=k3s_api_url(control_overlay_ip),
            instance_id=control_node.instance_id,
            wait_for=[control_apply.command],
            admin_server_url=control_node.public_ip.apply(
                lambda ip: f"https://{ip}:{K3S_API_PORT}"
            ),
            host_key=control_host_key.apply(lambda k: k.public_key),
            refresh=clock.window(KUBECONFIG_REFRESH_DAYS).apply(str),
        ),
    )
    # Kubernetes layer of the AWS cluster, applied from the operator's machine through the
    # admin-range API access. A stable cluster identifier: a changed API address (a new EIP)
    # must not plan the replacement of every object on an unchanged cluster
    # (pulumi-kubernetes: the provider is replaced only when clusterIdentifier changes).
    cluster = k8s.Provider(
        "aws-gpu-k8s",
        kubeconfig=kubeconfig.admin_kubeconfig,
        enable_server_side_apply=True,
        cluster_identifier=f"hybridgpu-{settings.federation.cluster_id}",
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
            "nebulaCaBundle": ca.bundle_pem,
            "nebulaCaKeyParameter": mesh_secrets.names[mesh.CA_KEY_PARAMETER],
            "nebulaLighthouses": lighthouses,
            "controlNodePublicIp": control_node.public_ip,
            "controlNodeOverlayIp": control_overlay_ip,
            "controlNodeSshHostKey": pulumi.Output.unsecret(
                control_host_key.apply(lambda k: k.public_key)
            ),
            "k3sApiEndpoint": k3s_api_url(control_overlay_ip),
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
