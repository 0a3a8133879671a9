"""One EC2 instance of the AWS k3s cluster: the control node (k3s server, Nebula lighthouse) or
the GPU worker (k3s agent), with its key pair and, for the control node, an Elastic IP.

Both kinds share the same hardening: IMDSv2 only, an encrypted gp3 root volume, user data that is
a secret (it embeds the k3s token), SSH with the configured key pair.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
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

    Caveat of persistent requests: deleting the instance may leave its spot request open, and
    an open request launches a new, unmanaged instance (hashicorp/terraform-provider-aws#38142,
    fix proposed in #41206). Cancel the request (``aws ec2 cancel-spot-instance-requests``) when
    destroying or replacing a persistent spot worker.
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
    """Name of the IAM instance profile (see ``components.node_iam.NodeRole``)."""
    ssh_public_key: str
    root_volume_gib: int
    user_data: pulumi.Input[str]
    """Rendered ``#cloud-config``; made secret here whatever the caller passes."""
    spot: SpotOptions | None = None
    """Spot market options; ``None`` runs on demand."""
    elastic_ip: bool = False
    """Give the node a stable public address (the Nebula lighthouse needs one)."""

    def __post_init__(self) -> None:
        if self.role not in ("control-node", "gpu-worker"):
            raise ValueError(f"role must be 'control-node' or 'gpu-worker', got '{self.role}'")
        if not 8 <= self.root_volume_gib <= 16384:
            raise ValueError(f"root_volume_gib {self.root_volume_gib} is outside 8..16384 (gp3)")
        if not self.security_group_ids:
            raise ValueError("security_group_ids is empty")


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


class AwsK3sNode(pulumi.ComponentResource):
    """Key pair + instance (+ Elastic IP and its association)."""

    instance: aws.ec2.Instance
    """Exposed so that steps on the node (the kubeconfig fetch) can depend on it."""
    eip_association: aws.ec2.EipAssociation | None
    instance_id: pulumi.Output[str]
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

        key = aws.ec2.KeyPair(
            f"{name}-key",
            key_name_prefix=f"hybridgpu-{args.role}-",
            public_key=args.ssh_public_key,
            tags={**tags, "Name": f"{name}-key"},
            opts=child,
        )

        extra: dict[str, Any] = {}
        if BURSTABLE_PATTERN.match(args.instance_type):
            # "standard" credits: a busy burstable node slows down instead of billing surplus
            # CPU credits (T3 defaults to "unlimited"; https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/burstable-performance-instances-unlimited-mode.html).
            extra["credit_specification"] = {"cpu_credits": "standard"}
        market = market_options(args.spot)
        if market is not None:
            extra["instance_market_options"] = market

        instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami_id,
            instance_type=args.instance_type,
            subnet_id=args.subnet_id,
            vpc_security_group_ids=list(args.security_group_ids),
            iam_instance_profile=args.instance_profile,
            key_name=key.key_name,
            # IMDSv2 only (no unauthenticated IMDSv1 requests, which SSRF bugs exploit). Hop
            # limit 2: pods sit one network hop behind the node, and the Mountpoint S3 CSI
            # driver v2 reads the instance role's credentials from IMDS inside a pod
            # (https://github.com/awslabs/mountpoint-s3-csi-driver/blob/main/docs/UPGRADING_TO_V2.md).
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 2,
            },
            root_block_device={
                "volume_type": "gp3",
                "volume_size": args.root_volume_gib,
                "encrypted": True,
                "delete_on_termination": True,
                # Tagged for cost allocation: a stopped GPU worker still bills its volume.
                "tags": {**tags, "Name": f"{name}-root"},
            },
            # The token makes the whole document a secret; wrap it whatever the caller passed.
            user_data=pulumi.Output.secret(args.user_data),
            # A user-data change stops and starts the instance (AWS cannot change it while it
            # runs); replacing it instead would throw away the node: the control node's k3s
            # datastore and lighthouse, the GPU worker's disk and cache. cloud-init applies user
            # data on the first boot only, so a change reaches a node only through a deliberate
            # `pulumi up --replace`.
            user_data_replace_on_change=False,
            monitoring=False,  # detailed monitoring is billed per metric; basic is enough here
            tags={**tags, "Name": f"{name}-instance"},
            **extra,
            opts=pulumi.ResourceOptions(
                parent=self,
                # A new AMI release must not replace a running node: the lookup above picks
                # the most recent image, which changes every few weeks. New AMIs apply to new
                # instances only. Market options force a replacement on any change; the
                # request's end date is only meaningful at launch, so a differently formatted
                # read-back must not replace the worker either.
                ignore_changes=["ami", "instanceMarketOptions.spotOptions.validUntil"],
            ),
        )

        public_ip: pulumi.Output[str] = instance.public_ip
        self.eip_association = None
        if args.elastic_ip:
            eip = aws.ec2.Eip(
                f"{name}-eip", domain="vpc", tags={**tags, "Name": f"{name}-eip"}, opts=child
            )
            # A separate association: the address survives a replacement of the instance, so
            # the Nebula static_host_map of every other node stays valid.
            self.eip_association = aws.ec2.EipAssociation(
                f"{name}-eip-assoc",
                allocation_id=eip.allocation_id,
                instance_id=instance.id,
                opts=child,
            )
            public_ip = eip.public_ip

        self.instance = instance
        self.instance_id = instance.id
        self.public_ip = public_ip
        self.private_ip = instance.private_ip
        self.register_outputs(
            {
                "instanceId": self.instance_id,
                "publicIp": self.public_ip,
                "privateIp": self.private_ip,
            }
        )
