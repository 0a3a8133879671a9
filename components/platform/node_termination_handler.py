"""AWS Node Termination Handler in IMDS mode on the AWS cluster: a DaemonSet on the GPU worker
that polls the instance metadata for a spot interruption (two-minute notice), a rebalance
recommendation or a scheduled event, then cordons and drains the node."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.kube.charts import NODE_TERMINATION_HANDLER, helm_release
from components.kube.labels import tolerations_of

NAMESPACE = "kube-system"

# The NoSchedule taints NTH puts on the node it drains (aws/aws-node-termination-handler@v1.25.6
# pkg/node/node.go: SpotInterruptionTaint, ScheduledMaintenanceTaint,
# ASGLifecycleTerminationTaint, RebalanceRecommendationTaint), tolerated so that a restarted NTH
# pod can still finish its work on a node it tainted.
NTH_TAINTS = tuple(
    f"aws-node-termination-handler/{reason}:NoSchedule"
    for reason in (
        "spot-itn",
        "scheduled-maintenance",
        "asg-lifecycle-termination",
        "rebalance-recommendation",
    )
)


def render_nth_values(
    node_selector: Mapping[str, str], node_taints: Sequence[str] = ()
) -> dict[str, Any]:
    """Chart values for IMDS ("queue-processor" off) mode
    (https://github.com/aws/aws-node-termination-handler#instance-metadata-service-processor).

    IMDSv2 works from the pod: it runs on the host network (the chart's default), and the nodes
    require tokens with a hop limit of 2, which would also cover a pod network's extra hop."""
    return {
        "enableSqsTerminationDraining": False,
        "enableSpotInterruptionDraining": True,
        "enableScheduledEventDraining": True,
        # A rebalance recommendation would only cordon, with nothing to undo it: off. The spot
        # notice and scheduled events cordon, taint and drain; after AWS restarts the stopped
        # instance the control node's heal timer gives it back (runtime/node_agent heal).
        "enableRebalanceMonitoring": False,
        "enableRebalanceDraining": False,
        "useHostNetwork": True,
        "daemonsetNodeSelector": dict(node_selector),
        # Drain must finish inside the two-minute notice.
        "podTerminationGracePeriod": 60,
        "nodeTerminationGracePeriod": 110,
        "taintNode": True,
        "emitKubernetesEvents": True,
        # The watched nodes' own taints and NTH's, by name: not the chart's default
        # `operator: Exists`, which also tolerates the stopped worker's unreachable taint and
        # makes an upgrade wait for a pod that cannot start (components/kube/labels.py
        # STOPPED_NODE_TAINT).
        "daemonsetTolerations": tolerations_of([*node_taints, *NTH_TAINTS]),
    }


@dataclass(frozen=True)
class NodeTerminationHandlerArgs:
    node_selector: Mapping[str, str] = field(default_factory=dict)
    """Nodes to watch (the spot GPU worker); empty: every node."""
    node_taints: Sequence[str] = ()
    """Taints of those nodes (``key[=value]:Effect``), tolerated by name."""


class NodeTerminationHandler(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        args: NodeTerminationHandlerArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hybridgpu:platform:NodeTerminationHandler", name, None, opts)
        self.values = render_nth_values(args.node_selector, args.node_taints)
        self.release = helm_release(
            f"{name}-release",
            release_name="aws-node-termination-handler",
            chart=NODE_TERMINATION_HANDLER,
            namespace=NAMESPACE,
            values=self.values,
            create_namespace=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"releaseStatus": self.release.status})
