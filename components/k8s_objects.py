"""Kubernetes objects rendered as plain manifests (pure functions build them, tests validate them
with kubernetes-validate) and declared as typed Pulumi resources by :func:`declare`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

Manifest = dict[str, Any]

_TYPED: Mapping[tuple[str, str], Callable[..., pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
    ("v1", "PersistentVolume"): k8s.core.v1.PersistentVolume,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("batch/v1", "Job"): k8s.batch.v1.Job,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("networking.k8s.io/v1", "Ingress"): k8s.networking.v1.Ingress,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
}
# Fields outside metadata/spec that some kinds carry at the top level.
_TOP_LEVEL = (
    "data",
    "string_data",
    "type",
    "provisioner",
    "parameters",
    "reclaim_policy",
    "volume_binding_mode",
    "allow_volume_expansion",
    "allowed_topologies",
    "mount_options",
    "rules",
    "role_ref",
    "subjects",
)
_CAMEL = {
    "string_data": "stringData",
    "reclaim_policy": "reclaimPolicy",
    "volume_binding_mode": "volumeBindingMode",
    "allow_volume_expansion": "allowVolumeExpansion",
    "allowed_topologies": "allowedTopologies",
    "mount_options": "mountOptions",
    "role_ref": "roleRef",
}


def object_name(manifest: Manifest) -> str:
    return str(manifest["metadata"]["name"])


def declare(name: str, manifest: Manifest, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """The manifest as a Pulumi resource: the typed class of a built-in kind, else a
    CustomResource (CRDs such as Liqo's NamespaceOffloading)."""
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    typed = _TYPED.get((api_version, kind))
    if typed is None:
        return k8s.apiextensions.CustomResource(
            name,
            api_version=api_version,
            kind=kind,
            metadata=manifest["metadata"],
            spec=manifest.get("spec"),
            opts=opts,
        )
    kwargs: dict[str, Any] = {"metadata": manifest["metadata"]}
    if "spec" in manifest:
        kwargs["spec"] = manifest["spec"]
    for field in _TOP_LEVEL:
        camel = _CAMEL.get(field, field)
        if camel in manifest:
            kwargs[field] = manifest[camel]
    return typed(name, **kwargs, opts=opts)
