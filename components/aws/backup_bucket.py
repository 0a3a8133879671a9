"""Off-site store of the homelab's etcd snapshots: a private, encrypted, versioned S3 bucket and
an IAM user whose only rights are the snapshots' prefix in it.

k3s's etcd-s3 client authenticates with an access key or, without one, the AWS credential chain
of the machine (k3s-io/k3s pkg/etcd/s3/s3.go@v1.33.5+k3s1: static, file, then EC2 instance
metadata). A Proxmox VM has no instance profile, so the homelab needs a static key: this user's,
kept secret in the aws-gpu stack and replaced with ``pulumi up --replace`` on its access key.

What the key can do (:func:`writer_policy`): list the bucket only under the prefix (k3s lists
``<folder>`` and ``<folder>/etcd-snapshot-<node>`` to prune; its bucket check is a HeadBucket,
which S3 authorises as ``s3:ListBucket`` without a prefix, hence ``IfExists``), and put, get and
delete objects under ``<prefix>/``. It has no ``s3:DeleteObjectVersion``: with versioning on, a
delete (k3s's retention, or a stolen key) only adds a delete marker, and the data stays as a
noncurrent version until the lifecycle rule expires it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.model_bucket_policy import tls_only_policy
from components.aws.private_bucket import private_bucket_settings

ROLE_TAG = "backups"


@dataclass(frozen=True)
class BackupBucketArgs:
    name_prefix: str
    etcd_folder: str = "etcd"
    """k3s's ``etcd-s3-folder``: snapshots are ``<folder>/etcd-snapshot-<node>-<time>``."""
    noncurrent_version_expiration_days: int = 30
    force_destroy: bool = False

    def __post_init__(self) -> None:
        if not self.etcd_folder or "/" in self.etcd_folder.strip("/") or "*" in self.etcd_folder:
            raise ValueError(f"etcd_folder '{self.etcd_folder}' must be one path segment")
        if self.noncurrent_version_expiration_days < 1:
            raise ValueError("noncurrent_version_expiration_days must be at least 1")


def writer_policy(bucket_arn: str, folder: str) -> str:
    """The backup writer's only rights: the snapshots under ``folder/`` in this bucket."""
    document: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListTheSnapshotFolderOnly",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [bucket_arn],
                "Condition": {"StringLikeIfExists": {"s3:prefix": [folder, f"{folder}/*"]}},
            },
            {
                "Sid": "ReadWriteSnapshots",
                "Effect": "Allow",
                "Action": [
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [f"{bucket_arn}/{folder}/*"],
            },
        ],
    }
    return json.dumps(document, indent=2, sort_keys=True)


class BackupBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    arn: pulumi.Output[str]
    access_key_id: pulumi.Output[str]
    secret_access_key: pulumi.Output[str]
    """Secret."""

    def __init__(
        self, name: str, args: BackupBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:BackupBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"{args.name_prefix}-",
            force_destroy=args.force_destroy,
            tags={"Name": f"{name}-bucket", "Role": ROLE_TAG},
            opts=child,
        )
        settings = private_bucket_settings(name, bucket, child)
        public_access, ownership, versioning = (
            settings.public_access,
            settings.ownership,
            settings.versioning,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-pruned-snapshots",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {
                        "noncurrent_days": args.noncurrent_version_expiration_days
                    },
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                },
                {
                    "id": "remove-expired-delete-markers",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"expired_object_delete_marker": True},
                },
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(tls_only_policy),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access, ownership]),
        )
        writer = aws.iam.User(
            f"{name}-writer",
            path="/hybridgpu/",
            tags={"Role": ROLE_TAG},
            opts=child,
        )
        aws.iam.UserPolicy(
            f"{name}-writer-policy",
            user=writer.name,
            policy=bucket.arn.apply(lambda arn: writer_policy(arn, args.etcd_folder)),
            opts=child,
        )
        key = aws.iam.AccessKey(f"{name}-writer-key", user=writer.name, opts=child)
        self.bucket_name = bucket.bucket
        self.arn = bucket.arn
        self.access_key_id = key.id
        self.secret_access_key = pulumi.Output.secret(key.secret)
        self.register_outputs({"bucketName": self.bucket_name, "arn": self.arn})
