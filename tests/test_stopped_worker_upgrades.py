"""A chart upgrade on the AWS cluster must not wait for the stopped GPU worker.

While the worker is stopped (its idle state) its Node stays, tainted
``node.kubernetes.io/unreachable:NoSchedule``. A DaemonSet whose pods tolerate that taint counts
the node as desired, its old pod there stays Terminating, and Helm's wait (``atomic``) times
out and rolls the upgrade back: see components/kube/labels.py STOPPED_NODE_TAINT for the
upstream sources. Each chart's DaemonSet tolerations are read from the declared values merged
over the chart's own defaults at the pinned version (../shared/upstream)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from components.kube.labels import STOPPED_NODE_TAINT, toleration
from stacks.config import ProjectSettings
from tests.upstream_checks import coalesce
from tests.upstream_data import DeclaredRelease, chart_data, declared_releases
from tools.offline import StackRun

pytestmark = pytest.mark.upstream

K3S_VERSION = ProjectSettings.model_fields["k3s_version"].default
Tolerations = list[Mapping[str, Any]]


def _csi_node(values: Mapping[str, Any]) -> list[Tolerations]:
    # awslabs/mountpoint-s3-csi-driver charts/aws-mountpoint-s3-csi-driver/templates/node.yaml:
    # tolerateAllTaints renders a bare `operator: Exists`, else defaultTolerations renders
    # CriticalAddonsOnly, its agent-not-ready taint and NoExecute for 300 s; then node.tolerations.
    node = values["node"]
    if node.get("tolerateAllTaints"):
        return [[{"operator": "Exists"}]]
    defaults: Tolerations = (
        [
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
            {"key": "s3.csi.aws.com/agent-not-ready", "operator": "Exists"},
            {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ]
        if node.get("defaultTolerations")
        else []
    )
    return [defaults + list(node.get("tolerations") or [])]


DAEMONSET_TOLERATIONS: dict[str, Callable[[Mapping[str, Any]], list[Tolerations]]] = {
    # Each chart's DaemonSets and where their tolerations come from (values.yaml at the pin).
    "liqo": lambda v: [v["networking"]["fabric"]["tolerations"]],
    "nvidia-device-plugin": lambda v: [v["tolerations"]],
    "dcgm-exporter": lambda v: [v["tolerations"]],
    "prometheus-node-exporter": lambda v: [v["tolerations"]],
    "aws-node-termination-handler": lambda v: [v["daemonsetTolerations"]],
    "aws-mountpoint-s3-csi-driver": _csi_node,
}


def tolerates(item: Mapping[str, Any], taint: str) -> bool:
    """Kubernetes' ToleratesTaint (k8s.io/api core/v1 toleration.go): an empty key with Exists
    matches every key, an empty effect every effect."""
    wanted = toleration(taint)
    key, effect = item.get("key", ""), item.get("effect", "")
    operator = item.get("operator", "Equal")
    if effect and effect != wanted["effect"]:
        return False
    if not key:
        return operator == "Exists"
    if key != wanted["key"]:
        return False
    return operator == "Exists" or item.get("value", "") == wanted.get("value", "")


def blocking_daemonsets(release: DeclaredRelease) -> list[Tolerations]:
    data = chart_data(release.chart, release.version)
    assert data is not None, release.label
    merged = coalesce(data.values, release.values)
    return [
        tolerations
        for tolerations in DAEMONSET_TOLERATIONS[release.chart](merged)
        if any(tolerates(t, STOPPED_NODE_TAINT) for t in tolerations)
    ]


def aws_releases(run: StackRun) -> list[DeclaredRelease]:
    releases, problems = declared_releases(run.stack, run, K3S_VERSION)
    assert not problems, problems
    return releases


def test_no_daemonset_on_the_aws_cluster_tolerates_the_stopped_worker(
    aws_gpu_run: StackRun,
) -> None:
    releases = aws_releases(aws_gpu_run)
    unknown = sorted({r.chart for r in releases} - DAEMONSET_TOLERATIONS.keys())
    assert not unknown, f"classify the DaemonSets of {unknown} in DAEMONSET_TOLERATIONS"
    assert {r.chart for r in releases} == DAEMONSET_TOLERATIONS.keys()
    blocking = {r.resource: found for r in releases if (found := blocking_daemonsets(r))}
    assert not blocking, f"DaemonSets that would wait for the stopped worker: {blocking}"


def test_the_aws_daemonsets_still_tolerate_their_nodes_taints(aws_gpu_run: StackRun) -> None:
    """Dropping the blanket toleration must not keep them off the nodes they serve."""
    by_resource = {r.resource: r for r in aws_releases(aws_gpu_run)}
    gpu_taint = "nvidia.com/gpu=present:NoSchedule"
    control_taint = "node-role.kubernetes.io/control-plane=true:NoSchedule"
    wanted = {
        "liqo-release": (gpu_taint, control_taint),
        "node-termination-handler-release": (
            gpu_taint,
            "aws-node-termination-handler/spot-itn:NoSchedule",
        ),
        "model-store-csi-driver": (gpu_taint,),
        "node-exporter-gpu-worker": (gpu_taint,),
        "node-exporter-control-node": (control_taint,),
    }
    for resource, taints in wanted.items():
        release = by_resource[resource]
        data = chart_data(release.chart, release.version)
        assert data is not None
        (tolerations,) = DAEMONSET_TOLERATIONS[release.chart](coalesce(data.values, release.values))
        for taint in taints:
            assert any(tolerates(t, taint) for t in tolerations), (resource, taint)


def test_a_blanket_toleration_is_caught(aws_gpu_run: StackRun) -> None:
    """The chart defaults count: node exporter's `effect: NoSchedule, operator: Exists` and the
    CSI driver's tolerateAllTaints, as they were declared before."""
    by_resource = {r.resource: r for r in aws_releases(aws_gpu_run)}
    exporter = by_resource["node-exporter-gpu-worker"]
    without = {k: v for k, v in exporter.values.items() if k != "tolerations"}
    assert blocking_daemonsets(DeclaredRelease(**{**exporter.__dict__, "values": without}))
    csi = by_resource["model-store-csi-driver"]
    all_taints = {**csi.values, "node": {**csi.values["node"], "tolerateAllTaints": True}}
    assert blocking_daemonsets(DeclaredRelease(**{**csi.__dict__, "values": all_taints}))
    assert tolerates(
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists"}, STOPPED_NODE_TAINT
    )
    assert not tolerates(
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
        STOPPED_NODE_TAINT,
    )
