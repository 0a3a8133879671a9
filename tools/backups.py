"""``./dev backups``: the homelab's etcd snapshots and Velero backups in the aws-gpu stack's
backup bucket, newest first, with age and size; exits 1 when there is no snapshot or the newest
is older than twice the snapshot schedule's longest interval (a missed run is tolerated, two are
not), and likewise for each Velero schedule's newest completed backup.

    ./dev backups [--stack aws-gpu] [--homelab-stack homelab] [--schedule CRON] [--newest]

The bucket, region and folders come from the aws-gpu stack's outputs ``etcdBackup`` and
``veleroBackup`` (Pulumi CLI); the schedules from ``hybridgpu:homelab.backups`` in
``Pulumi.<homelab>.yaml`` (else the defaults of stacks/config/operations.py). S3 is read with
the operator's own AWS credentials. ``--newest`` prints only the newest snapshot's name (for the
restore runbook). Velero is skipped when ``backups.velero.enabled`` is false.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import yaml

from stacks.config.operations import EtcdSnapshotSettings, VeleroSettings
from tools.stack_outputs import StackOutputsError, read_stack_outputs
from tools.velero_backups import VeleroBackup, stale_schedules, velero_backups

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = "etcdBackup"
VELERO_OUTPUT = "veleroBackup"
METADATA_DIR = ".metadata"
"""k3s uploads each snapshot's metadata beside it under ``<folder>/.metadata/``
(k3s-io/k3s pkg/etcd/s3/s3.go@v1.33.5+k3s1); those are not snapshots."""
SNAPSHOT_KEY = re.compile(r"^(?P<base>.+)-(?P<time>\d{9,})(?:\.zip)?$")

# cron fields (robfig/cron's standard parser, which k3s uses): minute hour dom month dow
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


class BackupsError(RuntimeError):
    """A clear, expected failure (exit 1 with the message)."""


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if spec == "*":
            start, end = low, high
        elif "-" in spec:
            start, end = (int(v) for v in spec.split("-", 1))
        else:
            start = int(spec)
            end = high if step_text else start
        if not low <= start <= end <= high or step < 1:
            raise BackupsError(f"cron field '{text}' is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def fire_times(cron: str, start: datetime, days: int) -> list[datetime]:
    """Every run of the 5-field ``cron`` in ``days`` days from ``start`` (a midnight)."""
    fields = cron.split()
    if len(fields) != 5:
        raise BackupsError(f"'{cron}' is not a 5-field cron line")
    minutes, hours, doms, months, dows = (
        _field(f, lo, hi) for f, (lo, hi) in zip(fields, _RANGES, strict=True)
    )
    dows = {d % 7 for d in dows}
    # Both day fields restricted: either may match (cron(8); robfig/cron does the same).
    either = fields[2] != "*" and fields[4] != "*"
    times = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        dom_ok, dow_ok = day.day in doms, (day.weekday() + 1) % 7 in dows
        if day.month not in months or not ((dom_ok or dow_ok) if either else dom_ok and dow_ok):
            continue
        times += [day.replace(hour=h, minute=m) for h in sorted(hours) for m in sorted(minutes)]
    return times


def longest_interval(cron: str) -> timedelta:
    """The longest time between two runs of ``cron`` over two years (every weekday, month
    length and a leap day)."""
    times = fire_times(cron, datetime(2027, 1, 1, tzinfo=UTC), 731)
    if len(times) < 2:
        raise BackupsError(f"'{cron}' runs less than once a year")
    return max(b - a for a, b in itertools.pairwise(times))


@dataclass(frozen=True)
class Snapshot:
    name: str
    node: str
    size: int
    modified: datetime


def snapshots(objects: Iterable[dict[str, Any]], folder: str) -> list[Snapshot]:
    """The snapshots among a listing of ``folder/``, newest first."""
    found = []
    for obj in objects:
        key = obj["Key"]
        relative = key.removeprefix(f"{folder}/")
        if "/" in relative or not relative:  # .metadata/<name>, deeper keys
            continue
        match = SNAPSHOT_KEY.match(relative)
        base = match.group("base") if match else relative
        node = base.removeprefix("etcd-snapshot-").removeprefix("on-demand-")
        found.append(Snapshot(relative, node, int(obj["Size"]), obj["LastModified"]))
    return sorted(found, key=lambda s: s.modified, reverse=True)


def list_objects(bucket: str, folder: str, region: str) -> list[dict[str, Any]]:
    client = boto3.client("s3", region_name=region)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{folder}/")
    return [obj for page in pages for obj in page.get("Contents", [])]


def list_velero_backups(bucket: str, prefix: str, region: str) -> list[VeleroBackup]:
    client = boto3.client("s3", region_name=region)

    def read_json(key: str) -> dict[str, Any]:
        return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    objects = list_objects(bucket, f"{prefix.strip('/')}/backups", region)
    return velero_backups(objects, prefix, read_json)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def human_age(age: timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m"


def _backups_config(homelab_stack: str) -> dict[str, Any]:
    """``hybridgpu:homelab.backups`` of ``Pulumi.<homelab_stack>.yaml`` ({} without one)."""
    path = REPO_ROOT / f"Pulumi.{homelab_stack}.yaml"
    if not path.exists():
        return {}
    config = (yaml.safe_load(path.read_text()) or {}).get("config", {})
    return (config.get("hybridgpu:homelab") or {}).get("backups") or {}


def schedule_from_config(homelab_stack: str) -> str:
    default = EtcdSnapshotSettings().schedule_cron
    etcd = _backups_config(homelab_stack).get("etcd") or {}
    return etcd.get("scheduleCron", default)


def velero_schedules_from_config(homelab_stack: str) -> list[tuple[str, str]] | None:
    """(name, cron) of each Velero schedule; None when Velero is turned off."""
    settings = VeleroSettings.model_validate(_backups_config(homelab_stack).get("velero") or {})
    if not settings.enabled:
        return None
    return [(s.name, s.schedule_cron) for s in settings.schedules]


def report(found: Sequence[Snapshot], now: datetime, limit: timedelta, where: str) -> list[str]:
    lines = [f"{'snapshot':<48} {'node':<16} {'age':>8} {'size':>10}"]
    lines += [
        f"{s.name:<48} {s.node:<16} {human_age(now - s.modified):>8} {human_size(s.size):>10}"
        for s in found
    ]
    lines.append(f"{len(found)} snapshot(s) in {where}; newest must be younger than {limit}")
    return lines


def velero_report(found: Sequence[VeleroBackup], now: datetime, where: str) -> list[str]:
    lines = [f"{'velero backup':<40} {'schedule':<12} {'phase':<16} {'age':>8} {'size':>10}"]
    lines += [
        f"{b.name:<40} {b.schedule or '-':<12} {b.phase:<16} "
        f"{human_age(now - b.finished):>8} {human_size(b.size):>10}"
        for b in found
    ]
    lines.append(f"{len(found)} Velero backup(s) in {where}")
    return lines


def check_velero(outputs: dict[str, Any], homelab_stack: str, now: datetime) -> list[str]:
    """Print the Velero backups; return why a schedule is behind (empty when all are fresh)."""
    schedules = velero_schedules_from_config(homelab_stack)
    if schedules is None:
        return []
    target = outputs.get(VELERO_OUTPUT)
    if not isinstance(target, dict):
        return [f"the aws-gpu stack has no output '{VELERO_OUTPUT}'; `pulumi up` it"]
    bucket, prefix, region = target["bucket"], target["prefix"], target["region"]
    found = list_velero_backups(bucket, prefix, region)
    print()
    print("\n".join(velero_report(found, now, f"s3://{bucket}/{prefix}/backups/")))
    limits = [(name, 2 * longest_interval(cron)) for name, cron in schedules]
    return stale_schedules(found, limits, now, human_age)


def main(argv: Sequence[str] | None = None, now: datetime | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev backups", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--stack", default="aws-gpu", help="the aws-gpu stack (its outputs)")
    parser.add_argument("--homelab-stack", default="homelab", help="whose schedule to check")
    parser.add_argument("--schedule", help="the snapshot cron (default: from the homelab config)")
    parser.add_argument("--newest", action="store_true", help="print the newest name only")
    parser.add_argument("--now", help=argparse.SUPPRESS)  # ISO time, for tests
    args = parser.parse_args(argv)
    now = datetime.fromisoformat(args.now) if args.now else (now or datetime.now(UTC))
    try:
        outputs = read_stack_outputs(args.stack, instead="pass --stack of a deployed aws-gpu")
        target = outputs.get(OUTPUT)
        if not isinstance(target, dict):
            raise BackupsError(f"stack '{args.stack}' has no output '{OUTPUT}'; `pulumi up` it")
        bucket, folder, region = target["bucket"], target["folder"], target["region"]
        where = f"s3://{bucket}/{folder}/"
        found = snapshots(list_objects(bucket, folder, region), folder)
        if not found:
            raise BackupsError(f"no etcd snapshot in {where}")
        if args.newest:
            print(found[0].name)
            return 0
        schedule = args.schedule or schedule_from_config(args.homelab_stack)
        limit = 2 * longest_interval(schedule)
        print("\n".join(report(found, now, limit, where)))
        problems = []
        age = now - found[0].modified
        if age > limit:
            problems.append(
                f"the newest snapshot {found[0].name} is {human_age(age)} old, more than twice "
                f"the schedule '{schedule}' ({limit}): snapshots are not reaching S3 (see "
                "docs/runbooks/restore-etcd-from-s3.md and `journalctl -u k3s | grep -i "
                "snapshot` on a control plane)"
            )
        problems += check_velero(outputs, args.homelab_stack, now)
        if problems:
            raise BackupsError("\n".join(problems))
    except (BackupsError, StackOutputsError) as err:
        print(f"backups: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
