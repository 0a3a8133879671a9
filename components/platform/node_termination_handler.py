"""AWS Node Termination Handler in IMDS mode on the AWS cluster: a DaemonSet on the GPU worker
that polls the instance metadata for a spot interruption (two-minute notice), a rebalance
recommendation or a scheduled event, then cordons and drains the node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.kube.charts import NODE_TERMINATION_HANDLER, helm_release

NAMESPACE = "kube-system"


def render_nth_values(node_selector: Mapping[str, str]) -> dict[str, Any]:
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
        "daemonsetTolerations": [{"operator": "Exists"}],
    }


@dataclass(frozen=True)
class NodeTerminationHandlerArgs:
    node_selector: Mapping[str, str] = field(default_factory=dict)
    """Nodes to watch (the spot GPU worker); empty: every node."""


class NodeTerminationHandler(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        args: NodeTerminationHandlerArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hybridgpu:platform:NodeTerminationHandler", name, None, opts)
        self.values = render_nth_values(args.node_selector)
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
