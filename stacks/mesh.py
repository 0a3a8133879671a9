"""The Nebula mesh plan of each stack, derived from the typed config (pure, no resources).

Which node carries which groups (see components/nebula/config.py for what the groups allow):

============================  ============================================================
AWS control node              lighthouse (and relay), aws
homelab control planes        homelab
homelab GPU workers           homelab, liqo-gateway
============================  ============================================================

The AWS GPU worker is not on the mesh: both AWS nodes talk k3s over the VPC, and everything the
homelab sends to AWS reaches the control node (Liqo's gateway, the API). The Liqo gateway client
runs on a homelab worker (control planes are tainted NoSchedule).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_command as command

from components.k3s.cluster import connection
from components.nebula.ca import NebulaCaArgs
from components.nebula.config import (
    LIQO_EXTERNAL_CIDR,
    LIQO_INTERNAL_CIDR,
    FirewallRule,
    MeshNode,
    MeshSettings,
    default_policy,
    validate_mesh,
)
from components.nebula.host import NebulaHost, NebulaHostArgs, certify_public_key
from stacks.config import (
    PROJECT,
    AwsSettings,
    ConfigError,
    HomelabSettings,
    ProjectSettings,
    key,
)
from stacks.renewal import RenewalClock

CA_NAME = "hybridgpu-mesh"


CA_KEY_PARAMETER = "ca-key"
"""Name, below :func:`mesh_parameter_path`, of the SecureString holding the CA signing key."""


def mesh_parameter_path(aws_stack: str) -> str:
    """SSM path of the mesh's secrets in the aws-gpu stack's account and region."""
    return f"/hybridgpu/{aws_stack}/mesh"


def mesh_settings(project: ProjectSettings) -> MeshSettings:
    overlay = project.network.nebula_overlay_cidr
    others = {
        name: cidr
        for name, cidr in project.network.named_ranges().items()
        if name != "nebulaOverlayCidr"
    }
    network = project.network
    return MeshSettings(
        overlay_cidr=overlay,
        mtu=project.nebula.mtu,
        listen_port=project.nebula.listen_port,
        other_ranges=others,
        never_dial=(
            network.homelab_pod_cidr,
            network.homelab_service_cidr,
            network.aws_pod_cidr,
            network.aws_service_cidr,
            ipaddress.IPv4Network(LIQO_EXTERNAL_CIDR),
            ipaddress.IPv4Network(LIQO_INTERNAL_CIDR),
        ),
    )


def aws_control_node(aws: AwsSettings, project: ProjectSettings) -> MeshNode:
    """The AWS control node: the lighthouse (and relay)."""
    return MeshNode(
        name="aws-control-node",
        overlay_ip=aws.control_node.overlay_ip,
        groups=("lighthouse", "aws"),
        role="lighthouse",
        config_key=key("aws") + ".controlNode",
        local_cidr=project.network.aws_subnet_cidr,
    )


def homelab_nodes(homelab: HomelabSettings, project: ProjectSettings) -> list[MeshNode]:
    nodes = []
    for group, i, vm in homelab.vms_with_place():
        is_gpu = group == "gpuWorkers"
        nodes.append(
            MeshNode(
                name=vm.name,
                overlay_ip=vm.overlay_ip,
                groups=("homelab", "liqo-gateway") if is_gpu else ("homelab",),
                role="host",
                config_key=f"{key('homelab')}.{group}[{i}]",
                local_cidr=project.network.homelab_lan_cidr,
            )
        )
    return nodes


def checked(
    settings: MeshSettings,
    nodes: Sequence[MeshNode],
    policy: Sequence[FirewallRule],
    *,
    lighthouse_elsewhere: bool = False,
) -> None:
    """validate_mesh with errors in the operator's terms (fully qualified config keys)."""
    try:
        validate_mesh(settings, nodes, policy, lighthouse_elsewhere=lighthouse_elsewhere)
    except ValueError as err:
        message = str(err)
        if not message.startswith(f"{PROJECT}:") and message.split(":", 1)[0].isidentifier():
            message = f"{PROJECT}:{message}"
        raise ConfigError(message) from None


def ca_args(project: ProjectSettings, clock: RenewalClock) -> NebulaCaArgs:
    # A CA is re-issued while a full host-certificate lifetime still fits inside it.
    validity_days = project.nebula.ca_validity_days
    renew_before_days = project.nebula.cert_validity_days
    return NebulaCaArgs(
        ca_name=CA_NAME,
        validity=clock.validity(validity_days, renew_before_days),
        previous_validity=clock.previous_validity(validity_days, renew_before_days),
    )


def host_args(
    project: ProjectSettings,
    node: MeshNode,
    *,
    clock: RenewalClock,
    ca_cert_pem: pulumi.Input[str],
    ca_bundle_pem: pulumi.Input[str],
    ca_key_pem: pulumi.Input[str],
    lighthouses: pulumi.Input[dict[str, list[str]]],
    ssh: command.remote.ConnectionArgs | None = None,
    ssh_depends_on: Sequence[pulumi.Resource] = (),
    machine: pulumi.Resource | None = None,
) -> NebulaHostArgs:
    return NebulaHostArgs(
        node=node,
        settings=mesh_settings(project),
        policy=default_policy(),
        ca_cert_pem=ca_cert_pem,
        ca_bundle_pem=ca_bundle_pem,
        ca_key_pem=ca_key_pem,
        lighthouses=lighthouses,
        validity=clock.validity(
            project.nebula.cert_validity_days, project.nebula.cert_renew_before_days
        ),
        ssh=ssh,
        ssh_depends_on=tuple(ssh_depends_on),
        machine=machine,
    )


def lighthouse_map(
    overlay_ip: str, public_ip: pulumi.Input[str], port: int
) -> pulumi.Output[dict[str, list[str]]]:
    """Nebula ``static_host_map`` entry of the lighthouse."""
    return pulumi.Output.from_input(public_ip).apply(lambda ip: {overlay_ip: [f"{ip}:{port}"]})


def reject_overlay_clash(
    homelab: HomelabSettings, lighthouses: pulumi.Output[dict[str, list[str]]]
) -> pulumi.Output[dict[str, list[str]]]:
    """The homelab's overlay IPs must not be the aws-gpu lighthouse's (known only at run time)."""

    def check(value: dict[str, list[str]]) -> dict[str, list[str]]:
        for group, i, vm in homelab.vms_with_place():
            if str(vm.overlay_ip) in value:
                raise ConfigError(
                    f"{key('homelab')}.{group}[{i}].overlayIp: {vm.overlay_ip} is the overlay IP "
                    "of the aws-gpu lighthouse"
                )
        return value

    return lighthouses.apply(check)


def homelab_hosts(
    project: ProjectSettings,
    homelab: HomelabSettings,
    *,
    clock: RenewalClock,
    ca_cert_pem: pulumi.Input[str],
    ca_bundle_pem: pulumi.Input[str],
    ca_key_pem: pulumi.Input[str],
    lighthouses: pulumi.Input[dict[str, list[str]]],
    ssh_private_key: pulumi.Input[str],
    host_keys: Mapping[str, pulumi.Input[str]],
    machines: Mapping[str, pulumi.Resource],
) -> dict[str, NebulaHost]:
    """Nebula on every homelab VM, installed over SSH once the VM (``machines[name]``) is up,
    re-installed when the VM is replaced, not uninstalled when the VM is destroyed."""
    hosts: dict[str, NebulaHost] = {}
    by_name = {vm.name: vm for vm in homelab.all_vms}
    for node in homelab_nodes(homelab, project):
        vm = by_name[node.name]
        machine = machines[node.name]
        hosts[node.name] = NebulaHost(
            f"{node.name}-nebula",
            host_args(
                project,
                node,
                clock=clock,
                ca_cert_pem=ca_cert_pem,
                ca_bundle_pem=ca_bundle_pem,
                ca_key_pem=ca_key_pem,
                lighthouses=lighthouses,
                ssh=ssh_connection(
                    str(vm.ip), homelab.ssh_user, ssh_private_key, host_keys[node.name]
                ),
                ssh_depends_on=(machine,),
                machine=machine,
            ),
        )
    return hosts


def ssh_connection(
    host: pulumi.Input[str], user: str, private_key: pulumi.Input[str], host_key: pulumi.Input[str]
) -> command.remote.ConnectionArgs:
    """SSH to a homelab VM (bounded dials, secret key, pinned host key): the same connection
    k3s uses."""
    return connection(host, user, private_key, host_key)


def operator_nodes(aws: AwsSettings) -> list[MeshNode]:
    """Operators' machines: group ``admin`` (SSH and the k3s API of the AWS control node)."""
    return [
        operator_node(operator.name, operator.overlay_ip, f"{key('aws')}.operators[{i}]")
        for i, operator in enumerate(aws.operators)
    ]


def operator_node(name: str, overlay_ip: ipaddress.IPv4Address, config_key: str = "") -> MeshNode:
    """Operator ``name``'s machine; its certificate name is prefixed, so never a VM's."""
    return MeshNode(
        name=f"operator-{name}",
        overlay_ip=overlay_ip,
        groups=("admin",),
        role="host",
        config_key=config_key,
    )


def operator_certs(
    project: ProjectSettings,
    aws: AwsSettings,
    *,
    clock: RenewalClock,
    ca_cert_pem: pulumi.Input[str],
    ca_key_pem: pulumi.Input[str],
) -> pulumi.Output[dict[str, str]]:
    """Operator name -> certificate for the public key in config, re-issued each renewal window
    like every node's (``./dev mesh-join`` fetches the new one)."""
    prefix = project.network.nebula_overlay_cidr.prefixlen
    pairs = list(zip(aws.operators, operator_nodes(aws), strict=True))
    validity = clock.validity(
        project.nebula.cert_validity_days, project.nebula.cert_renew_before_days
    )
    certs = pulumi.Output.all(ca_cert_pem, ca_key_pem, validity).apply(
        lambda v: {
            operator.name: certify_public_key(
                node,
                prefix,
                ca_cert=v[0],
                ca_key=v[1],
                public_key_pem=operator.nebula_public_key,
                validity=v[2],
            )
            for operator, node in pairs
        }
    )
    # Public: only the CA key (secret) went into signing them.
    return pulumi.Output.unsecret(certs)
