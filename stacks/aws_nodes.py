"""The two EC2 nodes of the aws-gpu stack and how their files reach them on day 2.

Control node (always on): bootstrap user data, its files in SSM, and an SSH command that applies
them at once on every change (so `pulumi up` reports a failure, and the k3s server is upgraded
before any agent). GPU worker (stops when idle): bootstrap user data and its files in SSM,
published only after the control node applied its own; it takes them at its next boot, or within
a sync interval while running, without being started.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_command as command

from components.aws import imds_guard, nvidia_driver
from components.aws.cloud_init import (
    AGENT_PATH,
    INSTALL_K3S_PATH,
    K3S_SERVER_CA,
    K3sRole,
    agent_file,
    audit_policy_file,
    k3s_files,
    pod_security_file,
    render_bootstrap_user_data,
    render_k3s_agent_config,
    render_k3s_server_config,
    server_agent_token_file,
    ssh_files,
)
from components.aws.k3s_node import AmiQuery, AwsK3sNode, SpotOptions
from components.aws.node_files import FileSpec, NodeFiles, NodeFilesArgs
from components.base.files import NodeFile
from components.base.ssh_keys import HostKey
from components.k3s.cluster import connection
from components.kube.labels import (
    AWS_CONTROL_NODE_TAINTS,
    AWS_GPU_WORKER_TAINTS,
    CONTROL_NODE_LABEL,
    gpu_node_labels,
)
from components.nebula.install import INSTALL_SCRIPT_PATH, NebulaFiles, node_files
from stacks.config import (
    AmiSelector,
    AwsGpuConfig,
)
from stacks.pod_security import aws_admission_config

NEBULA_PLACEHOLDER = NebulaFiles(config_yaml="", ca_pem="", cert_pem="", key_pem="")
TOKEN_PLACEHOLDER = "placeholder"  # noqa: S105 - renders destinations only, never published
"""Only for destinations: which files a Nebula node has and where (contents come later)."""


def node_parameter_path(node: str) -> str:
    """SSM path of a node's files: one stack, one node kind."""
    return f"/hybridgpu/{pulumi.get_stack()}/{node}"


def parameter_path_arn(provider: aws.Provider, region: str, path: str) -> pulumi.Output[str]:
    account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(provider=provider))
    return account.account_id.apply(lambda a: f"arn:aws:ssm:{region}:{a}:parameter{path}")


def specs(files: Sequence[NodeFile], prefix: str = "") -> list[FileSpec]:
    """Rendered files as publishable specs (``prefix`` namespaces their names)."""
    return [FileSpec(prefix + f.name, f.path, f.mode, f.content, f.owner, f.restart) for f in files]


def specs_from_output(
    template: Sequence[NodeFile],
    contents: pulumi.Output[list[NodeFile]],
    prefix: str = "",
) -> list[FileSpec]:
    """Files whose contents are outputs: destinations from ``template`` (known at plan time),
    contents from ``contents`` (the same files, same order)."""
    return [
        FileSpec(
            prefix + f.name,
            f.path,
            f.mode,
            contents.apply(lambda fs, i=i: fs[i].content),
            f.owner,
            f.restart,
        )
        for i, f in enumerate(template)
    ]


def ssh_specs(config: AwsGpuConfig, host_key: pulumi.Output[HostKey]) -> list[FileSpec]:
    settings = config.aws
    template = ssh_files(
        host_key="",
        host_public_line="",
        user=settings.ssh_user,
        authorized_keys=settings.ssh_public_key,
    )
    rendered = host_key.apply(
        lambda k: ssh_files(
            host_key=k.private_openssh,
            host_public_line=k.public_line,
            user=settings.ssh_user,
            authorized_keys=settings.ssh_public_key,
        )
    )
    return specs_from_output(template, rendered)


def nebula_specs(files: pulumi.Output[NebulaFiles]) -> list[FileSpec]:
    return specs_from_output(
        node_files(NEBULA_PLACEHOLDER), files.apply(node_files), prefix="nebula/"
    )


def k3s_specs(
    *, role: K3sRole, k3s_version: str, config_text: str, token: pulumi.Output[str]
) -> list[FileSpec]:
    template = k3s_files(
        role=role, k3s_version=k3s_version, config=config_text, token=TOKEN_PLACEHOLDER
    )
    rendered = token.apply(
        lambda value: k3s_files(role=role, k3s_version=k3s_version, config=config_text, token=value)
    )
    return specs_from_output(template, rendered)


def server_agent_token_spec(token: pulumi.Output[str]) -> list[FileSpec]:
    template = [server_agent_token_file(TOKEN_PLACEHOLDER)]
    return specs_from_output(template, token.apply(lambda value: [server_agent_token_file(value)]))


@dataclass(frozen=True)
class ControlApply:
    command: command.remote.Command
    server_ca_sha256: pulumi.Output[str]
    """SHA-256 of the k3s server CA file: agents pin the CA with it (``K10<hash>::`` tokens)."""


def apply_on_control_node(
    name: str,
    *,
    config: AwsGpuConfig,
    node: AwsK3sNode,
    files: NodeFiles,
    host_key: pulumi.Output[HostKey],
    ssh_host: pulumi.Input[str],
) -> ControlApply:
    """Run the node agent's sync over SSH now (the timer would within minutes): `pulumi up`
    sees a failure, and what comes after (the workers' files) waits until the server applied.
    Prints the server CA's SHA-256, which is public."""
    settings = config.aws
    path = node_parameter_path("control-node")
    script = (
        f"sudo {AGENT_PATH} sync --region {settings.region} --path {path} --retries 30 >&2\n"
        f"sudo sha256sum {K3S_SERVER_CA} | cut -d' ' -f1\n"
    )
    apply = command.remote.Command(
        name,
        connection=connection(
            ssh_host,
            settings.ssh_user,
            config.secrets.ssh_private_key,
            host_key=host_key.apply(lambda k: k.public_key),
        ),
        create=script,
        # Re-run whenever anything the node gets changes, or the node itself does.
        triggers=[files.digest, node.instance_id],
        logging=command.remote.Logging.STDERR,
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions(
            depends_on=[
                files.manifest_parameter,
                node.instance,
                *([node.eip_association] if node.eip_association is not None else []),
            ],
            deleted_with=node.instance,
        ),
    )
    return ControlApply(
        command=apply, server_ca_sha256=apply.stdout.apply(lambda out: out.strip().split()[-1])
    )


def bootstrap(config: AwsGpuConfig, node: str, *, heal: bool) -> str:
    settings = config.aws
    return render_bootstrap_user_data(
        region=settings.region,
        parameter_path=node_parameter_path(node),
        ssh_user=settings.ssh_user,
        ssh_public_key=settings.ssh_public_key,
        heal=heal,
    )


def agent_spec() -> list[FileSpec]:
    return specs([agent_file()])


def spot_options(config: AwsGpuConfig) -> SpotOptions | None:
    worker = config.aws.gpu_worker
    if worker.market != "spot":
        return None
    return SpotOptions(
        request_type=worker.spot.request_type,
        interruption_behavior=worker.spot.interruption_behavior,
        max_price_usd_per_hour=worker.spot.max_price_usd_per_hour,
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


def control_node_files(
    config: AwsGpuConfig,
    *,
    path: str,
    host_key: pulumi.Output[HostKey],
    nebula: pulumi.Output[NebulaFiles],
    server_token: pulumi.Output[str],
    agent_password: pulumi.Output[str],
    private_ip: str,
    provider: aws.Provider,
) -> NodeFiles:
    """Everything the control node runs: its SSH identity, Nebula (the lighthouse), the k3s
    server and the agents' token; installers run in that order, then agents are drained for an
    upgrade (the control node's heal timer gives them back)."""
    network = config.project.network
    k3s_version = config.project.k3s_version
    return NodeFiles(
        "control-node-files",
        NodeFilesArgs(
            path=path,
            role="control-node",
            files=[
                *agent_spec(),
                *ssh_specs(config, host_key),
                *nebula_specs(nebula),
                *k3s_specs(
                    role="server",
                    k3s_version=k3s_version,
                    config_text=render_k3s_server_config(
                        private_ip=private_ip,
                        overlay_ip=str(config.aws.control_node.overlay_ip),
                        pod_cidr=str(network.aws_pod_cidr),
                        service_cidr=str(network.aws_service_cidr),
                        node_taints=AWS_CONTROL_NODE_TAINTS,
                        node_labels=("=".join(CONTROL_NODE_LABEL),),
                    ),
                    token=server_token,
                ),
                *server_agent_token_spec(agent_password),
                *specs([audit_policy_file()]),
                *specs([pod_security_file(aws_admission_config(config))]),
                # No pod on the control node needs IMDS (hop limit 1 already): no exception.
                *specs(imds_guard.guard_files(str(network.aws_pod_cidr)), prefix="imds/"),
            ],
            run=[
                # The IMDS rule is in place before an installer can start k3s (first boot).
                ["systemctl", "enable", "--now", imds_guard.UNIT],
                [INSTALL_SCRIPT_PATH],
                [INSTALL_K3S_PATH],
                # Agents upgrade after the server: drain them first (heal gives them back).
                [AGENT_PATH, "drain-for-upgrade", "--version", k3s_version],
            ],
            enable=["nebula.service", "k3s.service"],
        ),
        opts=pulumi.ResourceOptions(provider=provider),
    )


def worker_files(
    config: AwsGpuConfig,
    *,
    path: str,
    host_key: pulumi.Output[HostKey],
    agent_token: pulumi.Output[str],
    private_ip: str,
    provider: aws.Provider,
    after: pulumi.Resource,
) -> NodeFiles:
    """The GPU worker's SSH identity and k3s agent, published only once ``after`` (the server's
    apply) is done: version skew, servers first."""
    worker = config.aws.gpu_worker
    # gpuWorker.nvidiaDriver 'ubuntu': the pinned install (components/aws/nvidia_driver.py).
    pins = nvidia_driver.NvidiaDriverPins() if worker.nvidia_driver == "ubuntu" else None
    return NodeFiles(
        "gpu-worker-files",
        NodeFilesArgs(
            path=path,
            role="gpu-worker",
            files=[
                *agent_spec(),
                *ssh_specs(config, host_key),
                *k3s_specs(
                    role="agent",
                    k3s_version=config.project.k3s_version,
                    config_text=render_k3s_agent_config(
                        server_ip=private_ip,
                        node_labels=gpu_node_labels(worker.gpu_type_label),
                        node_taints=AWS_GPU_WORKER_TAINTS,
                    ),
                    token=agent_token,
                ),
                *specs(
                    imds_guard.guard_files(
                        str(config.project.network.aws_pod_cidr),
                        allowed_namespaces=(imds_guard.MOUNTPOINT_NAMESPACE,),
                    ),
                    prefix="imds/",
                ),
                *specs([nvidia_driver.driver_file(pins)] if pins else []),
            ],
            # The IMDS rule is in place before the installer can start k3s (first boot); so
            # are the NVIDIA driver and toolkit of plain Ubuntu, which k3s looks for at start.
            run=[
                ["systemctl", "enable", "--now", imds_guard.UNIT],
                *([[nvidia_driver.SCRIPT_PATH]] if pins else []),
                [INSTALL_K3S_PATH],
            ],
            enable=["k3s-agent.service"],
        ),
        opts=pulumi.ResourceOptions(provider=provider, depends_on=[after]),
    )
