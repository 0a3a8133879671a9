"""The settings every bucket of the stack gets (pure wiring, no component): public access
blocked, ACLs off (the owner owns every object, access by policy only), SSE-S3, versioning.

SSE-S3 (AES256) rather than SSE-KMS: S3 bills nothing per request for it (KMS bills a call per
GET, and Mountpoint reads model files in many ranged GETs), readers need no ``kms:Decrypt``, and
the AWS-managed ``aws/s3`` key would add cost without adding control (its key policy cannot be
narrowed). ``bucket_key_enabled`` has no effect with SSE-S3; it is set so that a switch to
aws:kms keeps KMS request costs low
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-key.html).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class PrivateBucketSettings:
    public_access: aws.s3.BucketPublicAccessBlock
    ownership: aws.s3.BucketOwnershipControls
    versioning: aws.s3.BucketVersioning


def private_bucket_settings(
    name: str, bucket: aws.s3.Bucket, opts: pulumi.ResourceOptions
) -> PrivateBucketSettings:
    """``<name>-public-access``, ``-ownership``, ``-encryption`` and ``-versioning`` of
    ``bucket``, as children of ``opts.parent`` (the calling component)."""
    public_access = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    ownership = aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        opts=opts,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption",
        bucket=bucket.id,
        rules=[
            {
                "apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"},
                "bucket_key_enabled": True,
            }
        ],
        opts=opts,
    )
    versioning = aws.s3.BucketVersioning(
        f"{name}-versioning",
        bucket=bucket.id,
        versioning_configuration={"status": "Enabled"},
        opts=opts,
    )
    return PrivateBucketSettings(public_access, ownership, versioning)
