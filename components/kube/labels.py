"""Names both clusters and every component agree on: the GPU resource and runtime class, the GPU
node label, the control-plane taint, and Kubernetes label-value syntax (pure, no Pulumi)."""

from __future__ import annotations

import re
from collections.abc import Sequence

GPU_RESOURCE = "nvidia.com/gpu"
NVIDIA_RUNTIME_CLASS = "nvidia"
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane=true:NoSchedule"

GPU_NODE_LABEL: tuple[str, str] = ("node-type", "gpu")
"""Carried by every GPU worker of either cluster; platform components select on it."""
CONTROL_NODE_LABEL: tuple[str, str] = ("node-type", "control")
"""Carried by the AWS control node, where everything that must outlive a stopped GPU worker
runs."""
GPU_TAINT = "nvidia.com/gpu=present:NoSchedule"
"""On the AWS GPU worker: only GPU work (and DaemonSets that tolerate it) lands on the node
that stops when idle."""

AWS_CONTROL_NODE_TAINTS = (CONTROL_PLANE_TAINT,)
AWS_GPU_WORKER_TAINTS = (GPU_TAINT,)
"""The AWS nodes' taints (their k3s ``node-taint``), which their DaemonSets tolerate by name."""

STOPPED_NODE_TAINT = "node.kubernetes.io/unreachable:NoSchedule"
"""Put by the node lifecycle controller on a node whose kubelet stopped reporting: the AWS GPU
worker while it is stopped (its idle state). A DaemonSet whose pods tolerate it keeps counting the
stopped node in ``desiredNumberScheduled`` (kubernetes/kubernetes@v1.33.0
pkg/controller/daemon/daemon_controller.go ``NodeShouldRunDaemonPod``: any untolerated NoSchedule
taint gives shouldRun=false; the controller's own default tolerations,
pkg/controller/daemon/util/daemonset_util.go ``AddOrUpdateDaemonPodTolerations``, cover this
taint only as NoExecute). Helm's wait requires ``updatedNumberScheduled == desiredNumberScheduled``
(helm/helm@v3.20.2 pkg/kube/ready.go ``daemonSetReady``), and the stopped node's old pod stays
Terminating without a kubelet: an upgrade that changes the pod template would wait out its
timeout and be rolled back (``atomic``), failing the ``up``. So DaemonSets that can land on the
stoppable worker tolerate its taints by name (:func:`tolerations_of`), never with a bare
``operator: Exists``."""

VELERO_BACKUP_VOLUMES = "backup.velero.io/backup-volumes"
"""Pod annotation listing the pod's volumes Velero's file-system backup copies (opt-in,
vmware-tanzu/velero site/content/docs/v1.18/file-system-backup.md@v1.18.1 "Using opt-in pod
volume backup"); the app components set it on the pods whose data must survive a restore."""

NODE_OUTAGE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
"""The NoExecute taints the node lifecycle controller puts on a node whose status stops coming
(a virtual node whose peer is behind a WAN outage, a worker whose control plane reboots)."""


def outage_tolerations() -> list[dict[str, str]]:
    """Tolerate :data:`NODE_OUTAGE_TAINTS` for ever. Without a toleration of its own, the
    DefaultTolerationSeconds admission plugin gives every pod 300 s of each, after which the pod
    is evicted (kubernetes/kubernetes@v1.33.0
    plugin/pkg/admission/defaulttolerationseconds/admission.go adds them only when the pod has
    no toleration for the key). A toleration without ``tolerationSeconds`` never times out."""
    return [{"key": key, "operator": "Exists", "effect": "NoExecute"} for key in NODE_OUTAGE_TAINTS]


# Kubernetes label values: <= 63 characters, alphanumeric at both ends, '-', '_', '.' inside
# (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set).
LABEL_VALUE_PATTERN = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def check_label_value(value: str, what: str) -> None:
    if not LABEL_VALUE_PATTERN.match(value):
        raise ValueError(
            f"{what} '{value}' is not a valid Kubernetes label value (<= 63 characters: letters, "
            "digits, '-', '_', '.', alphanumeric at both ends)"
        )


def gpu_node_labels(gpu_type: str) -> tuple[str, ...]:
    """Labels of a GPU worker: what the scheduler, the GPU operator and Liqo select on."""
    check_label_value(gpu_type, "gpu type")
    return ("=".join(GPU_NODE_LABEL), f"gpu-type={gpu_type}", "nvidia.com/gpu.present=true")


def tolerations_of(taints: Sequence[str]) -> list[dict[str, str]]:
    """Tolerations of exactly these ``key[=value]:Effect`` taints (see
    :data:`STOPPED_NODE_TAINT` for why DaemonSets on the AWS nodes list theirs)."""
    return [toleration(taint) for taint in taints]


def toleration(taint: str) -> dict[str, str]:
    """A toleration for a ``key=value:Effect`` (or ``key:Effect``) taint string."""
    key_value, _, effect = taint.rpartition(":")
    key, _, value = key_value.partition("=")
    if not key or not effect:
        raise ValueError(f"taint '{taint}' is not key[=value]:Effect")
    if value:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}
