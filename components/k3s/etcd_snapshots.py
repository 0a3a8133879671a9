"""k3s's scheduled etcd snapshots, copied to S3 (pure). Option names as documented for the
pinned release (k3s-io/docs docs/cli/etcd-snapshot.md; flags in k3s-io/k3s
pkg/cli/cmds/server.go@v1.33.5+k3s1): every server snapshots on ``etcd-snapshot-schedule-cron``,
keeps ``etcd-snapshot-retention`` of its own snapshots locally and in S3, and reads its S3
target and credentials from the Secret named by ``etcd-s3-config-secret`` in kube-system
("S3 Configuration Secret Support", k3s >= v1.30.4). That Secret is read at every snapshot, so a
rotated key needs no k3s restart, and no credential is in config.yaml or a command line. A
restore cannot use it (the API is down then): the restore runbook passes the same values as
``--etcd-s3-*`` flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

S3_CONFIG_SECRET = "k3s-etcd-snapshot-s3-config"  # noqa: S105 - a Secret name
S3_CONFIG_SECRET_TYPE = "etcd.k3s.cattle.io/s3-config-secret"  # noqa: S105 - a type
SNAPSHOT_NAME = "etcd-snapshot"
"""k3s's base name of scheduled snapshots: ``etcd-snapshot-<node>-<unix time>[.zip]``."""


@dataclass(frozen=True)
class EtcdSnapshots:
    schedule_cron: str
    retention: int
    compress: bool = True

    def __post_init__(self) -> None:
        if self.retention < 1:
            raise ValueError(f"retention {self.retention}: keep at least one snapshot")
        if len(self.schedule_cron.split()) != 5:
            raise ValueError(f"schedule '{self.schedule_cron}' is not a 5-field cron line")


def etcd_snapshot_config(snapshots: EtcdSnapshots) -> dict[str, Any]:
    """The server config.yaml keys. Only ``etcd-s3`` and ``etcd-s3-config-secret`` of the S3
    options: with any other one set, k3s ignores the Secret."""
    return {
        "etcd-snapshot-schedule-cron": snapshots.schedule_cron,
        "etcd-snapshot-retention": snapshots.retention,
        "etcd-snapshot-compress": snapshots.compress,
        "etcd-s3": True,
        "etcd-s3-config-secret": S3_CONFIG_SECRET,
    }


def render_s3_config_secret(
    *,
    bucket: pulumi.Input[str],
    region: pulumi.Input[str],
    folder: pulumi.Input[str],
    endpoint: pulumi.Input[str],
    access_key_id: pulumi.Input[str],
    secret_access_key: pulumi.Input[str],
) -> dict[str, Any]:
    """The kube-system Secret k3s reads its S3 settings from (keys = the etcd-s3-* flags)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": S3_CONFIG_SECRET, "namespace": "kube-system"},
        "type": S3_CONFIG_SECRET_TYPE,
        "stringData": {
            "etcd-s3-endpoint": endpoint,
            "etcd-s3-region": region,
            "etcd-s3-bucket": bucket,
            "etcd-s3-folder": folder,
            "etcd-s3-access-key": access_key_id,
            "etcd-s3-secret-key": secret_access_key,
        },
    }
