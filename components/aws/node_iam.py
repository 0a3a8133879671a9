"""IAM identity of one kind of AWS k3s node: a role EC2 can assume and its instance profile.

Least privilege:

* every node reads its own SSM path (``ssm:GetParameter*`` on ``parameter/<path>/*``): the files
  its agent pulls. Nothing else in Parameter Store; decryption uses the account's ``aws/ssm`` key,
  whose key policy admits use through SSM by the account's principals, so no KMS grant is needed.
* a node that reads models gets ``s3:ListBucket`` on the model bucket, limited by ``s3:prefix``
  to the models prefix, and ``s3:GetObject`` on that prefix only (the read-only set Mountpoint for
  S3 needs, https://github.com/awslabs/mountpoint-s3/blob/main/doc/CONFIGURATION.md#iam-permissions).

Documents are built with ``json.dumps`` (no ``getPolicyDocument`` invoke: one less provider
round trip, and plain data to test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.prefix_policy import prefix_access_policy

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


def model_read_policy(bucket_arn: str, prefix: str) -> str:
    """Read-only access to one prefix of one bucket: list it, get its objects."""
    return prefix_access_policy(
        bucket_arn,
        prefix,
        object_actions=["s3:GetObject"],
        sids=("ListModelPrefix", "ReadModels"),
        what="models",
    )


def parameter_read_policy(path_arn: str) -> str:
    """Read the node's own SSM parameters (``path_arn`` = ``arn:...:parameter/<path>``)."""
    if ":parameter/" not in path_arn or path_arn.endswith("/") or "*" in path_arn:
        raise ValueError(f"'{path_arn}' is not the ARN of one parameter path")
    document: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadOwnNodeFiles",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
                "Resource": [path_arn, f"{path_arn}/*"],
            }
        ],
    }
    return json.dumps(document, indent=2, sort_keys=True)


@dataclass(frozen=True)
class NodeRoleArgs:
    role: str
    """Node kind (``control-node``, ``gpu-worker``): the ``Role`` cost tag."""
    parameter_path_arn: pulumi.Input[str] | None = None
    """ARN of the node's SSM path (``arn:aws:ssm:<region>:<account>:parameter/<path>``)."""
    model_bucket_arn: pulumi.Input[str] | None = None
    """Grant read-only access to this bucket's ``model_prefix``; ``None`` grants no S3 access."""
    model_prefix: str = "ollama/"

    def __post_init__(self) -> None:
        if not self.role:
            raise ValueError("role must not be empty")


class NodeRole(pulumi.ComponentResource):
    """Role + instance profile (+ the model read policy when a bucket is given)."""

    role: aws.iam.Role
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
        if args.parameter_path_arn is not None:
            aws.iam.RolePolicy(
                f"{name}-node-files",
                role=role.name,
                policy=pulumi.Output.from_input(args.parameter_path_arn).apply(
                    parameter_read_policy
                ),
                opts=child,
            )
        if args.model_bucket_arn is not None:
            prefix = args.model_prefix
            aws.iam.RolePolicy(
                f"{name}-model-read",
                role=role.name,
                policy=pulumi.Output.from_input(args.model_bucket_arn).apply(
                    lambda arn: model_read_policy(arn, prefix)
                ),
                opts=child,
            )
        profile = aws.iam.InstanceProfile(
            f"{name}-profile",
            role=role.name,
            tags={**tags, "Name": f"{name}-profile"},
            opts=child,
        )

        self.role = role
        self.role_name = role.name
        self.instance_profile_name = profile.name
        self.register_outputs(
            {"roleName": self.role_name, "instanceProfileName": self.instance_profile_name}
        )
