"""Where the homelab's k3s servers copy their etcd snapshots: the S3 config Secret k3s reads at
every snapshot (components/k3s/etcd_snapshots.py), filled from the aws-gpu stack's backup bucket
and writer key."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.k3s.etcd_snapshots import render_s3_config_secret
from components.kube.objects import declare


@dataclass(frozen=True)
class EtcdSnapshotStoreArgs:
    bucket: pulumi.Input[str]
    region: pulumi.Input[str]
    folder: pulumi.Input[str]
    endpoint: pulumi.Input[str]
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Input[str]
    """Secret."""


class EtcdSnapshotStore(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: EtcdSnapshotStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:EtcdSnapshotStore", name, None, opts)
        manifest = render_s3_config_secret(
            bucket=args.bucket,
            region=args.region,
            folder=args.folder,
            endpoint=args.endpoint,
            access_key_id=args.access_key_id,
            secret_access_key=pulumi.Output.secret(args.secret_access_key),
        )
        self.secret = declare(f"{name}-s3-config", manifest, pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
