"""A backup bucket as the homelab fills it, on a loopback moto S3: etcd snapshots laid out as k3s
writes them (``<folder>/etcd-snapshot-<node>-<unix time>.zip`` plus ``<folder>/.metadata/``) and
Velero backups as its object store layout has them (``velero/backups/<name>/velero-backup.json``
and the backup's other files, vmware-tanzu/velero pkg/persistence/object_store_layout.go@v1.18.1),
and a fake ``pulumi`` CLI answering ``stack output --json`` per stack, for the ``./dev backups``
and ``./dev restore`` tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stacks.backups import ETCD_FOLDER, VELERO_FOLDER
from tests.moto_server import MotoServer

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "hybridgpu-backups-test"
SNAPSHOTS = {"k3s-cp-1": 2048, "k3s-cp-2": 4096}
SNAPSHOT_TIME = 1764669600


def snapshot_name(node: str) -> str:
    return f"etcd-snapshot-{node}-{SNAPSHOT_TIME}.zip"


def put_velero_backup(
    server: MotoServer,
    name: str,
    *,
    schedule: str,
    finished: datetime,
    phase: str = "Completed",
    namespaces: tuple[str, ...] = ("jupyterhub", "open-webui", "monitoring"),
    bucket: str = BUCKET,
) -> None:
    """One backup's files: its Backup object and tarball (1 KiB) and logs (512 B)."""
    backup: dict[str, Any] = {
        "apiVersion": "velero.io/v1",
        "kind": "Backup",
        "metadata": {
            "name": name,
            "namespace": "velero",
            "labels": {"velero.io/schedule-name": schedule},
        },
        "spec": {"includedNamespaces": list(namespaces), "ttl": "336h0m0s"},
        "status": {
            "phase": phase,
            "completionTimestamp": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    s3 = server.client("s3")
    root = f"{VELERO_FOLDER}/backups/{name}"
    s3.put_object(Bucket=bucket, Key=f"{root}/velero-backup.json", Body=json.dumps(backup))
    s3.put_object(Bucket=bucket, Key=f"{root}/{name}.tar.gz", Body=b"t" * 1024)
    s3.put_object(Bucket=bucket, Key=f"{root}/{name}-logs.gz", Body=b"l" * 512)


def fill(server: MotoServer) -> datetime:
    """Two snapshots, the Velero backups of both example schedules and a failed newer one;
    returns when the snapshots were uploaded (moto's LastModified)."""
    server.create_bucket(BUCKET)
    s3 = server.client("s3")
    for node, size in SNAPSHOTS.items():
        name = snapshot_name(node)
        s3.put_object(Bucket=BUCKET, Key=f"{ETCD_FOLDER}/{name}", Body=b"x" * size)
        s3.put_object(Bucket=BUCKET, Key=f"{ETCD_FOLDER}/.metadata/{name}", Body=b"{}")
    head = s3.head_object(Bucket=BUCKET, Key=f"{ETCD_FOLDER}/{snapshot_name('k3s-cp-2')}")
    uploaded: datetime = head["LastModified"]
    for days, name in ((1, "daily-20261130030000"), (0, "daily-20261201030000")):
        finished = uploaded - timedelta(days=days, hours=1)
        put_velero_backup(server, name, schedule="daily", finished=finished)
    put_velero_backup(
        server, "weekly-20261129040000", schedule="weekly", finished=uploaded - timedelta(days=2)
    )
    # Newer, but failed: never the one to restore from, and no proof of freshness.
    put_velero_backup(
        server,
        "daily-20261201150000",
        schedule="daily",
        finished=uploaded - timedelta(minutes=5),
        phase="PartiallyFailed",
    )
    # A half-written backup (no velero-backup.json yet) is not listed, nor kopia's data.
    s3.put_object(Bucket=BUCKET, Key=f"{VELERO_FOLDER}/backups/running/running.tar.gz", Body=b"r")
    s3.put_object(
        Bucket=BUCKET, Key=f"{VELERO_FOLDER}/kopia/jupyterhub/kopia.repository", Body=b"k"
    )
    return uploaded


@pytest.fixture(scope="module")
def backup_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server holding the filled bucket, one per test module (a pytest plugin fixture:
    tests/conftest.py)."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "server.log")
    fill(server)
    yield server
    server.stop()


def aws_outputs(bucket: str = BUCKET) -> dict[str, Any]:
    return {
        "etcdBackup": {
            "bucket": bucket,
            "region": "us-west-2",
            "folder": ETCD_FOLDER,
            "endpoint": "s3.us-west-2.amazonaws.com",
        },
        "etcdBackupAccessKeyId": "AKIAETCDWRITER",
        "etcdBackupSecretAccessKey": "etcd-writer-secret",
        "veleroBackup": {"bucket": bucket, "region": "us-west-2", "prefix": VELERO_FOLDER},
    }


def fake_pulumi(bin_dir: Path, outputs: dict[str, dict[str, Any]]) -> None:
    """A ``pulumi`` that prints ``outputs[<--stack>]`` as ``stack output --json`` does (one
    output when its name is given, as ``pulumi stack output NAME --json``)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for stack, values in outputs.items():
        (bin_dir / f"outputs-{stack}.json").write_text(json.dumps(values))
    script = bin_dir / "pulumi"
    script.write_text(
        "#!/bin/sh\n"
        'dir=$(dirname "$0"); stack=""\n'
        'while [ $# -gt 0 ]; do [ "$1" = --stack ] && stack=$2; shift; done\n'
        'cat "$dir/outputs-$stack.json"\n'
    )
    script.chmod(0o755)


def run_module(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
