"""The IMDS guard of an AWS node: an iptables rule, installed before k3s starts, that drops pod
traffic to the instance metadata service, except from pods of named namespaces (pure renderer).

Why a node rule besides the hop limit: the GPU worker needs a hop limit of 2 (Mountpoint for S3
v2 runs Mountpoint in pods of ``mount-s3`` that read the instance role's credentials from IMDS,
awslabs/mountpoint-s3-csi-driver docs/UPGRADING_TO_V2.md), and a hop limit cannot tell pods
apart. Without the rule, any pod on the worker, offloaded ones from the homelab included, could
take the role's credentials (the worker's SSM files, the model bucket). The control node keeps
hop limit 1 and gets the same rule with no exception (defence in depth).

Node Termination Handler in IMDS mode runs on the host network (components/platform/
node_termination_handler.py ``useHostNetwork``), as do k3s and the node agent: the rule matches
routed pod traffic only (PREROUTING), never the host's own (OUTPUT).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from components.base.files import NodeFile
from components.base.templates import render

SCRIPT_PATH = "/usr/local/sbin/hybridgpu-imds-guard"
UNIT = "hybridgpu-imds-guard.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
INTERVAL_SECONDS = 2
MOUNTPOINT_NAMESPACE = "mount-s3"
"""Where the Mountpoint CSI driver v2 starts its Mountpoint pods (chart value
``mountpointPod.namespace``, default of aws-mountpoint-s3-csi-driver 2.7.0 values.yaml)."""
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def render_guard_script(pod_cidr: str, allowed_namespaces: Sequence[str]) -> str:
    network = ipaddress.IPv4Network(pod_cidr)
    for namespace in allowed_namespaces:
        if not _NAMESPACE.match(namespace) or len(namespace) > 63:
            raise ValueError(f"'{namespace}' is not a namespace name")
    return render(
        __file__,
        "hybridgpu-imds-guard.sh",
        {
            "POD_CIDR": str(network),
            "ALLOWED_NAMESPACES": " ".join(sorted(set(allowed_namespaces))),
            "INTERVAL": INTERVAL_SECONDS,
        },
    )


def guard_files(pod_cidr: str, allowed_namespaces: Sequence[str] = ()) -> list[NodeFile]:
    """The script and its unit; a change restarts the unit (rules are re-checked, not flushed)."""
    restart = (UNIT,)
    return [
        NodeFile(
            "imds-guard",
            SCRIPT_PATH,
            "0755",
            render_guard_script(pod_cidr, allowed_namespaces),
            restart=restart,
        ),
        NodeFile(
            "imds-guard.service",
            UNIT_PATH,
            "0644",
            render(__file__, "hybridgpu-imds-guard.service", {"SCRIPT_PATH": SCRIPT_PATH}),
            restart=restart,
        ),
    ]
