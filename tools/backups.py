"""``./dev backups``: the homelab's etcd snapshots in the aws-gpu stack's backup bucket, newest
first, with age and size; exits 1 when there is none or the newest is older than twice the
snapshot schedule's longest interval (a missed run is tolerated, two are not).

    ./dev backups [--stack aws-gpu] [--homelab-stack homelab] [--schedule CRON] [--newest]

The bucket, region and folder come from the aws-gpu stack's output ``etcdBackup`` (Pulumi CLI);
the schedule from ``hybridgpu:homelab.backups.etcd.scheduleCron`` in ``Pulumi.<homelab>.yaml``
(else k3s's setting's default here). S3 is read with the operator's own AWS credentials.
``--newest`` prints only the newest snapshot's name (for the restore runbook).
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import yaml

from stacks.config.operations import EtcdSnapshotSettings
from tools.stack_outputs import StackOutputsError, read_stack_outputs

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = "etcdBackup"
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


def schedule_from_config(homelab_stack: str) -> str:
    path = REPO_ROOT / f"Pulumi.{homelab_stack}.yaml"
    default = EtcdSnapshotSettings().schedule_cron
    if not path.exists():
        return default
    config = (yaml.safe_load(path.read_text()) or {}).get("config", {})
    homelab = config.get("hybridgpu:homelab") or {}
    return ((homelab.get("backups") or {}).get("etcd") or {}).get("scheduleCron", default)


def report(found: Sequence[Snapshot], now: datetime, limit: timedelta, where: str) -> list[str]:
    lines = [f"{'snapshot':<48} {'node':<16} {'age':>8} {'size':>10}"]
    lines += [
        f"{s.name:<48} {s.node:<16} {human_age(now - s.modified):>8} {human_size(s.size):>10}"
        for s in found
    ]
    lines.append(f"{len(found)} snapshot(s) in {where}; newest must be younger than {limit}")
    return lines


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
        age = now - found[0].modified
        if age > limit:
            raise BackupsError(
                f"the newest snapshot {found[0].name} is {human_age(age)} old, more than twice "
                f"the schedule '{schedule}' ({limit}): snapshots are not reaching S3 (see "
                "docs/runbooks/restore-etcd-from-s3.md and `journalctl -u k3s | grep -i "
                "snapshot` on a control plane)"
            )
    except (BackupsError, StackOutputsError) as err:
        print(f"backups: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
