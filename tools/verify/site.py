"""What every check shares: the result row, the site it runs against, node helpers and
gpu-waker's view of the AWS GPU worker."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from components.platform.monitoring import RELEASE as MONITORING_RELEASE
from tools.verify.api import Kube, VerifyError, http_get

STACKS = ("aws-gpu", "homelab")
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
DEFAULT_TIMEOUT_SECONDS = 60.0
VERIFY_NAMESPACE = "default"
VERIFY_LABEL = ("hybridgpu/verify", "throwaway")
# Liqo labels its virtual nodes so (liqotech/liqo pkg/consts/labels.go@v1.2.0, TypeNode).
LIQO_NODE_TYPE = ("liqo.io/type", "virtual-node")
# kube-prometheus-stack's Prometheus Service: "<fullname>-prometheus", fullname being the release
# and chart names truncated to 26 characters (charts/kube-prometheus-stack/templates/
# _helpers.tpl@kube-prometheus-stack-88.5.3).
PROMETHEUS_SERVICE = f"{MONITORING_RELEASE}-kube-prometheus-stack"[:26] + "-prometheus"
# z2jh's hub Service (jupyterhub/templates/hub/service.yaml@4.4.0): port 8081, API at /hub/api.
HUB_SERVICE = "hub:8081"


@dataclass(frozen=True)
class Result:
    site: str
    check: str
    status: str
    reason: str
    investigate: str = ""


Check = Callable[["Site"], Result]


def named(label: str) -> Callable[[Check], Check]:
    """The check's row name, also used when it fails by time-out."""

    def mark(check: Check) -> Check:
        check.__dict__["label"] = label
        return check

    return mark


def label_of(check: Check) -> str:
    return check.__dict__.get("label", getattr(check, "__name__", "check"))


@dataclass
class Site:
    name: str
    kube: Kube
    outputs: dict[str, Any]
    waker: tuple[str, str] | None = None
    """gpu-waker's URL and token (from aws-gpu's outputs), when known."""
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    worker_state: str | None = None
    """gpu-waker's state of the AWS GPU worker, asked once."""

    def kubectl(self, args: str) -> str:
        flag = f"--kubeconfig {self.kube.kubeconfig_path} " if self.kube.kubeconfig_path else ""
        return f"kubectl {flag}{args}"


def ready_condition(obj: dict[str, Any]) -> tuple[bool, str]:
    for condition in obj.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            ok = condition.get("status") == "True"
            why = condition.get("reason") or condition.get("message") or ""
            return ok, f"Ready={condition.get('status')}" + (f" ({why})" if why else "")
    return False, "no Ready condition"


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def is_virtual(node: dict[str, Any]) -> bool:
    return labels_of(node).get(LIQO_NODE_TYPE[0]) == LIQO_NODE_TYPE[1]


def list_nodes(site: Site) -> dict[str, dict[str, Any]]:
    return {n["metadata"]["name"]: n for n in site.kube.get("/api/v1/nodes")["items"]}


def expected_nodes(site: Site) -> dict[str, int | None]:
    """Node name -> configured GPU count (None: not checked) from the stack outputs."""
    out = site.outputs
    if site.name == "homelab":
        nodes: dict[str, int | None] = dict.fromkeys(out.get("controlPlaneIps", {}), 0)
        nodes |= {name: int(w["gpuCount"]) for name, w in out.get("gpuWorkers", {}).items()}
        return nodes
    return {}


def aws_worker_state(site: Site) -> str:
    """gpu-waker's view of the AWS GPU worker (``/healthz``, no token needed)."""
    if site.worker_state is None:
        site.worker_state = "unknown (no gpu-waker URL)"
        if site.waker is not None:
            url, token = site.waker
            try:
                _, _, body = http_get(f"{url.rstrip('/')}/healthz", token, site.timeout / 4)
                site.worker_state = str(json.loads(body).get("state", "unknown"))
            except (VerifyError, ValueError) as err:
                site.worker_state = f"unknown (gpu-waker: {err})"
    return site.worker_state


def skip_stopped(site: Site, check: str) -> Result:
    state = aws_worker_state(site)
    return Result(
        site.name,
        check,
        SKIP,
        f"GPU worker is {state} (gpu-waker stops it when idle); send a request to wake it",
        "curl <gpuWakerUrl>/healthz",
    )
