"""``./dev backups`` (tools/backups.py) against a loopback moto S3 holding etcd snapshots and
Velero backups as k3s and Velero write them (tests/backup_store.py), through the aws-gpu stack's
outputs as the Pulumi CLI prints them."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stacks.backups import ETCD_FOLDER
from stacks.outputs import AWS_GPU_OUTPUTS
from tests.backup_store import BUCKET, aws_outputs, fake_pulumi, run_module, snapshot_name
from tests.moto_server import MotoServer
from tools import backups
from tools.offline import StackRun


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_module("tools.backups", *args, env=env)


@pytest.fixture
def env(backup_s3: MotoServer, tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    fake_pulumi(bin_dir, {"aws-gpu": aws_outputs()})
    return backup_s3.env() | {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def _uploaded(backup_s3: MotoServer) -> datetime:
    head = backup_s3.client("s3").head_object(
        Bucket=BUCKET, Key=f"{ETCD_FOLDER}/{snapshot_name('k3s-cp-2')}"
    )
    return head["LastModified"]


def test_lists_snapshots_with_age_and_size_and_passes_when_fresh(
    backup_s3: MotoServer, env: dict[str, str]
) -> None:
    now = _uploaded(backup_s3) + timedelta(hours=7)
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
    (summary,) = [line for line in lines if "snapshot(s) in" in line]
    assert f"2 snapshot(s) in s3://{BUCKET}/{ETCD_FOLDER}/" in summary
    assert "12:00:00" in summary  # twice the 6 h schedule


def test_lists_velero_backups_with_schedule_phase_age_and_size(
    backup_s3: MotoServer, env: dict[str, str]
) -> None:
    now = _uploaded(backup_s3) + timedelta(hours=7)
    result = run_cli("--now", now.isoformat(), env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("velero backup"))
    rows = [line.split() for line in lines[start + 1 : -1]]
    # Newest first; the half-written one (no velero-backup.json) and kopia's data are not listed.
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("daily-20261201150000", "daily", "PartiallyFailed", "7h05m"),
        ("daily-20261201030000", "daily", "Completed", "8h00m"),
        ("daily-20261130030000", "daily", "Completed", "1d08h"),
        ("weekly-20261129040000", "weekly", "Completed", "2d07h"),
    ]
    # A backup's size is all its files (Backup object, tarball, logs), not the kopia data.
    listing = backup_s3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="velero/backups/")
    for row in rows:
        files = [o for o in listing["Contents"] if o["Key"].split("/")[2] == row[0]]
        assert len(files) == 3
        assert " ".join(row[4:]) == backups.human_size(sum(o["Size"] for o in files))
    assert lines[-1] == f"4 Velero backup(s) in s3://{BUCKET}/velero/backups/"


def test_fails_when_a_velero_schedule_has_no_recent_completed_backup(
    backup_s3: MotoServer, env: dict[str, str]
) -> None:
    """Daily runs at 03:00: its newest completed backup may be at most 48 h old. A newer but
    PartiallyFailed one does not count. A monthly etcd schedule keeps the snapshots fresh."""
    uploaded = _uploaded(backup_s3)
    monthly = ("--schedule", "0 0 1 * *")
    fresh = run_cli(*monthly, "--now", (uploaded + timedelta(hours=46)).isoformat(), env=env)
    assert fresh.returncode == 0, fresh.stderr
    late = uploaded + timedelta(hours=47, minutes=30)
    result = run_cli(*monthly, "--now", late.isoformat(), env=env)
    assert result.returncode == 1
    assert (
        "the newest completed backup of Velero schedule 'daily' (daily-20261201030000) is "
        "2d00h old, more than 2 days, 0:00:00 (twice its schedule)" in result.stderr
    )
    assert "weekly" not in result.stderr
    assert "snapshot" not in result.stderr


def test_fails_when_the_newest_is_older_than_twice_the_schedule(
    backup_s3: MotoServer, env: dict[str, str]
) -> None:
    now = _uploaded(backup_s3) + timedelta(hours=12, minutes=1)
    result = run_cli("--schedule", "0 */6 * * *", "--now", now.isoformat(), env=env)
    assert result.returncode == 1
    assert "is 12h01m old, more than twice the schedule '0 */6 * * *'" in result.stderr
    # A daily schedule tolerates the same age.
    daily = run_cli("--schedule", "30 2 * * *", "--now", now.isoformat(), env=env)
    assert daily.returncode == 0, daily.stderr


def test_newest_prints_one_name_for_the_restore(backup_s3: MotoServer, env: dict[str, str]) -> None:
    result = run_cli("--newest", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("etcd-snapshot-k3s-cp-")


def test_an_empty_folder_fails_naming_it(backup_s3: MotoServer, tmp_path: Path) -> None:
    backup_s3.create_bucket("empty-backups")
    bin_dir = tmp_path / "bin"
    fake_pulumi(bin_dir, {"aws-gpu": aws_outputs("empty-backups")})
    result = run_cli(env=backup_s3.env() | {"PATH": f"{bin_dir}:/usr/bin:/bin"})
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
