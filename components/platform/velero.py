"""Velero (vmware-tanzu/helm-charts velero-12.1.0: Velero 1.18.1) backing up the homelab's app
namespaces to the aws-gpu stack's backup bucket under ``velero/``: their objects, and the volumes
their pods opt in (``backup.velero.io/backup-volumes``, components/kube/labels.py) copied by the
node-agent with kopia.

Opt-in rather than ``defaultVolumesToFsBackup``: the namespaces also hold Prometheus's TSDB and
Alertmanager's volumes (tens of GiB, rebuilt by scraping) and scratch volumes; with the default
on, every one of those would be uploaded on every run. The opted-in set is exactly JupyterHub's
user homes, Open WebUI's data and Grafana's state.

What the program declares itself rather than through chart values: the namespace (its Pod
Security level and reason), the credentials Secret, the BackupStorageLocation and the Schedules,
so each is a plain object checked against Velero's CRDs like every other custom resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.k3s.pod_security import with_level
from components.kube.charts import VELERO, digest_skip, helm_release
from components.kube.labels import tolerations_of
from components.kube.network_policies import NamespaceIsolation, NamespaceIsolationArgs
from components.kube.objects import Manifest, declare
from components.kube.security import (
    checkov_skips,
    container_security_context,
    pod_security_context,
    scratch_volumes,
)

NAMESPACE = "velero"
RELEASE = "velero"
CREDENTIALS_SECRET = "velero-s3-credentials"  # noqa: S105 - a Secret name
CREDENTIALS_KEY = "cloud"
"""The key the chart mounts and points AWS_SHARED_CREDENTIALS_FILE at (velero-12.1.0
values.yaml credentials: "The key must be named `cloud`")."""
STORAGE_LOCATION = "default"
API_VERSION = "velero.io/v1"
# The object-store plugin's name as registered by velero-plugin-for-aws (main.go:
# RegisterObjectStore("velero.io/aws", ...)); "aws" is its short form in BSL docs.
PROVIDER = "aws"
KUBELET_PODS = "/var/lib/kubelet/pods"
"""Where k3s's kubelet mounts pod volumes (k3s keeps kubelet's default --root-dir), the chart's
nodeAgent.podVolumePath default."""

NODE_AGENT_REASON = (
    "Velero's node-agent reads every pod's volumes through a hostPath of the kubelet's pods "
    f"directory ({KUBELET_PODS}) and runs as root to read and restore files of any owner "
    "(vmware-tanzu/velero site/content/docs/v1.18/file-system-backup.md@v1.18.1)"
)
# File capabilities root keeps in the node-agent: read any file (backup), write and chown any
# file back with its mode (restore). Everything else is dropped.
NODE_AGENT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID")


@dataclass(frozen=True)
class VeleroSchedule:
    name: str
    cron: str
    retention_days: int
    namespaces: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.retention_days < 1:
            raise ValueError(f"schedule '{self.name}': retention_days must be at least 1")
        if not self.namespaces:
            raise ValueError(f"schedule '{self.name}' backs up no namespace")


def ttl(days: int) -> str:
    """A Go duration for the Backup's ``ttl`` (metav1.Duration: hours are its largest unit)."""
    return f"{days * 24}h0m0s"


def render_namespace() -> Manifest:
    return with_level(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        "privileged",
        NODE_AGENT_REASON,
    )


def credentials_file(access_key_id: str, secret_access_key: str) -> str:
    """The AWS shared-credentials file the plugin reads (velero-plugin-for-aws README)."""
    return (
        f"[default]\naws_access_key_id={access_key_id}\naws_secret_access_key={secret_access_key}\n"
    )


def render_credentials_secret(
    access_key_id: pulumi.Input[str], secret_access_key: pulumi.Input[str]
) -> Manifest:
    contents = pulumi.Output.secret(
        pulumi.Output.all(access_key_id, secret_access_key).apply(
            lambda keys: credentials_file(keys[0], keys[1])
        )
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CREDENTIALS_SECRET, "namespace": NAMESPACE},
        "type": "Opaque",
        "stringData": {CREDENTIALS_KEY: contents},
    }


def render_storage_location(
    bucket: pulumi.Input[str], region: pulumi.Input[str], prefix: pulumi.Input[str]
) -> Manifest:
    """The BackupStorageLocation: the backup bucket's Velero folder, as the default location.
    The region is given, so the plugin never asks S3 for the bucket's region."""
    return {
        "apiVersion": API_VERSION,
        "kind": "BackupStorageLocation",
        "metadata": {"name": STORAGE_LOCATION, "namespace": NAMESPACE},
        "spec": {
            "provider": PROVIDER,
            "default": True,
            "accessMode": "ReadWrite",
            "objectStorage": {"bucket": bucket, "prefix": prefix},
            "config": {"region": region},
            "credential": {"name": CREDENTIALS_SECRET, "key": CREDENTIALS_KEY},
        },
    }


def render_schedule(schedule: VeleroSchedule) -> Manifest:
    """A Schedule: its namespaces' objects and opted-in volumes (no cloud volume snapshots:
    the homelab's NFS and local volumes have none), kept ``retention_days``."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Schedule",
        "metadata": {"name": schedule.name, "namespace": NAMESPACE},
        "spec": {
            "schedule": schedule.cron,
            # Backups outlive a deleted Schedule (they are the point of the exercise).
            "useOwnerReferencesInBackup": False,
            "template": {
                "includedNamespaces": list(schedule.namespaces),
                "storageLocation": STORAGE_LOCATION,
                "ttl": ttl(schedule.retention_days),
                "snapshotVolumes": False,
                "defaultVolumesToFsBackup": False,
            },
        },
    }


SCRATCH_HOME = {"name": "HOME", "value": "/scratch"}


def render_velero_values(plugin_image: str, node_taints: Sequence[str]) -> dict[str, Any]:
    """Chart values (velero-12.1.0 values.yaml)."""
    hardened = container_security_context()
    node_agent_context = container_security_context(None)
    node_agent_context["capabilities"] = {
        "drop": ["ALL"],
        "add": list(NODE_AGENT_CAPABILITIES),
    }
    node_agent_skips = {
        "CKV_K8S_23": NODE_AGENT_REASON,  # root
        "CKV_K8S_40": NODE_AGENT_REASON,  # UID 0
        "CKV_K8S_37": "node-agent keeps the file capabilities of root it needs (read any file "
        "for a backup, write and chown it back on a restore), nothing else",
    }
    tmp_mounts, tmp_volumes = scratch_volumes({"tmp": "/tmp"})  # noqa: S108 - an emptyDir
    return {
        "initContainers": [
            {
                "name": "velero-plugin-for-aws",
                "image": plugin_image,
                "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [{"mountPath": "/target", "name": "plugins"}],
                "securityContext": hardened,
            }
        ],
        "podSecurityContext": pod_security_context(),
        "containerSecurityContext": hardened,
        "annotations": checkov_skips(digest_skip(plugin_image)),
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "kubectl": {"containerSecurityContext": hardened},
        # The BSL and Schedules are declared as objects; no cloud volume snapshots.
        "configuration": {
            "backupStorageLocation": [],
            "volumeSnapshotLocation": [],
            "uploaderType": "kopia",
            # The server opens the same kopia repositories (maintenance, restores).
            "extraEnvVars": [SCRATCH_HOME],
            "defaultVolumesToFsBackup": False,
        },
        "credentials": {"useSecret": True, "existingSecret": CREDENTIALS_SECRET},
        "snapshotsEnabled": False,
        "deployNodeAgent": True,
        "nodeAgent": {
            "podVolumePath": KUBELET_PODS,
            # The chart's default (root); RuntimeDefault seccomp is on the container.
            "podSecurityContext": {"runAsUser": 0},
            "containerSecurityContext": node_agent_context,
            # On every node that runs pods with volumes, the tainted control planes included;
            # their taints by name, not a bare `operator: Exists`, which would also put it on
            # Liqo's virtual node and on NotReady nodes, where it cannot run and an upgrade
            # would wait for it (components/kube/labels.py STOPPED_NODE_TAINT).
            "tolerations": tolerations_of(node_taints),
            # A writable /tmp and HOME on the read-only root: the node-agent writes its
            # credentials file under /tmp at start and exits if it cannot
            # (vmware-tanzu/velero@v1.18.1 pkg/credentials/file_store.go), and kopia keeps its
            # repository config under $HOME (pkg/repository/udmrepo/kopialib); /scratch is the
            # chart's emptyDir (nodeAgent.useScratchEmptyDir).
            "extraVolumes": tmp_volumes,
            "extraVolumeMounts": tmp_mounts,
            "extraEnvVars": [SCRATCH_HOME],
            "annotations": checkov_skips(node_agent_skips),
            "resources": {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"cpu": "2", "memory": "2Gi"},
            },
        },
    }


@dataclass(frozen=True)
class VeleroArgs:
    bucket: pulumi.Input[str]
    region: pulumi.Input[str]
    prefix: pulumi.Input[str]
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Input[str]
    """Secret."""
    schedules: Sequence[VeleroSchedule]
    plugin_image: str
    node_taints: Sequence[str] = ()
    """The cluster's node taints (``key[=value]:Effect``): the node-agent tolerates them."""

    def __post_init__(self) -> None:
        names = [s.name for s in self.schedules]
        if len(set(names)) != len(names):
            raise ValueError(f"schedule names {names} are not unique")


class Velero(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: VeleroArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:Velero", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = declare(f"{name}-namespace", render_namespace(), child)
        # Nothing calls into Velero's pods (no webhook; its metrics are not scraped): ingress
        # denied but between its own pods. It only calls out (the API, S3).
        NamespaceIsolation(
            f"{name}-isolation",
            NamespaceIsolationArgs(namespace=NAMESPACE, wait_for=(namespace,)),
            opts=child,
        )
        secret = declare(
            f"{name}-credentials",
            render_credentials_secret(args.access_key_id, args.secret_access_key),
            pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )
        self.values = render_velero_values(args.plugin_image, args.node_taints)
        self.release = helm_release(
            f"{name}-release",
            release_name=RELEASE,
            chart=VELERO,
            namespace=NAMESPACE,
            values=self.values,
            create_namespace=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, secret]),
        )
        # The CRDs come with the release.
        after_release = pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        declare(
            f"{name}-storage-location",
            render_storage_location(args.bucket, args.region, args.prefix),
            after_release,
        )
        for schedule in args.schedules:
            declare(f"{name}-schedule-{schedule.name}", render_schedule(schedule), after_release)
        self.register_outputs({"releaseStatus": self.release.status})
