"""One EC2 instance of the AWS k3s cluster: the control node (k3s server, Nebula lighthouse) or
the GPU worker (k3s agent), and for the control node an Elastic IP.

Both kinds share the same hardening: IMDSv2 only with the smallest hop limit that works, an
encrypted gp3 root volume, and user data that only bootstraps and holds no secret (see
components/aws/cloud_init.py). Day-2 changes never touch the instance: user data and the SSH key
are ignored after launch (a change would stop and start it, or replace it); the node's files are
published for its agent instead (components/aws/node_files.py).

A spot worker is an ``aws.ec2.SpotInstanceRequest``, not an instance with market options: deleting
that resource cancels the request before terminating the instance
(terraform-provider-aws internal/service/ec2/ec2_spot_instance_request.go,
``resourceSpotInstanceRequestDelete``), whereas deleting an instance leaves a persistent request
open, which relaunches an untagged, unmanaged GPU instance (hashicorp/terraform-provider-aws#38142).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

# t2/t3/t3a/t4g: burstable types whose default credit mode may bill CPU surplus.
BURSTABLE_PATTERN = re.compile(r"^t\d[a-z]*\.")
SPOT_REQUEST_TYPES = ("persistent", "one-time")
SPOT_INTERRUPTION_BEHAVIORS = ("stop", "hibernate", "terminate")
# A persistent request created through RunInstances expires 7 days after launch unless
# ValidUntil says otherwise (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_SpotMarketOptions.html);
# an expired request no longer restarts the stopped worker after an interruption, which is the
# whole point of "persistent + stop". A fixed far-future date keeps inputs deterministic.
PERSISTENT_REQUEST_VALID_UNTIL = "2036-01-01T00:00:00Z"
TIMESTAMP_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@dataclass(frozen=True)
class AmiQuery:
    """Look an AMI up by owner and name pattern; the most recent match wins."""

    owners: Sequence[str]
    name_pattern: str
    architecture: str = "x86_64"

    def __post_init__(self) -> None:
        if not self.owners or not self.name_pattern:
            raise ValueError("AmiQuery needs owners and a name_pattern")


@dataclass(frozen=True)
class SpotOptions:
    """EC2 spot market options (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-requests.html).

    The worker launches through a spot request resource, whose deletion cancels the request
    first (see the module docstring).
    """

    request_type: str = "persistent"
    interruption_behavior: str = "stop"
    max_price_usd_per_hour: str | None = None
    """``None``: pay at most the on-demand price (AWS's default and recommendation)."""
    valid_until: str = PERSISTENT_REQUEST_VALID_UNTIL
    """End of a persistent request (UTC, ``YYYY-MM-DDTHH:MM:SSZ``); unused for one-time ones,
    for which AWS rejects it."""

    def __post_init__(self) -> None:
        if not TIMESTAMP_PATTERN.match(self.valid_until):
            raise ValueError(f"valid_until '{self.valid_until}' is not YYYY-MM-DDTHH:MM:SSZ")
        if self.request_type not in SPOT_REQUEST_TYPES:
            raise ValueError(f"request_type must be one of {SPOT_REQUEST_TYPES}")
        if self.interruption_behavior not in SPOT_INTERRUPTION_BEHAVIORS:
            raise ValueError(f"interruption_behavior must be one of {SPOT_INTERRUPTION_BEHAVIORS}")
        if self.interruption_behavior != "terminate" and self.request_type != "persistent":
            raise ValueError(
                f"interruption_behavior '{self.interruption_behavior}' needs request_type "
                "'persistent' (AWS rule)"
            )


@dataclass(frozen=True)
class AwsK3sNodeArgs:
    role: str
    """Node kind, ``control-node`` or ``gpu-worker``: the ``Role`` cost tag."""
    instance_type: str
    ami: pulumi.Input[str] | AmiQuery
    """A fixed AMI id, or a lookup."""
    subnet_id: pulumi.Input[str]
    security_group_ids: Sequence[pulumi.Input[str]]
    instance_profile: pulumi.Input[str]
    """Name of the IAM instance profile (see ``components.aws.node_iam.NodeRole``)."""
    root_volume_gib: int
    user_data: str
    """Bootstrap ``#cloud-config``: applied at the first boot only, never secret."""
    imds_hop_limit: int = 1
    """IMDSv2 PUT response hop limit: 1 keeps pods (one hop behind the node) away from the
    instance's credentials; 2 only where a pod must reach IMDS."""
    private_ip: str | None = None
    """A fixed private address (the k3s server, which agents join by address)."""
    spot: SpotOptions | None = None
    """Spot market options; ``None`` runs on demand."""
    elastic_ip: bool = False
    """Give the node a stable public address (the Nebula lighthouse needs one)."""
    cost_tags: Mapping[str, str] = field(default_factory=dict)
    """The stack's cost tags. The provider's default tags reach every resource it creates, but
    not an instance launched by a spot request: those get them through ``aws.ec2.Tag``."""
    protect: bool = False
    """Refuse to delete the instance (the control node holds the cluster datastore)."""

    def __post_init__(self) -> None:
        if self.role not in ("control-node", "gpu-worker"):
            raise ValueError(f"role must be 'control-node' or 'gpu-worker', got '{self.role}'")
        if not 8 <= self.root_volume_gib <= 16384:
            raise ValueError(f"root_volume_gib {self.root_volume_gib} is outside 8..16384 (gp3)")
        if not self.security_group_ids:
            raise ValueError("security_group_ids is empty")
        if self.imds_hop_limit not in (1, 2):
            raise ValueError(f"imds_hop_limit must be 1 or 2, got {self.imds_hop_limit}")


def ami_filters(query: AmiQuery) -> list[aws.ec2.GetAmiFilterArgsDict]:
    """``describe-images`` filters of a lookup: name pattern, architecture, HVM only."""
    return [
        {"name": "name", "values": [query.name_pattern]},
        {"name": "architecture", "values": [query.architecture]},
        {"name": "virtualization-type", "values": ["hvm"]},
    ]


def market_options(spot: SpotOptions | None) -> dict[str, Any] | None:
    """``instance_market_options`` of an instance: spot settings, or none for on-demand."""
    if spot is None:
        return None
    spot_options: dict[str, Any] = {
        "spot_instance_type": spot.request_type,
        "instance_interruption_behavior": spot.interruption_behavior,
    }
    if spot.max_price_usd_per_hour is not None:
        spot_options["max_price"] = spot.max_price_usd_per_hour
    if spot.request_type == "persistent":
        spot_options["valid_until"] = spot.valid_until
    return {"market_type": "spot", "spot_options": spot_options}


# Inputs that replace or stop/start an instance and must not do so after launch:
# ``ami`` (a newer image from the lookup), ``userData`` (bootstrap only; a change stops and starts
# the instance: terraform-provider-aws resourceInstanceUpdate), ``keyName`` (ForceNew; SSH keys are
# managed by the node agent), a persistent request's ``validUntil`` (meaningful at launch only).
IGNORED_AFTER_LAUNCH = ("ami", "userData", "keyName")


def _instance_settings(
    args: AwsK3sNodeArgs, ami_id: pulumi.Input[str], tags: Mapping[str, str]
) -> dict[str, Any]:
    """What an on-demand instance and a spot request launch with."""
    settings: dict[str, Any] = {
        "ami": ami_id,
        "instance_type": args.instance_type,
        "subnet_id": args.subnet_id,
        "vpc_security_group_ids": list(args.security_group_ids),
        "iam_instance_profile": args.instance_profile,
        # IMDSv2 only (no unauthenticated IMDSv1 requests, which SSRF bugs exploit).
        "metadata_options": {
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": args.imds_hop_limit,
        },
        "root_block_device": {
            "volume_type": "gp3",
            "volume_size": args.root_volume_gib,
            "encrypted": True,
            "delete_on_termination": True,
        },
        "user_data": args.user_data,
        "monitoring": False,  # detailed monitoring is billed per metric; basic is enough here
        "tags": dict(tags),
    }
    if args.private_ip is not None:
        settings["private_ip"] = args.private_ip
    if BURSTABLE_PATTERN.match(args.instance_type):
        # "standard" credits: a busy burstable node slows down instead of billing surplus CPU
        # credits (T3 defaults to "unlimited"; https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/burstable-performance-instances-unlimited-mode.html).
        settings["credit_specification"] = {"cpu_credits": "standard"}
    return settings


def _instance_arn(parent: pulumi.Resource, instance_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """ARN of an instance from its id (the spot request resource exposes the id only)."""
    invoke = pulumi.InvokeOutputOptions(parent=parent)
    return pulumi.Output.all(
        aws.get_partition_output(opts=invoke).partition,
        aws.get_region_output(opts=invoke).region,
        aws.get_caller_identity_output(opts=invoke).account_id,
        instance_id,
    ).apply(lambda v: f"arn:{v[0]}:ec2:{v[1]}:{v[2]}:instance/{v[3]}")


class AwsK3sNode(pulumi.ComponentResource):
    """The instance (or spot request) and, for the control node, an Elastic IP."""

    instance: pulumi.CustomResource
    """The instance, or the spot request that owns it: what steps on the node depend on."""
    eip_association: aws.ec2.EipAssociation | None
    instance_id: pulumi.Output[str]
    instance_arn: pulumi.Output[str]
    public_ip: pulumi.Output[str]
    """The Elastic IP if the node has one, else the launch-time public IP (changes on stop)."""
    private_ip: pulumi.Output[str]

    def __init__(
        self, name: str, args: AwsK3sNodeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:K3sNode", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {"Role": args.role}

        if isinstance(args.ami, AmiQuery):
            ami_id: pulumi.Input[str] = aws.ec2.get_ami_output(
                most_recent=True,
                owners=list(args.ami.owners),
                filters=ami_filters(args.ami),
                opts=pulumi.InvokeOutputOptions(parent=self),
            ).id
        else:
            ami_id = args.ami

        settings = _instance_settings(args, ami_id, {**tags, "Name": f"{name}-instance"})
        if args.spot is None:
            # Tagged for cost allocation: a stopped GPU worker still bills its volume.
            settings["root_block_device"]["tags"] = {**tags, "Name": f"{name}-root"}
            instance = aws.ec2.Instance(
                f"{name}-instance",
                **settings,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    protect=args.protect,
                    ignore_changes=list(IGNORED_AFTER_LAUNCH),
                ),
            )
            self.instance = instance
            self.instance_id = instance.id
            self.instance_arn = instance.arn
            public_ip: pulumi.Output[str] = instance.public_ip
            self.private_ip = instance.private_ip
        else:
            spot = args.spot
            request = aws.ec2.SpotInstanceRequest(
                f"{name}-spot",
                **settings,
                spot_type=spot.request_type,
                instance_interruption_behavior=spot.interruption_behavior,
                spot_price=spot.max_price_usd_per_hour,
                valid_until=spot.valid_until if spot.request_type == "persistent" else None,
                # Fail the `up` (with the request's status) rather than leave an open request.
                wait_for_fulfillment=True,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    protect=args.protect,
                    ignore_changes=[*IGNORED_AFTER_LAUNCH, "validUntil"],
                ),
            )
            self.instance = request
            self.instance_id = request.spot_instance_id
            self.instance_arn = _instance_arn(self, request.spot_instance_id)
            public_ip = request.public_ip
            self.private_ip = request.private_ip
            # The request's tags stay on the request: tag what it launched (and its volume).
            instance_tags = {**args.cost_tags, **tags, "Name": f"{name}-instance"}
            volume_tags = {**args.cost_tags, **tags, "Name": f"{name}-root"}
            for key, value in sorted(instance_tags.items()):
                aws.ec2.Tag(
                    f"{name}-instance-tag-{key.lower()}",
                    resource_id=request.spot_instance_id,
                    key=key,
                    value=value,
                    opts=child,
                )
            for key, value in sorted(volume_tags.items()):
                aws.ec2.Tag(
                    f"{name}-root-tag-{key.lower()}",
                    resource_id=request.root_block_device.volume_id,
                    key=key,
                    value=value,
                    opts=child,
                )

        self.eip_association = None
        if args.elastic_ip:
            eip = aws.ec2.Eip(
                f"{name}-eip",
                domain="vpc",
                tags={**tags, "Name": f"{name}-eip"},
                # The lighthouse's address is in every node's Nebula static_host_map.
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
            # A separate association: the address survives a replacement of the instance, so
            # the Nebula static_host_map of every other node stays valid.
            self.eip_association = aws.ec2.EipAssociation(
                f"{name}-eip-assoc",
                allocation_id=eip.allocation_id,
                instance_id=self.instance_id,
                opts=child,
            )
            public_ip = eip.public_ip

        self.public_ip = public_ip
        self.register_outputs(
            {
                "instanceId": self.instance_id,
                "publicIp": self.public_ip,
                "privateIp": self.private_ip,
            }
        )
