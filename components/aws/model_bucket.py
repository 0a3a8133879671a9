"""Private, encrypted, versioned S3 bucket for LLM model weights.

The GPU worker reads it (Mountpoint for S3 CSI driver, read-only); models are uploaded from an
operator machine with ``./dev models push`` (tools/models). Every setting is a separate
resource: in pulumi_aws 7 the inline ``Bucket`` arguments (versioning, encryption, lifecycle,
policy) are deprecated.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.private_bucket import private_bucket_settings

ROLE_TAG = "model-bucket"
# bucket_prefix is at most 37 characters (pulumi_aws s3.Bucket docs); we add one '-'.
MAX_NAME_PREFIX = 36


@dataclass(frozen=True)
class ModelBucketArgs:
    name_prefix: str
    """Start of the bucket name; AWS appends a unique suffix."""
    force_destroy: bool = False
    """Allow ``pulumi destroy`` to delete a non-empty bucket (and every model in it)."""
    noncurrent_version_expiration_days: int = 30
    """Overwritten or deleted model versions are kept this long, then expire."""
    abort_incomplete_upload_days: int = 7
    """Parts of an interrupted multipart upload (large model files) are removed after this."""
    directories: tuple[str, ...] = ()
    """Keys ending in ``/`` created empty, so these directories exist before any upload (a
    read-only mount of an empty prefix has nothing a program can create them in)."""

    def __post_init__(self) -> None:
        if not 1 <= len(self.name_prefix) <= MAX_NAME_PREFIX:
            raise ValueError(
                f"name_prefix '{self.name_prefix}' has {len(self.name_prefix)} characters; "
                f"S3 bucket prefixes allow at most {MAX_NAME_PREFIX} here"
            )
        if self.noncurrent_version_expiration_days < 1 or self.abort_incomplete_upload_days < 1:
            raise ValueError("lifecycle day counts must be at least 1")
        for directory in self.directories:
            if not directory.endswith("/") or directory.startswith("/"):
                raise ValueError(
                    f"directory key '{directory}' must end with '/' and not start with it"
                )


class ModelBucket(pulumi.ComponentResource):
    """The model bucket and its public-access block, ownership, encryption, versioning and
    lifecycle. Its policy names roles created after it: components/aws/model_bucket_policy.py."""

    bucket_name: pulumi.Output[str]
    bucket_id: pulumi.Output[str]
    arn: pulumi.Output[str]
    settled: list[pulumi.Resource]
    """What the bucket policy waits for: S3 rejects concurrent changes to one bucket's settings
    ("A conflicting conditional operation is in progress")."""
    directory_keys: tuple[str, ...]
    """The empty directory markers this component writes itself."""

    def __init__(
        self, name: str, args: ModelBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:ModelBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"{args.name_prefix}-",
            force_destroy=args.force_destroy,
            tags={"Name": f"{name}-bucket", "Role": ROLE_TAG},
            # The models are gigabytes uploaded by hand: a refactor or a stray destroy must not
            # take them (`pulumi state unprotect` first, on purpose).
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        settings = private_bucket_settings(name, bucket, child)
        public_access, ownership, versioning = (
            settings.public_access,
            settings.ownership,
            settings.versioning,
        )
        # Lifecycle after versioning, as AWS evaluates noncurrent-version rules against it
        # (https://www.pulumi.com/registry/packages/aws/api-docs/s3/bucketlifecycleconfiguration/).
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-noncurrent-and-abort-incomplete",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {
                        "noncurrent_days": args.noncurrent_version_expiration_days
                    },
                    "abort_incomplete_multipart_upload": {
                        "days_after_initiation": args.abort_incomplete_upload_days
                    },
                }
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        # Mountpoint shows a directory for every key prefix (awslabs/mountpoint-s3
        # doc/SEMANTICS.md, "Directories"), so an empty object `<dir>/` makes `<dir>` exist.
        markers = [
            aws.s3.BucketObjectv2(
                f"{name}-dir-{directory.rstrip('/').replace('/', '-')}",
                bucket=bucket.id,
                key=directory,
                content="",
                content_type="application/x-directory",
                tags={"Role": ROLE_TAG},
                opts=child,
            )
            for directory in args.directories
        ]
        # The name is handed out once the directories exist: nothing mounts the bucket before.
        self.bucket_name = pulumi.Output.all(bucket.bucket, *(m.key for m in markers)).apply(
            lambda values: values[0]
        )
        self.arn = bucket.arn
        self.bucket_id = bucket.id
        self.settled = [public_access, ownership]
        self.directory_keys = tuple(args.directories)
        self.register_outputs({"bucketName": self.bucket_name, "arn": self.arn})
