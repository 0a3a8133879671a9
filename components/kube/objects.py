"""Kubernetes objects rendered as plain manifests (pure functions build them, tests validate them
with kubernetes-validate) and declared as typed Pulumi resources by :func:`declare`."""

from __future__ import annotations

import re
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
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("v1", "LimitRange"): k8s.core.v1.LimitRange,
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
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): (
        k8s.admissionregistration.v1.ValidatingAdmissionPolicy
    ),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"): (
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding
    ),
}


def _snake(field: str) -> str:
    """A manifest's top-level field as the typed class's argument (stringData -> string_data)."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", field).lower()


def app_labels(app: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app}


def namespace_manifest(name: str) -> Manifest:
    """A bare Namespace (callers add their Pod Security level: components/k3s/pod_security.py)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def secret_manifest(
    name: str,
    namespace: str,
    string_data: Mapping[str, pulumi.Input[str]],
    secret_type: str = "Opaque",  # noqa: S107 - the Secret type, not a credential
) -> Manifest:
    """A Secret from plain strings (``stringData``); callers wrap secret values in
    ``Output.secret``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": secret_type,
        "stringData": dict(string_data),
    }


def render_service(app: str, namespace: str, port: int) -> Manifest:
    """ClusterIP Service of an app whose pods name their port ``http``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "namespace": namespace, "labels": app_labels(app)},
        "spec": {
            "selector": app_labels(app),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


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
    kwargs = {
        _snake(field): value
        for field, value in manifest.items()
        if field not in ("apiVersion", "kind")
    }
    return typed(name, **kwargs, opts=opts)
