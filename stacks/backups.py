"""Off-site backups (issue #22): the aws-gpu stack's backup bucket and its two writer keys (etcd
snapshots, Velero), and what the homelab's servers and cluster get from them (k3s's etcd-s3
settings and the S3 config Secret; Velero with its storage location and schedules)."""

from __future__ import annotations

from typing import Any

import pulumi

from components.aws.backup_bucket import BackupBucket, BackupBucketArgs
from components.k3s.config import server_taints
from components.k3s.etcd_snapshots import EtcdSnapshots
from components.kube.charts import VELERO_PLUGIN_FOR_AWS_IMAGE
from components.platform.etcd_snapshot_store import EtcdSnapshotStore, EtcdSnapshotStoreArgs
from components.platform.velero import Velero, VeleroArgs, VeleroSchedule
from stacks.config import AwsSettings, HomelabSettings
from stacks.outputs import AwsGpuReference

ETCD_FOLDER = "etcd"
"""Folder of the homelab's etcd snapshots in the backup bucket (k3s etcd-s3-folder)."""
VELERO_FOLDER = "velero"
"""Velero's BackupStorageLocation prefix in the same bucket (velero/backups/<name>/...)."""


def aws_backups(settings: AwsSettings, opts: pulumi.ResourceOptions) -> dict[str, Any]:
    """The backup bucket and its writer; returns the stack outputs the homelab reads."""
    bucket_settings = settings.backups
    backups = BackupBucket(
        "backups",
        BackupBucketArgs(
            name_prefix=bucket_settings.name_prefix,
            etcd_folder=ETCD_FOLDER,
            velero_folder=VELERO_FOLDER,
            noncurrent_version_expiration_days=bucket_settings.noncurrent_version_expiration_days,
            force_destroy=bucket_settings.force_destroy,
        ),
        opts=opts,
    )
    region = settings.region
    velero = backups.velero
    assert velero is not None  # velero_folder is given
    return {
        "etcdBackup": backups.bucket_name.apply(
            lambda bucket: {
                "bucket": bucket,
                "region": region,
                "folder": ETCD_FOLDER,
                # The regional endpoint: k3s's default (s3.amazonaws.com) answers other regions
                # with a redirect.
                "endpoint": f"s3.{region}.amazonaws.com",
            }
        ),
        "etcdBackupAccessKeyId": backups.access_key_id,
        "etcdBackupSecretAccessKey": backups.secret_access_key,
        "veleroBackup": backups.bucket_name.apply(
            lambda bucket: {"bucket": bucket, "region": region, "prefix": VELERO_FOLDER}
        ),
        "veleroBackupAccessKeyId": velero.access_key_id,
        "veleroBackupSecretAccessKey": velero.secret_access_key,
    }


def etcd_snapshots(homelab: HomelabSettings) -> EtcdSnapshots | None:
    """The servers' snapshot settings (config.yaml); None when turned off."""
    etcd = homelab.backups.etcd
    if not etcd.enabled:
        return None
    return EtcdSnapshots(
        schedule_cron=etcd.schedule_cron, retention=etcd.retention, compress=etcd.compress
    )


def _fields(target: pulumi.Output[Any], *keys: str) -> list[pulumi.Output[Any]]:
    """The entries ``keys`` of a map-valued stack output, each as an output of its own."""
    return [target.apply(lambda t, key=key: t[key]) for key in keys]


def homelab_snapshot_store(
    homelab: HomelabSettings, aws_gpu: AwsGpuReference, opts: pulumi.ResourceOptions
) -> EtcdSnapshotStore | None:
    """The S3 config Secret in the homelab cluster, from the aws-gpu stack's outputs."""
    if not homelab.backups.etcd.enabled:
        return None
    bucket, region, folder, endpoint = _fields(
        aws_gpu.require("etcdBackup"), "bucket", "region", "folder", "endpoint"
    )
    return EtcdSnapshotStore(
        "etcd-snapshot-store",
        EtcdSnapshotStoreArgs(
            bucket=bucket,
            region=region,
            folder=folder,
            endpoint=endpoint,
            access_key_id=aws_gpu.require("etcdBackupAccessKeyId"),
            secret_access_key=aws_gpu.require("etcdBackupSecretAccessKey"),
        ),
        opts=opts,
    )


def velero_schedules(homelab: HomelabSettings) -> list[VeleroSchedule]:
    return [
        VeleroSchedule(
            name=s.name,
            cron=s.schedule_cron,
            retention_days=s.retention_days,
            namespaces=s.namespaces,
        )
        for s in homelab.backups.velero.schedules
    ]


def homelab_velero(
    homelab: HomelabSettings,
    aws_gpu: AwsGpuReference,
    opts: pulumi.ResourceOptions,
) -> Velero | None:
    """Velero in the homelab cluster, writing to the aws-gpu stack's bucket with its own key."""
    if not homelab.backups.velero.enabled:
        return None
    bucket, region, prefix = _fields(aws_gpu.require("veleroBackup"), "bucket", "region", "prefix")
    return Velero(
        "velero",
        VeleroArgs(
            bucket=bucket,
            region=region,
            prefix=prefix,
            access_key_id=aws_gpu.require("veleroBackupAccessKeyId"),
            secret_access_key=aws_gpu.require("veleroBackupSecretAccessKey"),
            schedules=velero_schedules(homelab),
            plugin_image=VELERO_PLUGIN_FOR_AWS_IMAGE,
            node_taints=server_taints(),
        ),
        opts=opts,
    )
