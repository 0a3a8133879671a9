"""The aws-gpu stack: VPC, always-on control node (Nebula lighthouse + k3s server), stoppable GPU
worker, S3 model bucket and budget. It owns the Nebula mesh CA."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.aws.budget import CostBudget, CostBudgetArgs
from components.aws.cloud_init import (
    k3s_api_url,
)
from components.aws.k3s_node import AwsK3sNode, AwsK3sNodeArgs
from components.aws.model_bucket import ModelBucket, ModelBucketArgs
from components.aws.network import AwsNetwork, AwsNetworkArgs
from components.aws.node_iam import NodeRole, NodeRoleArgs
from components.aws.parameters import SecureParameters, SecureParametersArgs
from components.federation.model_store import model_directories
from components.k3s.kubeconfig import KubeconfigFetch, KubeconfigFetchArgs
from components.nebula.ca import NebulaCa
from components.nebula.config import K3S_API_PORT, default_policy
from components.nebula.host import NebulaHost
from stacks import access, aws_capacity, aws_nodes, mesh
from stacks.aws_account import COST_TAG_KEY, aws_provider, default_tags
from stacks.backups import aws_backups
from stacks.config import (
    STACK_AWS_GPU,
    load_aws_gpu_config,
)
from stacks.federation import aws_federation
from stacks.gpu_waker import aws_gpu_waker
from stacks.outputs import export_stack_outputs
from stacks.platform import aws_platform
from stacks.renewal import RenewalClock
from stacks.tls import aws_acme_dns

KUBECONFIG_REFRESH_DAYS = 30
"""The admin kubeconfig is read again every 30 days: k3s renews its one-year client certificate
when it restarts within 90 days of expiry (the control node's heal timer restarts it then), so
the copy in state keeps at least two months of validity while `up` runs monthly."""


def main() -> None:
    config = load_aws_gpu_config()
    network_plan = config.project.network
    settings = config.aws
    control_mesh_node = mesh.aws_control_node(settings, config.project)
    operator_mesh_nodes = mesh.operator_nodes(settings)
    mesh.checked(
        mesh.mesh_settings(config.project),
        [control_mesh_node, *operator_mesh_nodes],
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
    worker_type = aws_capacity.offered_instance_type(
        provider, settings.gpu_worker.instance_type, zone
    )
    worker_market = aws_capacity.spot_price_check(provider, settings.gpu_worker, zone)
    network = AwsNetwork(
        "network",
        AwsNetworkArgs(
            vpc_cidr=str(network_plan.aws_vpc_cidr),
            subnet_cidr=str(network_plan.aws_subnet_cidr),
            availability_zone=zone,
            admin_cidrs=[str(cidr) for cidr in settings.admin_cidrs],
            nebula_port=config.project.nebula.listen_port,
            region=settings.region,
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
    # What the homelab reads for its etcd snapshots and its ACME DNS-01 challenges.
    backup_outputs = {**aws_backups(settings, on_aws), **aws_acme_dns(settings, on_aws)}
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

    uploader = access.model_access(config, provider, network, models, gpu_role)

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
    control = settings.control_node
    worker = settings.gpu_worker
    control_overlay_ip = str(control.overlay_ip)
    private_ip = aws_nodes.control_private_ip(config)

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

    control_host_key = access.ssh_host_key("control-node", "control-node")
    control_files = aws_nodes.control_node_files(
        config,
        path=control_path,
        host_key=control_host_key,
        nebula=control_nebula.files,
        server_token=server_token,
        agent_password=agent_password,
        private_ip=private_ip,
        provider=provider,
    )
    control_node = AwsK3sNode(
        "control-node",
        AwsK3sNodeArgs(
            role="control-node",
            instance_type=control.instance_type,
            ami=aws_nodes.ami_of(control.ami),
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
    # Where Pulumi (and liqoctl) reach the control node's SSH and API: over the mesh (an
    # operator's machine joined with ./dev mesh-join; nothing open to the internet), or on the
    # Elastic IP from adminCidrs (the first up of a new stack). Switching re-runs the SSH steps
    # over the new path (a changed connection is an update, not a replacement:
    # pulumi/pulumi-command provider/pkg/provider/remote/command.go@v1.2.1 marks only triggers
    # replaceOnChanges), and they are idempotent.
    admin_host: pulumi.Input[str] = (
        control_overlay_ip if settings.admin_over_mesh else control_node.public_ip
    )
    control_apply = aws_nodes.apply_on_control_node(
        "control-node-apply",
        config=config,
        node=control_node,
        files=control_files,
        host_key=control_host_key,
        ssh_host=admin_host,
    )
    lighthouses = mesh.lighthouse_map(control_overlay_ip, control_node.public_ip, nebula_port)

    # The agent token pins the server's CA (k3s's secure token form "K10<ca sha256>::node:<pw>",
    # https://docs.k3s.io/cli/token#token-format), known once the server has started.
    agent_token = pulumi.Output.secret(
        pulumi.Output.all(control_apply.server_ca_sha256, agent_password).apply(
            lambda v: f"K10{v[0]}::node:{v[1]}"
        )
    )
    worker_host_key = access.ssh_host_key("gpu-worker", "gpu-worker")
    worker_files = aws_nodes.worker_files(
        config,
        path=worker_path,
        host_key=worker_host_key,
        agent_token=agent_token,
        private_ip=private_ip,
        provider=provider,
        after=control_apply.command,
    )

    # GPU worker AMI default: AWS's "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)",
    # which ships the NVIDIA driver and the NVIDIA container toolkit; k3s detects the nvidia
    # container runtime at start, so the node needs no driver install at boot. With
    # gpuWorker.nvidiaDriver 'ubuntu' it is plain Ubuntu 24.04 and the worker's node agent
    # installs both (pinned) before the k3s agent first starts (components/aws/nvidia_driver.py).
    gpu_worker = AwsK3sNode(
        "gpu-worker",
        AwsK3sNodeArgs(
            role="gpu-worker",
            instance_type=worker.instance_type,
            ami=aws_nodes.ami_of(worker.ami),
            # Registered only once EC2 confirmed the type is offered in the zone (and the spot
            # price was compared with the cap).
            subnet_id=pulumi.Output.all(worker_type, worker_market, network.subnet_id).apply(
                lambda v: v[2]
            ),
            security_group_ids=[network.security_group_id],
            instance_profile=gpu_role.instance_profile_name,
            root_volume_gib=worker.root_volume_gib,
            user_data=aws_nodes.bootstrap(config, "gpu-worker", heal=False),
            # Mountpoint for S3 v2 reads the role's credentials from IMDS inside its pod, one
            # hop behind the node (mountpoint-s3-csi-driver docs/UPGRADING_TO_V2.md); every other
            # pod is kept from IMDS by the node's IMDS guard (components/aws/imds_guard.py).
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
            host=admin_host,
            user=settings.ssh_user,
            private_key=config.secrets.ssh_private_key,
            server_url=k3s_api_url(control_overlay_ip),
            instance_id=control_node.instance_id,
            wait_for=[control_apply.command],
            admin_server_url=None
            if settings.admin_over_mesh
            else control_node.public_ip.apply(lambda ip: f"https://{ip}:{K3S_API_PORT}"),
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
    waker = aws_gpu_waker(
        config,
        control_node=control_node,
        admin_host=admin_host,
        control_role_name=control_role.role_name,
        gpu_worker=gpu_worker,
        cluster=cluster,
        host_key=control_host_key.apply(lambda k: k.public_key),
        wait_for=[kubeconfig],
        clock=clock,
        opts=on_aws,
    )

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
    # The backstop: unfiltered, so it counts from day one and sees untagged spend too.
    CostBudget(
        "account",
        CostBudgetArgs(
            monthly_limit_usd=budget.account_limit_usd or budget.monthly_limit_usd,
            thresholds_percent=budget.thresholds_percent,
            emails=budget.emails,
            cost_tag=None,
            name_prefix=f"hybridgpu-{pulumi.get_stack()}-account-",
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
            "nodeSshPublicKey": settings.ssh_public_key,
            "k3sApiEndpoint": k3s_api_url(control_overlay_ip),
            "kubeconfig": kubeconfig.kubeconfig,
            "gpuWorkerInstanceId": gpu_worker.instance_id,
            "gpuWorkerGpuType": worker.gpu_type_label,
            "gpuWorkerGpuCount": worker.gpu_count,
            "modelBucketName": models.bucket_name,
            "modelBucketArn": models.arn,
            **backup_outputs,
            "modelUploaderRoleArn": uploader.role_arn,
            "adminKubeconfig": kubeconfig.admin_kubeconfig,
            "adminAccess": "mesh" if settings.admin_over_mesh else "public",
            # Certificates are public (the private keys stay on the operators' machines).
            "nebulaOperatorCerts": mesh.operator_certs(
                config.project,
                settings,
                clock=clock,
                ca_cert_pem=ca.cert_pem,
                ca_key_pem=ca.key_pem,
            ),
            "liqoClusterId": settings.federation.cluster_id,
            "liqoVersion": config.project.liqo_version,
            "llmNamespace": config.project.llm_namespace,
            "modelsPrefix": models.bucket_name.apply(
                lambda bucket: f"s3://{bucket}/{settings.model_store.prefix}"
            ),
            "modelsVolume": model_store.manifest,
            "gpuWakerUrl": waker.url,
            "gpuWakerToken": waker.token,
            "wakeGate": waker.gate,
            "wakeGatePrivateKey": waker.gate_private_key,
        },
    )
