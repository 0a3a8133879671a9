"""Hardened pod and container security contexts, and checkov skip annotations.

Every workload the program declares runs with the same baseline (what the Kubernetes "restricted"
Pod Security Standard asks, plus a read-only root filesystem): a non-root UID, no privilege
escalation, every capability dropped, the runtime's default seccomp profile, and writes only to
explicit volumes. tests/test_checkov.py runs checkov over every declared object and fails on any
finding that is not skipped on the object itself with a written reason (:func:`checkov_skips`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NON_ROOT_UID = 10001
"""Default UID/GID of our containers: checkov CKV_K8S_40 wants >= 10000 so a container UID never
matches a host account (bridgecrewio/checkov checkov/kubernetes/checks/resource/k8s/
RootContainersHighUID.py@3.3.30)."""

SKIP_ANNOTATION_PREFIX = "checkov.io/skip"


def container_security_context(
    run_as_user: int | None = NON_ROOT_UID, *, run_as_group: int | None = None
) -> dict[str, Any]:
    """A container's context: non-root (unless ``run_as_user`` is None, for an image that must
    run as root; checkov then needs a skip with the reason), read-only root, no escalation, no
    capabilities, RuntimeDefault seccomp."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as_user is not None:
        context["runAsNonRoot"] = True
        context["runAsUser"] = run_as_user
        context["runAsGroup"] = run_as_user if run_as_group is None else run_as_group
    return context


def pod_security_context(
    run_as_user: int | None = NON_ROOT_UID, *, fs_group: int | None = None
) -> dict[str, Any]:
    """A pod's context: non-root and RuntimeDefault seccomp for every container; ``fs_group``
    makes supporting volumes (emptyDir, CSI with fsGroup support) group-writable for the UID."""
    context: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if run_as_user is not None:
        context["runAsNonRoot"] = True
        context["runAsUser"] = run_as_user
        context["runAsGroup"] = run_as_user
    if fs_group is not None:
        context["fsGroup"] = fs_group
    return context


def checkov_skips(reasons: Mapping[str, str]) -> dict[str, str]:
    """Annotations that make checkov skip ``{check id: reason}`` on this object. checkov reads
    ``checkov.io/skip<N>: <ID>=<reason>`` and splits on ``=`` (checkov/kubernetes/
    kubernetes_utils.py get_skipped_checks@3.3.30), so a reason must not contain one."""
    annotations = {}
    for index, (check_id, reason) in enumerate(sorted(reasons.items()), start=1):
        if "=" in reason or not reason.strip():
            raise ValueError(f"checkov skip {check_id}: reason must be non-empty, without '='")
        annotations[f"{SKIP_ANNOTATION_PREFIX}{index}"] = f"{check_id}={reason}"
    return annotations


def http_liveness(path: str, port: str = "http") -> dict[str, Any]:
    """A liveness probe that restarts a server whose HTTP endpoint stopped answering for two
    minutes (started servers only: the startup probe holds it off until then)."""
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": 30,
        "timeoutSeconds": 5,
        "failureThreshold": 4,
    }


def scratch_volumes(
    mounts: Mapping[str, str], size: str = "1Gi"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumeMounts, volumes) of emptyDirs ``{name: path}``: the only writable places of a
    container with a read-only root."""
    volume_mounts = [{"name": name, "mountPath": path} for name, path in mounts.items()]
    volumes = [{"name": name, "emptyDir": {"sizeLimit": size}} for name in mounts]
    return volume_mounts, volumes
