"""``./dev backups`` (tools/backups.py) against a loopback moto S3 holding snapshots laid out as
k3s writes them (``<folder>/etcd-snapshot-<node>-<unix time>.zip`` plus ``<folder>/.metadata/``),
through the aws-gpu stack's outputs as the Pulumi CLI prints them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stacks.backups import ETCD_FOLDER
from stacks.outputs import AWS_GPU_OUTPUTS
from tests.moto_server import MotoServer
from tools import backups
from tools.offline import StackRun

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "hybridgpu-backups-test"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "server.log")
    server.create_bucket(BUCKET)
    s3 = server.client("s3")
    for node, size in (("k3s-cp-1", 2048), ("k3s-cp-2", 4096)):
        name = f"etcd-snapshot-{node}-1764669600.zip"
        s3.put_object(Bucket=BUCKET, Key=f"{ETCD_FOLDER}/{name}", Body=b"x" * size)
        s3.put_object(Bucket=BUCKET, Key=f"{ETCD_FOLDER}/.metadata/{name}", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="velero/unrelated", Body=b"y")
    yield server
    server.stop()


def fake_pulumi(bin_dir: Path, outputs: dict[str, object]) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "pulumi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(outputs)}\nEOF\n")
    script.chmod(0o755)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.backups", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(moto: MotoServer, tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    fake_pulumi(
        bin_dir,
        {"etcdBackup": {"bucket": BUCKET, "region": "us-west-2", "folder": ETCD_FOLDER}},
    )
    return moto.env() | {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def _uploaded(moto: MotoServer) -> datetime:
    head = moto.client("s3").head_object(
        Bucket=BUCKET, Key=f"{ETCD_FOLDER}/etcd-snapshot-k3s-cp-2-1764669600.zip"
    )
    return head["LastModified"]


def test_lists_snapshots_with_age_and_size_and_passes_when_fresh(
    moto: MotoServer, env: dict[str, str]
) -> None:
    now = _uploaded(moto) + timedelta(hours=7)
    result = run_cli("--schedule", "0 */6 * * *", "--now", now.isoformat(), env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = [line.split() for line in lines[1:3]]
    assert {r[0] for r in rows} == {
        "etcd-snapshot-k3s-cp-1-1764669600.zip",
        "etcd-snapshot-k3s-cp-2-1764669600.zip",
    }
    assert {r[1] for r in rows} == {"k3s-cp-1", "k3s-cp-2"}
    assert all(r[2] == "7h00m" for r in rows)
    assert {" ".join(r[3:]) for r in rows} == {"2.0 KiB", "4.0 KiB"}
    assert f"2 snapshot(s) in s3://{BUCKET}/{ETCD_FOLDER}/" in lines[-1]
    assert "12:00:00" in lines[-1]  # twice the 6 h schedule


def test_fails_when_the_newest_is_older_than_twice_the_schedule(
    moto: MotoServer, env: dict[str, str]
) -> None:
    now = _uploaded(moto) + timedelta(hours=12, minutes=1)
    result = run_cli("--schedule", "0 */6 * * *", "--now", now.isoformat(), env=env)
    assert result.returncode == 1
    assert "is 12h01m old, more than twice the schedule '0 */6 * * *'" in result.stderr
    # A daily schedule tolerates the same age.
    daily = run_cli("--schedule", "30 2 * * *", "--now", now.isoformat(), env=env)
    assert daily.returncode == 0, daily.stderr


def test_newest_prints_one_name_for_the_restore(moto: MotoServer, env: dict[str, str]) -> None:
    result = run_cli("--newest", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("etcd-snapshot-k3s-cp-")


def test_an_empty_folder_fails_naming_it(moto: MotoServer, tmp_path: Path) -> None:
    moto.create_bucket("empty-backups")
    bin_dir = tmp_path / "bin"
    fake_pulumi(
        bin_dir,
        {"etcdBackup": {"bucket": "empty-backups", "region": "us-west-2", "folder": "etcd"}},
    )
    result = run_cli(env=moto.env() | {"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert result.returncode == 1
    assert "no etcd snapshot in s3://empty-backups/etcd/" in result.stderr


def test_the_output_it_reads_is_in_the_contract_and_matches_the_stack(
    aws_gpu_run: StackRun,
) -> None:
    assert backups.OUTPUT in {spec.name for spec in AWS_GPU_OUTPUTS}
    target = aws_gpu_run.exports[backups.OUTPUT]
    assert target["folder"] == ETCD_FOLDER
    assert target["region"] == aws_gpu_run.exports["region"]
    assert target["bucket"].startswith("hybridgpu-backups-")


@pytest.mark.parametrize(
    ("cron", "hours"),
    [
        ("0 */6 * * *", 6),
        ("30 2 * * *", 24),
        ("0 0,12 * * *", 12),
        ("0 3 * * 0", 24 * 7),
        ("*/15 * * * *", 0.25),
        ("0 9 * * 1-5", 72),  # Friday 09:00 to Monday 09:00
    ],
)
def test_longest_interval_of_a_schedule(cron: str, hours: float) -> None:
    assert backups.longest_interval(cron) == timedelta(hours=hours)


def test_metadata_and_other_prefixes_are_not_snapshots() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    found = backups.snapshots(
        [
            {"Key": "etcd/.metadata/etcd-snapshot-a-1", "Size": 1, "LastModified": t},
            {"Key": "etcd/on-demand-k3s-cp-1-1764669600", "Size": 5, "LastModified": t},
        ],
        "etcd",
    )
    assert [(s.name, s.node) for s in found] == [("on-demand-k3s-cp-1-1764669600", "k3s-cp-1")]
