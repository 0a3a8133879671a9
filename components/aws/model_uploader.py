"""ModelUploader: the one IAM role that may write the model bucket.

Ollama parses whatever the bucket holds on a GPU node with a path into the homelab, so who can
write it matters: the bucket policy (components/aws/model_bucket_policy.py) denies writes to every
principal but this role, and ``./dev models`` assumes it (the stack's ``modelUploaderRoleArn``,
tools/models/cli.py). Its trust names the principals that may assume it: those given in config,
else the account (``arn:aws:iam::<account>:root``: any principal of the account whose own IAM
policy allows ``sts:AssumeRole`` on this role,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-accounts).
Its own policy is what the ``models`` command needs on the models prefix: list, head/get,
put (multipart uploads included: UploadPart is authorised as ``s3:PutObject``), delete, abort.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.prefix_policy import prefix_access_policy

ROLE_TAG = "model-uploader"
# Role, user or account root ARNs only: a session ARN (sts::...:assumed-role/...) cannot be a
# trust principal (IAM docs, "Role session principals" are not valid in trust policies' AWS).
PRINCIPAL_ARN = re.compile(
    r"^arn:aws[a-z-]*:iam::\d{12}:(root|user/[\w+=,.@/-]+|role/[\w+=,.@/-]+)$"
)


def trust_policy(principals: Sequence[str]) -> str:
    if not principals:
        raise ValueError("the uploader role needs at least one principal to trust")
    for principal in principals:
        if not PRINCIPAL_ARN.match(principal):
            raise ValueError(f"'{principal}' is not an IAM role, user or account root ARN")
    document: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": sorted(principals)},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    return json.dumps(document, indent=2, sort_keys=True)


def upload_policy(bucket_arn: str, prefix: str) -> str:
    """Write access to one prefix of one bucket, and the listing the command needs."""
    return prefix_access_policy(
        bucket_arn,
        prefix,
        object_actions=[
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
            "s3:GetObject",
            "s3:PutObject",
        ],
        sids=("ListModelPrefix", "WriteModels"),
        what="models",
    )


@dataclass(frozen=True)
class ModelUploaderArgs:
    bucket_arn: pulumi.Input[str]
    prefix: str
    trusted_principals: pulumi.Input[Sequence[str]]
    """IAM ARNs allowed to assume the role (users, roles, or the account root)."""


class ModelUploader(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ModelUploaderArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:ModelUploader", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            description="hybridgpu: the only principal that may write the model bucket",
            assume_role_policy=pulumi.Output.from_input(args.trusted_principals).apply(
                lambda p: trust_policy(list(p))
            ),
            # An upload of a large model takes longer than the 1-hour default session; the
            # command refreshes credentials anyway (tools/models/cli.py).
            max_session_duration=4 * 3600,
            tags={"Name": f"{name}-role", "Role": ROLE_TAG},
            opts=child,
        )
        prefix = args.prefix
        aws.iam.RolePolicy(
            f"{name}-write",
            role=role.name,
            policy=pulumi.Output.from_input(args.bucket_arn).apply(
                lambda arn: upload_policy(arn, prefix)
            ),
            opts=child,
        )
        self.role_arn = role.arn
        self.register_outputs({"roleArn": self.role_arn})
