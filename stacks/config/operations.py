"""Day-N sections: teams (``hybridgpu:homelab.teams``: namespaces with quotas and RBAC), etcd
snapshots and Velero (``hybridgpu:homelab.backups``) and the off-site bucket they go to
(``hybridgpu:aws.backups``)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from stacks.config.fields import DnsLabel, Model, Quantity

# Namespaces of the cluster and of the platform itself: a team there would get its quota and
# edit rights over system or platform pods.
RESERVED_NAMESPACES = frozenset(
    {
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "gpu-operator",
        "gpu-validation",
        "metallb-system",
        "nfs-provisioner",
        "fast-scratch",
        "jupyterhub",
        "open-webui",
        "liqo",
        "cattle-system",
        # Velero's own: a team there would hold the backup credentials.
        "velero",
    }
)

# A Kubernetes user or group name as an authenticator passes it (OIDC claim, certificate CN):
# any printable text without spaces; "system:" names belong to Kubernetes itself
# (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#users-in-kubernetes).
SUBJECT_PATTERN = r"^(?!system:)\S{1,253}$"


class ContainerDefaultsSettings(Model):
    """LimitRange defaults for containers that state no resources."""

    request_cpu: Quantity = "250m"
    request_memory: Quantity = "512Mi"
    limit_cpu: Quantity = "2"
    limit_memory: Quantity = "2Gi"


class TeamSettings(Model):
    name: DnsLabel
    namespace: DnsLabel
    users: tuple[str, ...] = ()
    """Kubernetes user names (as the API server's authenticator reports them)."""
    groups: tuple[str, ...] = ()
    gpus: int = Field(default=0, ge=0)
    """``requests.nvidia.com/gpu`` of the namespace: GPUs the team may hold at once."""
    cpu: Quantity = "16"
    memory_gib: int = Field(default=64, ge=1)
    storage_gib: int = Field(default=200, ge=1)
    pods: int = Field(default=50, ge=1)
    persistent_volume_claims: int = Field(default=20, ge=0)
    services: int = Field(default=20, ge=0)
    config_maps: int = Field(default=50, ge=1)
    secrets: int = Field(default=50, ge=1)
    container_defaults: ContainerDefaultsSettings = ContainerDefaultsSettings()

    @field_validator("users", "groups")
    @classmethod
    def _subjects(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.match(SUBJECT_PATTERN, name):
                raise ValueError(
                    f"'{name}' is not a user/group name (no spaces, not a 'system:' name)"
                )
        return value

    @model_validator(mode="after")
    def _members(self) -> TeamSettings:
        if not self.users and not self.groups:
            raise ValueError("users: a team needs at least one user or group")
        if self.namespace in RESERVED_NAMESPACES:
            raise ValueError(
                f"namespace: '{self.namespace}' is a system or platform namespace; reserved: "
                f"{sorted(RESERVED_NAMESPACES)}"
            )
        return self


def check_teams(teams: tuple[TeamSettings, ...], cluster_gpus: int) -> None:
    """Unique names and namespaces; no team quota above the GPUs the cluster has. Messages are
    relative to ``homelab`` (``teams[i].field: ...``)."""
    names: dict[str, int] = {}
    namespaces: dict[str, int] = {}
    for i, team in enumerate(teams):
        if team.name in names:
            raise ValueError(
                f"teams[{i}].name: '{team.name}' is already used by teams[{names[team.name]}]"
            )
        if team.namespace in namespaces:
            raise ValueError(
                f"teams[{i}].namespace: '{team.namespace}' is already the namespace of "
                f"teams[{namespaces[team.namespace]}]; one namespace per team (a second quota "
                "and binding there would mix both teams' limits and members)"
            )
        names[team.name] = i
        namespaces[team.namespace] = i
        if team.gpus > cluster_gpus:
            raise ValueError(
                f"teams[{i}].gpus: {team.gpus} is more than the cluster's {cluster_gpus} GPU(s) "
                "(gpuWorkers[].gpus); such a quota promises GPUs that do not exist"
            )


# A 5-field cron line as k3s's etcd-snapshot-schedule-cron takes it (robfig/cron standard
# parser: minute hour day-of-month month day-of-week); numbers, ranges, lists, steps and '*'.
CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
CRON_PATTERN = rf"^{CRON_FIELD}( {CRON_FIELD}){{4}}$"


class EtcdSnapshotSettings(Model):
    """k3s's own scheduled etcd snapshots on every server, copied to the aws-gpu stack's backup
    bucket (https://docs.k3s.io/cli/etcd-snapshot)."""

    enabled: bool = True
    schedule_cron: str = Field(default="0 */6 * * *", pattern=CRON_PATTERN)
    """When each server takes a snapshot (server local time, 5-field cron)."""
    retention: int = Field(default=28, ge=1)
    """Snapshots kept per server, locally and in S3 (k3s prunes the oldest beyond it)."""
    compress: bool = True


# The namespaces whose data Velero backs up by default: JupyterHub (user homes), Open WebUI
# (its data volume) and monitoring (Grafana), as components/platform/velero.py annotates them.
VELERO_DEFAULT_NAMESPACES = ("jupyterhub", "open-webui", "monitoring")


class VeleroScheduleSettings(Model):
    """One Velero Schedule: a backup of ``namespaces`` (their objects, and the volumes their pods
    opt in) on ``scheduleCron``, kept ``retentionDays`` (the backup's TTL)."""

    name: DnsLabel
    """The Schedule's name; its backups are ``<name>-<UTC time>``."""
    schedule_cron: str = Field(pattern=CRON_PATTERN)
    """When Velero starts the backup (UTC, 5-field cron; robfig/cron like k3s)."""
    retention_days: int = Field(ge=1, le=3650)
    """The backups' TTL: Velero deletes a backup (objects and its S3 data) this long after it."""
    namespaces: tuple[DnsLabel, ...] = Field(default=VELERO_DEFAULT_NAMESPACES, min_length=1)
    """Namespaces backed up: all their objects, and the volumes their pods opt in."""


class VeleroSettings(Model):
    """Velero (chart velero-12.1.0, Velero 1.18.1) backing up namespaced objects and the opted-in
    volumes (kopia, node-agent) to the aws-gpu stack's backup bucket under ``velero/``."""

    enabled: bool = True
    """Install Velero in the homelab (it writes with the aws-gpu stack's Velero key)."""
    schedules: tuple[VeleroScheduleSettings, ...] = Field(
        default=(
            VeleroScheduleSettings(name="daily", schedule_cron="0 3 * * *", retention_days=14),
        ),
        min_length=1,
    )

    @field_validator("schedules")
    @classmethod
    def _unique(
        cls, value: tuple[VeleroScheduleSettings, ...]
    ) -> tuple[VeleroScheduleSettings, ...]:
        seen: dict[str, int] = {}
        for i, schedule in enumerate(value):
            if schedule.name in seen:
                first = seen[schedule.name]
                raise ValueError(
                    f"schedules[{i}].name: '{schedule.name}' is already schedules[{first}]"
                )
            seen[schedule.name] = i
        return value


class BackupSettings(Model):
    etcd: EtcdSnapshotSettings = EtcdSnapshotSettings()
    velero: VeleroSettings = VeleroSettings()


class BackupBucketSettings(Model):
    """The off-site bucket of the homelab's backups (aws-gpu)."""

    # bucket_prefix is at most 37 characters (pulumi_aws s3.Bucket docs); one '-' is added.
    name_prefix: Annotated[DnsLabel, Field(max_length=36)] = "hybridgpu-backups"
    noncurrent_version_expiration_days: int = Field(default=30, ge=1)
    """A snapshot k3s pruned (or overwrote) stays this long as a noncurrent version."""
    force_destroy: bool = False
