"""Velero's backups as its BackupStorageLocation lays them out in S3 (pure, plus one S3 read).

Layout (vmware-tanzu/velero pkg/persistence/object_store_layout.go@v1.18.1): under the BSL
prefix, ``backups/<name>/`` holds ``velero-backup.json`` (the Backup object, written when the
backup finishes, with its final phase: getBackupMetadataKey), ``<name>.tar.gz`` (the objects),
``<name>-logs.gz``, ``<name>-podvolumebackups.json.gz`` and the other per-backup files. Volume
data copied by the node-agent lives in the shared kopia repository under ``kopia/<namespace>/``
(deduplicated across backups), so a backup's size here is its own files only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

METADATA_FILE = "velero-backup.json"
SCHEDULE_LABEL = "velero.io/schedule-name"
"""Velero labels each backup a Schedule makes with the Schedule's name."""
COMPLETED = "Completed"


@dataclass(frozen=True)
class VeleroBackup:
    name: str
    schedule: str
    """The Schedule that made it ('' for a manual backup)."""
    phase: str
    size: int
    finished: datetime
    """status.completionTimestamp, else when velero-backup.json was written."""
    namespaces: tuple[str, ...]
    """spec.includedNamespaces ('*' or empty: all)."""


def _time(text: str | None, fallback: datetime) -> datetime:
    if not text:
        return fallback
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def velero_backups(
    objects: Iterable[dict[str, Any]],
    prefix: str,
    read_json: Callable[[str], dict[str, Any]],
) -> list[VeleroBackup]:
    """The backups among a listing of ``<prefix>/backups/``, newest first. ``read_json(key)``
    reads one object; a backup without its ``velero-backup.json`` (still running, or a
    half-deleted one) is not listed."""
    root = f"{prefix.strip('/')}/backups/"
    sizes: dict[str, int] = {}
    metadata: dict[str, dict[str, Any]] = {}
    for obj in objects:
        relative = obj["Key"].removeprefix(root)
        if relative == obj["Key"] or "/" not in relative:
            continue
        name, _, file = relative.partition("/")
        sizes[name] = sizes.get(name, 0) + int(obj["Size"])
        if file == METADATA_FILE:
            metadata[name] = obj
    found = []
    for name, obj in metadata.items():
        backup = read_json(obj["Key"])
        meta, spec, status = (backup.get(k) or {} for k in ("metadata", "spec", "status"))
        found.append(
            VeleroBackup(
                name=name,
                schedule=(meta.get("labels") or {}).get(SCHEDULE_LABEL, ""),
                phase=status.get("phase", "Unknown"),
                size=sizes[name],
                finished=_time(status.get("completionTimestamp"), obj["LastModified"]),
                namespaces=tuple(spec.get("includedNamespaces") or ()),
            )
        )
    return sorted(found, key=lambda b: b.finished, reverse=True)


def stale_schedules(
    backups: Sequence[VeleroBackup],
    schedules: Iterable[tuple[str, timedelta]],
    now: datetime,
    show_age: Callable[[timedelta], str] = str,
) -> list[str]:
    """Why a schedule is behind: no completed backup of it, or its newest completed one older
    than its limit (``schedules``: name and the age its newest backup must stay under)."""
    problems = []
    for name, limit in schedules:
        done = [b for b in backups if b.schedule == name and b.phase == COMPLETED]
        if not done:
            problems.append(f"Velero schedule '{name}' has no completed backup")
            continue
        age = now - done[0].finished
        if age > limit:
            problems.append(
                f"the newest completed backup of Velero schedule '{name}' ({done[0].name}) is "
                f"{show_age(age)} old, more than {limit} (twice its schedule)"
            )
    return problems
