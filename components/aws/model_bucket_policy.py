"""ModelBucketPolicy: the model bucket's policy, set once the roles it names exist.

* TLS only (https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html).
* Writes only by the uploader role: ``s3:PutObject`` (also what CopyObject and multipart parts are
  authorised as), ``s3:DeleteObject`` and ``s3:DeleteObjectVersion`` are denied to every principal
  whose ``aws:PrincipalArn`` is not the uploader role (for an assumed-role session that key is the
  role's ARN, https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn).
  An explicit deny beats any allow, so an administrator's ``s3:*`` does not write models either.
  The empty directory markers the stack itself keeps (``ollama/``, ...) are left out
  (``NotResource``), so Pulumi can still create and delete them; they hold no model bytes.
  The policy itself is not locked (no deny on ``s3:PutBucketPolicy``): that would lock Pulumi
  out of its own bucket.
* Node reads only through the VPC's S3 gateway endpoint: the reader roles' ``s3:GetObject`` and
  ``s3:ListBucket`` are denied unless ``aws:sourceVpce`` is the endpoint, so the node role's
  credentials read nothing from outside the VPC.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

WRITE_ACTIONS = ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObject")
READ_ACTIONS = ("s3:GetObject", "s3:ListBucket")


def insecure_transport_denial(bucket_arn: str) -> dict[str, Any]:
    """The statement that denies every request not made over TLS (any bucket of the stack)."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def tls_only_policy(bucket_arn: str) -> str:
    """A bucket policy of that statement alone (the backup bucket's)."""
    document = {"Version": "2012-10-17", "Statement": [insecure_transport_denial(bucket_arn)]}
    return json.dumps(document, indent=2, sort_keys=True)


def bucket_policy(
    bucket_arn: str,
    *,
    uploader_role_arn: str,
    reader_role_arns: Sequence[str] = (),
    vpc_endpoint_id: str | None = None,
    stack_keys: Sequence[str] = (),
) -> str:
    """The bucket policy document (pure, so the tests read exactly what AWS gets)."""
    if not uploader_role_arn.startswith("arn:") or ":role/" not in uploader_role_arn:
        raise ValueError(f"'{uploader_role_arn}' is not an IAM role ARN")
    if reader_role_arns and not vpc_endpoint_id:
        raise ValueError("reader roles are restricted to a VPC endpoint: give its id")
    objects = f"{bucket_arn}/*"
    write: dict[str, Any] = {
        "Sid": "OnlyTheUploaderRoleWrites",
        "Effect": "Deny",
        "Principal": "*",
        "Action": list(WRITE_ACTIONS),
        "Condition": {"ArnNotEquals": {"aws:PrincipalArn": uploader_role_arn}},
    }
    if stack_keys:
        write["NotResource"] = sorted(f"{bucket_arn}/{k}" for k in stack_keys)
    else:
        write["Resource"] = objects
    statements: list[dict[str, Any]] = [insecure_transport_denial(bucket_arn), write]
    if reader_role_arns:
        statements.append(
            {
                "Sid": "NodesReadOnlyThroughTheVpcEndpoint",
                "Effect": "Deny",
                "Principal": "*",
                "Action": list(READ_ACTIONS),
                "Resource": [bucket_arn, objects],
                "Condition": {
                    "ArnEquals": {"aws:PrincipalArn": sorted(reader_role_arns)},
                    "StringNotEquals": {"aws:sourceVpce": vpc_endpoint_id},
                },
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, indent=2, sort_keys=True)


@dataclass(frozen=True)
class ModelBucketPolicyArgs:
    bucket_id: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    uploader_role_arn: pulumi.Input[str]
    reader_role_arns: Sequence[pulumi.Input[str]] = ()
    vpc_endpoint_id: pulumi.Input[str] | None = None
    stack_keys: Sequence[str] = field(default_factory=tuple)
    """Keys the stack writes itself (directory markers): left out of the write deny."""
    moved_from: pulumi.Resource | None = None
    """The ModelBucket the policy was a child of before: aliased, so it is not replaced."""


class ModelBucketPolicy(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: ModelBucketPolicyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:ModelBucketPolicy", name, None, opts)
        keys = tuple(args.stack_keys)
        document = pulumi.Output.all(
            args.bucket_arn,
            args.uploader_role_arn,
            args.vpc_endpoint_id,
            *args.reader_role_arns,
        ).apply(
            lambda v: bucket_policy(
                v[0],
                uploader_role_arn=v[1],
                vpc_endpoint_id=v[2],
                reader_role_arns=v[3:],
                stack_keys=keys,
            )
        )
        # The name it had as a child of ModelBucket (TLS only then): the alias keeps it the same
        # resource, updated in place rather than deleted and created (a moment with no policy).
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=args.bucket_id,
            policy=document,
            opts=pulumi.ResourceOptions(
                parent=self,
                aliases=[pulumi.Alias(parent=args.moved_from)] if args.moved_from else None,
            ),
        )
        self.register_outputs({})
