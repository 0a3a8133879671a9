"""Off-site store of the homelab's backups: a private, encrypted, versioned S3 bucket, an IAM
user whose only rights are the etcd snapshots' prefix in it, and (with Velero on) a second user
whose only rights are Velero's prefix. Two users, not one with both folders: a key found on a
k3s server (the etcd Secret in kube-system) cannot touch Velero's backups, and Velero's key (in
its own namespace) cannot touch the snapshots a full restore needs.

k3s's etcd-s3 client authenticates with an access key or, without one, the AWS credential chain
of the machine (k3s-io/k3s pkg/etcd/s3/s3.go@v1.33.5+k3s1: static, file, then EC2 instance
metadata). A Proxmox VM has no instance profile, so the homelab needs a static key: this user's,
kept secret in the aws-gpu stack and replaced with ``pulumi up --replace`` on its access key.

What the key can do (:func:`writer_policy`): list the bucket only under the prefix (k3s lists
``<folder>`` and ``<folder>/etcd-snapshot-<node>`` to prune; its bucket check is a HeadBucket,
which S3 authorises as ``s3:ListBucket`` without a prefix, hence ``IfExists``), and put, get and
delete objects under ``<prefix>/``. It has no ``s3:DeleteObjectVersion``: with versioning on, a
delete (k3s's retention, or a stolen key) only adds a delete marker, and the data stays as a
noncurrent version until the lifecycle rule expires it. Velero's key
(:func:`velero_writer_policy`) has the same object rights on ``<velero folder>/`` (Velero prunes
expired backups itself, hence DeleteObject), the listing under that folder only, and no
HeadBucket (see VELERO_OBJECT_ACTIONS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.model_bucket_policy import tls_only_policy
from components.aws.prefix_policy import prefix_access_policy
from components.aws.private_bucket import private_bucket_settings

ROLE_TAG = "backups"


@dataclass(frozen=True)
class BackupBucketArgs:
    name_prefix: str
    etcd_folder: str = "etcd"
    """k3s's ``etcd-s3-folder``: snapshots are ``<folder>/etcd-snapshot-<node>-<time>``."""
    velero_folder: str | None = None
    """Velero's BackupStorageLocation prefix; a second writer (Velero's) gets only this folder.
    ``None``: no Velero writer."""
    noncurrent_version_expiration_days: int = 30
    force_destroy: bool = False

    def __post_init__(self) -> None:
        for field, folder in (
            ("etcd_folder", self.etcd_folder),
            ("velero_folder", self.velero_folder),
        ):
            if folder is not None and (not folder or "/" in folder or "*" in folder):
                raise ValueError(f"{field} '{folder}' must be one path segment")
        if self.velero_folder == self.etcd_folder:
            raise ValueError("velero_folder must differ from etcd_folder (one writer per folder)")
        if self.noncurrent_version_expiration_days < 1:
            raise ValueError("noncurrent_version_expiration_days must be at least 1")


ETCD_OBJECT_ACTIONS = (
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
# The S3 calls of Velero's AWS object store (vmware-tanzu/velero-plugin-for-aws
# velero-plugin-for-aws/object_store.go@v1.14.0-rc.1: Put/Get/Delete/List, multipart uploads)
# and the plugin's documented S3 set (README.md@v1.14.0-rc.1) less s3:PutObjectTagging (only
# for the BSL's "tagging" option, unused here). With the region in the BSL config the plugin
# never asks S3 for the bucket's region (GetBucketRegion, a HeadBucket), so its listing needs a
# prefix every time.
VELERO_OBJECT_ACTIONS = ETCD_OBJECT_ACTIONS


def writer_policy(bucket_arn: str, folder: str) -> str:
    """The etcd writer's only rights: the snapshots under ``folder/`` in this bucket."""
    return prefix_access_policy(
        bucket_arn,
        f"{folder}/",
        object_actions=ETCD_OBJECT_ACTIONS,
        sids=("ListTheSnapshotFolderOnly", "ReadWriteSnapshots"),
        what="etcd",
        list_bare_folder=True,
        head_bucket=True,
    )


def velero_writer_policy(bucket_arn: str, folder: str) -> str:
    """Velero's only rights: its backups, restores and kopia repositories under ``folder/``."""
    return prefix_access_policy(
        bucket_arn,
        f"{folder}/",
        object_actions=VELERO_OBJECT_ACTIONS,
        sids=("ListTheVeleroFolderOnly", "ReadWriteVeleroBackups"),
        what="velero",
        # The file-system backups' kopia repository checks the bucket on every connect
        # (kopia/kopia repo/blob/s3/s3_storage.go: BucketExists, a HeadBucket, which S3
        # authorises as a prefix-less s3:ListBucket); without it no volume is ever copied.
        head_bucket=True,
    )


@dataclass(frozen=True)
class WriterKey:
    access_key_id: pulumi.Output[str]
    secret_access_key: pulumi.Output[str]
    """Secret."""


def _writer(
    name: str,
    bucket: aws.s3.Bucket,
    policy: Callable[[str], str],
    child: pulumi.ResourceOptions,
) -> WriterKey:
    """An IAM user with one inline policy and one access key (kept secret)."""
    writer = aws.iam.User(name, path="/hybridgpu/", tags={"Role": ROLE_TAG}, opts=child)
    aws.iam.UserPolicy(
        f"{name}-policy", user=writer.name, policy=bucket.arn.apply(policy), opts=child
    )
    key = aws.iam.AccessKey(f"{name}-key", user=writer.name, opts=child)
    return WriterKey(key.id, pulumi.Output.secret(key.secret))


class BackupBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    arn: pulumi.Output[str]
    access_key_id: pulumi.Output[str]
    secret_access_key: pulumi.Output[str]
    """Secret."""
    velero: WriterKey | None
    """Velero's writer (its own user: only the Velero folder, and no etcd snapshot)."""

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
        etcd_folder, velero_folder = args.etcd_folder, args.velero_folder
        etcd = _writer(f"{name}-writer", bucket, lambda arn: writer_policy(arn, etcd_folder), child)
        self.velero = (
            _writer(
                f"{name}-velero-writer",
                bucket,
                lambda arn: velero_writer_policy(arn, velero_folder),
                child,
            )
            if velero_folder is not None
            else None
        )
        self.bucket_name = bucket.bucket
        self.arn = bucket.arn
        self.access_key_id = etcd.access_key_id
        self.secret_access_key = etcd.secret_access_key
        self.register_outputs({"bucketName": self.bucket_name, "arn": self.arn})
