"""AWS network of the aws-gpu stack: a VPC with one public subnet and the nodes' security group.

No NAT gateway, on purpose: the nodes need direct public IPs. An AWS NAT gateway maps ports
symmetrically, which defeats Nebula's UDP hole punching (slackhq/nebula#33, #487), and it costs
about $33/month before traffic (https://aws.amazon.com/vpc/pricing/), a third of the budget.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.nebula.config import (
    FLANNEL_VXLAN_PORT,
    K3S_API_PORT,
    KUBELET_PORT,
    NODE_EXPORTER_PORT,
)

ROLE_TAG = "network"
ANYWHERE_IPV4 = "0.0.0.0/0"


CLUSTER_PORTS = (
    ("k3s-api", "tcp", K3S_API_PORT, "k3s API (agent to server)"),
    ("kubelet", "tcp", KUBELET_PORT, "kubelet (server to agent: logs, exec, metrics)"),
    ("vxlan", "udp", FLANNEL_VXLAN_PORT, "flannel VXLAN"),
    # The worker's node exporter listens on its VPC address (host network); the control node's
    # kube-proxy forwards the homelab's scrape of its NodePort there
    # (components/platform/node_exporter.py).
    ("node-exporter", "tcp", NODE_EXPORTER_PORT, "node exporter (NodePort forwarding)"),
)


@dataclass(frozen=True)
class AwsNetworkArgs:
    vpc_cidr: str
    subnet_cidr: str
    availability_zone: pulumi.Input[str]
    """Zone of the public subnet (and so of every node)."""
    admin_cidrs: Sequence[str]
    """Public sources allowed to SSH and the k3s API, one rule pair each; never the whole
    internet. Empty: neither port is open to the internet (operators come over the mesh)."""
    nebula_port: int = 4242
    """UDP port Nebula listens on: the only port open to the internet."""
    region: str | None = None
    """Region of the VPC: with it, an S3 gateway endpoint on the route table, so the nodes reach
    S3 (the model bucket) inside the VPC and the bucket can refuse node reads from elsewhere."""

    def __post_init__(self) -> None:
        vpc = ipaddress.IPv4Network(self.vpc_cidr)
        if not ipaddress.IPv4Network(self.subnet_cidr).subnet_of(vpc):
            raise ValueError(f"subnet_cidr {self.subnet_cidr} is not inside vpc_cidr {vpc}")
        for cidr in self.admin_cidrs:
            if ipaddress.IPv4Network(cidr).prefixlen == 0:
                raise ValueError(f"admin_cidrs: {cidr} would open SSH to the whole internet")
        if not 1 <= self.nebula_port <= 65535:
            raise ValueError(f"nebula_port {self.nebula_port} is not a port number")


def _tags(name: str) -> dict[str, str]:
    return {"Name": name, "Role": ROLE_TAG}


def _cidr_slug(cidr: str) -> str:
    """Resource-name form of a CIDR: names stay stable when the list is reordered."""
    return str(ipaddress.IPv4Network(cidr)).replace(".", "-").replace("/", "-")


class AwsNetwork(pulumi.ComponentResource):
    """VPC, public subnet, internet gateway and route, and one security group for the nodes."""

    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: AwsNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            # DNS resolution and hostnames: apt mirrors, S3 and the k3s installer need DNS.
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=_tags(f"{name}-vpc"),
            opts=child,
        )
        # Adopting the VPC's default security group removes its allow-all rules, so nothing can
        # fall back to it (CIS AWS Foundations 5.4; https://www.pulumi.com/registry/packages/aws/api-docs/ec2/defaultsecuritygroup/).
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            tags=_tags(f"{name}-default-sg"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags=_tags(f"{name}-igw"), opts=child
        )
        subnet = aws.ec2.Subnet(
            f"{name}-public",
            vpc_id=vpc.id,
            cidr_block=args.subnet_cidr,
            availability_zone=args.availability_zone,
            # Every node gets a public IPv4 address at launch: Nebula needs it (see module doc).
            map_public_ip_on_launch=True,
            tags=_tags(f"{name}-public"),
            opts=child,
        )
        route_table = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            routes=[{"cidr_block": ANYWHERE_IPV4, "gateway_id": igw.id}],
            tags=_tags(f"{name}-public-rt"),
            opts=child,
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public-rta", subnet_id=subnet.id, route_table_id=route_table.id, opts=child
        )
        # Gateway endpoints cost nothing (https://aws.amazon.com/privatelink/pricing/); the
        # endpoint adds the S3 prefix-list route to the table, which the route table's inline
        # routes leave alone (terraform-provider-aws internal/service/ec2/vpc_route_table.go:
        # prefix-list routes via vpce- are "handled separately, see aws_vpc_endpoint"). Its
        # policy stays the default (full access): image layers from ECR and other S3 traffic
        # of the nodes use it too; the bucket policy decides what the nodes may read.
        self.s3_endpoint_id: pulumi.Output[str] | None = None
        if args.region is not None:
            endpoint = aws.ec2.VpcEndpoint(
                f"{name}-s3",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{args.region}.s3",
                vpc_endpoint_type="Gateway",
                route_table_ids=[route_table.id],
                tags=_tags(f"{name}-s3"),
                opts=child,
            )
            self.s3_endpoint_id = endpoint.id

        # Rules are separate resources (the provider's advice: inline rules cannot describe one
        # CIDR per rule and fight with rule resources). Inbound from outside: Nebula from
        # anywhere; SSH and the k3s API from the admin ranges only (the operator's `pulumi up`
        # and liqoctl). Inside the group: k3s's own ports (below).
        group = aws.ec2.SecurityGroup(
            f"{name}-nodes-sg",
            vpc_id=vpc.id,
            description="hybridgpu k3s nodes: Nebula UDP from anywhere, SSH from admin ranges",
            tags=_tags(f"{name}-nodes-sg"),
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-nebula-udp",
            security_group_id=group.id,
            description="Nebula overlay (UDP); everything else runs inside it",
            ip_protocol="udp",
            from_port=args.nebula_port,
            to_port=args.nebula_port,
            cidr_ipv4=ANYWHERE_IPV4,
            tags=_tags(f"{name}-nebula-udp"),
            opts=child,
        )
        for cidr in args.admin_cidrs:
            rule_name = f"{name}-ssh-{_cidr_slug(cidr)}"
            aws.vpc.SecurityGroupIngressRule(
                rule_name,
                security_group_id=group.id,
                description="SSH from an admin range (kubeconfig fetch, break-glass)",
                ip_protocol="tcp",
                from_port=22,
                to_port=22,
                cidr_ipv4=str(ipaddress.IPv4Network(cidr)),
                tags=_tags(rule_name),
                opts=child,
            )
            api_rule_name = f"{name}-k3s-api-{_cidr_slug(cidr)}"
            aws.vpc.SecurityGroupIngressRule(
                api_rule_name,
                security_group_id=group.id,
                description="k3s API from an admin range (Pulumi, liqoctl); client-cert auth",
                ip_protocol="tcp",
                from_port=K3S_API_PORT,
                to_port=K3S_API_PORT,
                cidr_ipv4=str(ipaddress.IPv4Network(cidr)),
                tags=_tags(api_rule_name),
                opts=child,
            )
        # k3s between the two nodes runs on the VPC (node-ip = private address): the agent reaches
        # the API, the server reaches the kubelet, flannel's VXLAN carries pod traffic (incl.
        # Liqo's Geneve between its gateway and the worker). Only members of this group
        # (https://docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes).
        for rule, protocol, port, why in CLUSTER_PORTS:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-cluster-{rule}",
                security_group_id=group.id,
                description=f"{why} between cluster nodes",
                ip_protocol=protocol,
                from_port=port,
                to_port=port,
                referenced_security_group_id=group.id,
                tags=_tags(f"{name}-cluster-{rule}"),
                opts=child,
            )
        # The provider deletes AWS's default allow-all egress rule of a new group; say it back
        # explicitly: nodes reach Nebula peers, S3, the k3s release downloads and apt.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-egress-all",
            security_group_id=group.id,
            description="All outbound IPv4",
            ip_protocol="-1",
            cidr_ipv4=ANYWHERE_IPV4,
            tags=_tags(f"{name}-egress-all"),
            opts=child,
        )

        self.vpc_id = vpc.id
        self.subnet_id = subnet.id
        self.security_group_id = group.id
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "subnetId": self.subnet_id,
                "securityGroupId": self.security_group_id,
            }
        )
