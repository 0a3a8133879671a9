"""The homelab's two storage classes.

``nfs-client`` (default): NFS subdir external provisioner; every volume is a directory on the
configured export, so home directories survive node loss and are reachable from every node.

``fast-scratch``: a second local-path provisioner instance (its own provisioner name and
config) whose only path is the GPU workers' scratch disk; volumes are node-local
(WaitForFirstConsumer binds them where the pod lands) and restricted to GPU workers. k3s's own
instance cannot serve it: its config map is a packaged manifest k3s rewrites at every start
(https://docs.k3s.io/installation/packaged-components), and a path added there would also be
picked at random for ``local-path`` volumes.

k3s marks its ``local-path`` class default as well; Kubernetes then picks the newest default
class (KEP-3333, GA in 1.28), which is ``nfs-client`` because it is created after k3s's own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.k3s.pod_security import with_level
from components.kube.charts import (
    BUSYBOX_IMAGE,
    LOCAL_PATH_PROVISIONER_IMAGE,
    NFS_SUBDIR_PROVISIONER,
    digest_skip,
    helm_release,
)
from components.kube.objects import Manifest, declare
from components.kube.security import (
    checkov_skips,
    container_security_context,
    pod_security_context,
)

NFS_CLASS = "nfs-client"
LOCAL_CLASS = "local-path"
"""k3s's packaged local-path provisioner: node-local volumes, for SQLite databases (SQLite on NFS
is unsafe: https://z2jh.jupyter.org/en/stable/administrator/advanced.html, sqlite.org/lockingv3
"SQLite version 3 ... over a network file system ... file locking is broken")."""
SCRATCH_CLASS = "fast-scratch"
NAMESPACE = "nfs-provisioner"
SCRATCH_PROVISIONER = "hybridgpu.io/fast-scratch"
SCRATCH_NAMESPACE = "fast-scratch"
SCRATCH_APP = "fast-scratch-provisioner"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def render_nfs_values(server: str, path: str, mount_options: Sequence[str]) -> dict[str, Any]:
    """Chart values (charts/nfs-subdir-external-provisioner/values.yaml)."""
    return {
        "nfs": {"server": server, "path": path, "mountOptions": list(mount_options)},
        "storageClass": {
            "name": NFS_CLASS,
            "defaultClass": True,
            "reclaimPolicy": "Delete",
            # A deleted claim's data is kept as archived-<name> on the export, not destroyed.
            "archiveOnDelete": True,
            "accessModes": "ReadWriteMany",
            "allowVolumeExpansion": True,
        },
    }


def render_scratch_provisioner(
    scratch_path: str,
    provisioner_image: str = LOCAL_PATH_PROVISIONER_IMAGE,
    helper_image: str = BUSYBOX_IMAGE,
) -> list[Manifest]:
    """The provisioner's objects (rancher/local-path-provisioner's deploy manifest, reduced to
    one path and renamed so it never answers for k3s's ``local-path`` class)."""
    ns = SCRATCH_NAMESPACE
    config = {
        "nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [scratch_path]}]
    }
    helper_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "priorityClassName": "system-node-critical",
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {"name": "helper-pod", "image": helper_image, "imagePullPolicy": "IfNotPresent"}
            ],
        },
    }
    subject = [{"kind": "ServiceAccount", "name": SCRATCH_APP, "namespace": ns}]
    labels = {"app.kubernetes.io/name": SCRATCH_APP}
    return [
        with_level(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            "privileged",
            "local-path-provisioner's helper pods create and delete the volume directories "
            "on the node through a hostPath",
        ),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SCRATCH_APP, "namespace": ns},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": SCRATCH_APP, "namespace": ns},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": SCRATCH_APP, "namespace": ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": SCRATCH_APP,
            },
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": SCRATCH_APP},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": [
                        "nodes",
                        "persistentvolumeclaims",
                        "configmaps",
                        "pods",
                        "pods/log",
                    ],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["persistentvolumes"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
                },
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
                {
                    "apiGroups": ["storage.k8s.io"],
                    "resources": ["storageclasses"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": SCRATCH_APP},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": SCRATCH_APP,
            },
            "subjects": subject,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{SCRATCH_APP}-config", "namespace": ns},
            "data": {
                "config.json": json.dumps(config, indent=2),
                "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                "helperPod.yaml": json.dumps(helper_pod, indent=2),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": SCRATCH_APP,
                "namespace": ns,
                "labels": labels,
                "annotations": checkov_skips(
                    {
                        **digest_skip(provisioner_image),
                        "CKV_K8S_38": "the provisioner watches claims and creates volumes and "
                        "helper pods through the Kubernetes API with its service account token",
                        "CKV_K8S_8": "local-path-provisioner serves no health endpoint "
                        "(rancher/local-path-provisioner deploy/local-path-storage.yaml@v0.0.31 "
                        "has no probes); the container exits on failure and is restarted",
                        "CKV_K8S_9": "no readiness endpoint either, and nothing sends it traffic",
                    }
                ),
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": SCRATCH_APP,
                        # The provisioner itself only talks to the API and reads its config;
                        # the helper pods it starts (busybox, helperPod.yaml) write the host path.
                        "securityContext": pod_security_context(),
                        "containers": [
                            {
                                "name": "provisioner",
                                "image": provisioner_image,
                                "securityContext": container_security_context(),
                                "command": [
                                    "local-path-provisioner",
                                    "start",
                                    "--config",
                                    "/etc/config/config.json",
                                    "--configmap-name",
                                    f"{SCRATCH_APP}-config",
                                ],
                                "env": [
                                    {"name": "PROVISIONER_NAME", "value": SCRATCH_PROVISIONER},
                                    {
                                        "name": "POD_NAMESPACE",
                                        "valueFrom": {
                                            "fieldRef": {"fieldPath": "metadata.namespace"}
                                        },
                                    },
                                    {"name": "SERVICE_ACCOUNT_NAME", "value": SCRATCH_APP},
                                    {"name": "HELPER_IMAGE", "value": helper_image},
                                    {"name": "CONFIG_MOUNT_PATH", "value": "/etc/config/"},
                                ],
                                "resources": {
                                    "requests": {"cpu": "10m", "memory": "32Mi"},
                                    "limits": {"cpu": "200m", "memory": "128Mi"},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/config/"}],
                            }
                        ],
                        "volumes": [
                            {"name": "config", "configMap": {"name": f"{SCRATCH_APP}-config"}}
                        ],
                    },
                },
            },
        },
    ]


def render_scratch_class(node_label: tuple[str, str]) -> Manifest:
    label_key, label_value = node_label
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": SCRATCH_CLASS,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "false"},
        },
        "provisioner": SCRATCH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowedTopologies": [
            {"matchLabelExpressions": [{"key": label_key, "values": [label_value]}]}
        ],
    }


@dataclass(frozen=True)
class StorageClassesArgs:
    nfs_server: str
    nfs_path: str
    nfs_mount_options: tuple[str, ...]
    scratch_path: str
    gpu_node_label: tuple[str, str]
    """(key, value) every GPU worker carries: where ``fast-scratch`` volumes may live."""
    provisioner_image: str = LOCAL_PATH_PROVISIONER_IMAGE
    helper_image: str = BUSYBOX_IMAGE


class StorageClasses(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: StorageClassesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:StorageClasses", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.nfs_values = render_nfs_values(args.nfs_server, args.nfs_path, args.nfs_mount_options)
        self.nfs = helm_release(
            f"{name}-nfs",
            release_name="nfs-subdir-external-provisioner",
            chart=NFS_SUBDIR_PROVISIONER,
            namespace=NAMESPACE,
            values=self.nfs_values,
            opts=child,
        )
        provisioner: list[pulumi.Resource] = []
        for manifest in render_scratch_provisioner(
            args.scratch_path, args.provisioner_image, args.helper_image
        ):
            kind = manifest["kind"].lower()
            provisioner.append(
                declare(
                    f"{name}-scratch-{kind}",
                    manifest,
                    pulumi.ResourceOptions(parent=self, depends_on=provisioner[:1]),
                )
            )
        self.scratch = declare(
            f"{name}-fast-scratch", render_scratch_class(args.gpu_node_label), child
        )
        self.register_outputs({"classes": [NFS_CLASS, SCRATCH_CLASS]})
