"""IAM identity of one kind of AWS k3s node: a role EC2 can assume and its instance profile.

Least privilege: a node that reads models gets ``s3:ListBucket`` on the model bucket and
``s3:GetObject`` on its objects, nothing else (the read-only set Mountpoint for S3 needs,
https://github.com/awslabs/mountpoint-s3/blob/main/doc/CONFIGURATION.md#iam-permissions). Other
nodes get a role with no policy at all. Documents are built with ``json.dumps`` from the bucket
ARN (no ``getPolicyDocument`` invoke: one less provider round trip, and plain data to test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

# EC2 assumes the role on the instance's behalf (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html).
EC2_ASSUME_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    },
    indent=2,
    sort_keys=True,
)


def model_read_policy(bucket_arn: str) -> str:
    """Read-only access to one bucket: list it, get its objects."""
    if not bucket_arn.startswith("arn:") or "*" in bucket_arn or "/" in bucket_arn:
        raise ValueError(f"'{bucket_arn}' is not the ARN of one bucket")
    document: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListModelBucket",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
            },
            {
                "Sid": "ReadModels",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"{bucket_arn}/*",
            },
        ],
    }
    return json.dumps(document, indent=2, sort_keys=True)


@dataclass(frozen=True)
class NodeRoleArgs:
    role: str
    """Node kind (``control-node``, ``gpu-worker``): the ``Role`` cost tag."""
    model_bucket_arn: pulumi.Input[str] | None = None
    """Grant read-only access to this bucket; ``None`` grants no S3 access."""

    def __post_init__(self) -> None:
        if not self.role:
            raise ValueError("role must not be empty")


class NodeRole(pulumi.ComponentResource):
    """Role + instance profile (+ the model read policy when a bucket is given)."""

    role_name: pulumi.Output[str]
    instance_profile_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: NodeRoleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:NodeRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {"Role": args.role}

        role = aws.iam.Role(
            f"{name}-role",
            description=f"hybridgpu {args.role}: EC2 instance role",
            assume_role_policy=EC2_ASSUME_ROLE_POLICY,
            tags={**tags, "Name": f"{name}-role"},
            opts=child,
        )
        if args.model_bucket_arn is not None:
            aws.iam.RolePolicy(
                f"{name}-model-read",
                role=role.name,
                policy=pulumi.Output.from_input(args.model_bucket_arn).apply(model_read_policy),
                opts=child,
            )
        profile = aws.iam.InstanceProfile(
            f"{name}-profile",
            role=role.name,
            tags={**tags, "Name": f"{name}-profile"},
            opts=child,
        )

        self.role_name = role.name
        self.instance_profile_name = profile.name
        self.register_outputs(
            {"roleName": self.role_name, "instanceProfileName": self.instance_profile_name}
        )
