"""What a cluster says: GPU pods waiting for or holding the worker, and where Ollama is.

Worker mode reads the AWS cluster (GPU pods there, Ollama's pod); gate mode reads the homelab
cluster, where only Pending GPU pods that tolerate Liqo's virtual-node taint (that may be
offloaded to AWS) count, and the upstream is a fixed URL (the AWS-side gpu-waker).

:class:`KubeCluster` reads the Kubernetes API (the official client, in a thread) with a
ServiceAccount that may only list pods. :class:`StaticCluster` is a fixed upstream with no
cluster, for a plain setup and for tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from kubernetes import client, config

GPU_RESOURCE = "nvidia.com/gpu"
# The taint Liqo puts on every virtual node: key (liqotech/liqo pkg/consts/webhook.go@v1.2.0,
# VirtualNodeTolerationKey), value "true" and effect NoExecute
# (liqotech/liqo pkg/virtualKubelet/liqoNodeProvider/utils.go@v1.2.0, desiredVirtualNodeMetadata).
# Liqo's webhook gives pods of offloaded namespaces the matching toleration
# (pkg/webhooks/pod/mutations.go@v1.2.0, getVirtualNodeToleration: Exists, NoExecute).
LIQO_VIRTUAL_NODE_TAINT_KEY = "virtual-node.liqo.io/not-allowed"
LIQO_VIRTUAL_NODE_TAINT_VALUE = "true"
LIQO_VIRTUAL_NODE_TAINT_EFFECT = "NoExecute"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = LIQO_VIRTUAL_NODE_TAINT_VALUE
    effect: str = LIQO_VIRTUAL_NODE_TAINT_EFFECT


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Taint) -> bool:
    """Whether any toleration (as the API serves it) tolerates ``taint``, by Kubernetes' rules
    (kubernetes/api core/v1/toleration.go@v0.33.5, Toleration.ToleratesTaint): an empty effect
    matches every effect, an empty key (operator Exists) every key; Exists matches any value,
    Equal (or no operator) the same value."""
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        key = toleration.get("key") or ""
        if effect and effect != taint.effect:
            continue
        if key and key != taint.key:
            continue
        operator = toleration.get("operator") or "Equal"
        if operator == "Exists" or (
            operator == "Equal" and (toleration.get("value") or "") == taint.value
        ):
            return True
    return False


@dataclass(frozen=True)
class GpuPod:
    uid: str
    name: str
    """namespace/name, for logs."""
    pending: bool


@dataclass(frozen=True)
class GpuPods:
    """GPU-requesting pods other than Ollama itself (phase Pending or Running)."""

    pods: tuple[GpuPod, ...] = ()

    @property
    def pending(self) -> tuple[GpuPod, ...]:
        return tuple(p for p in self.pods if p.pending)

    @property
    def running(self) -> tuple[GpuPod, ...]:
        return tuple(p for p in self.pods if not p.pending)


class ClusterView(Protocol):
    async def gpu_pods(self) -> GpuPods: ...
    async def upstream_url(self) -> str | None: ...


def requests_gpu(pod_spec: Mapping[str, Any], resource: str = GPU_RESOURCE) -> bool:
    """Whether any (init) container asks for ``resource`` (extended resources must be limits;
    requests default to them)."""
    containers = [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]
    for container in containers:
        resources = container.get("resources") or {}
        for kind in ("limits", "requests"):
            if str((resources.get(kind) or {}).get(resource, "0")) not in ("0", ""):
                return True
    return False


def is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def parse_selector(text: str) -> dict[str, str]:
    """``a=b,c=d`` (equality only) as a dict."""
    selector: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"label selector part '{part}' is not key=value")
        selector[key] = value
    return selector


def gpu_pods_of(
    pods: Iterable[Mapping[str, Any]],
    *,
    upstream_namespace: str,
    upstream_selector: Mapping[str, str],
    resource: str = GPU_RESOURCE,
    required_toleration: Taint | None = None,
) -> GpuPods:
    """GPU pods from pod manifests (camelCase, as the API serves them), Ollama's excluded: its
    pod is woken by requests, and after a stop it may be re-created Pending on the stopped node,
    which must not wake the worker again. With ``required_toleration`` (gate mode: Liqo's
    virtual-node taint) only pods that tolerate it count: those may run on AWS; a homelab GPU pod
    waiting for a local GPU must not wake AWS."""
    found = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        phase = (pod.get("status") or {}).get("phase")
        if phase not in ("Pending", "Running"):
            continue
        if meta.get("namespace") == upstream_namespace and matches(
            meta.get("labels") or {}, upstream_selector
        ):
            continue
        if not requests_gpu(pod.get("spec") or {}, resource):
            continue
        if required_toleration is not None and not tolerates(
            (pod.get("spec") or {}).get("tolerations") or [], required_toleration
        ):
            continue
        found.append(
            GpuPod(
                uid=str(meta.get("uid", "")),
                name=f"{meta.get('namespace')}/{meta.get('name')}",
                pending=phase == "Pending",
            )
        )
    return GpuPods(tuple(sorted(found, key=lambda p: p.name)))


def upstream_of(pods: Iterable[Mapping[str, Any]], port: int) -> str | None:
    """URL of the first Ready upstream pod with an IP (sorted by name: stable choice)."""
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        ip = (pod.get("status") or {}).get("podIP")
        if ip and is_ready(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            return f"http://{ip}:{port}"
    return None


class KubeCluster:
    """The cluster through the Kubernetes API (ServiceAccount token in a kubeconfig file)."""

    def __init__(
        self,
        kubeconfig: str,
        *,
        upstream_namespace: str,
        upstream_selector: Mapping[str, str],
        upstream_port: int,
        resource: str = GPU_RESOURCE,
        required_toleration: Taint | None = None,
        fixed_upstream: str | None = None,
    ) -> None:
        """``fixed_upstream``: the upstream URL, not looked up (gate mode: the AWS-side
        gpu-waker); ``required_toleration``: see :func:`gpu_pods_of`."""
        api_client = config.new_client_from_config(config_file=kubeconfig)
        self._api = client.CoreV1Api(api_client)
        self._sanitize = api_client.sanitize_for_serialization
        self.upstream_namespace = upstream_namespace
        self.upstream_selector = dict(upstream_selector)
        self.upstream_port = upstream_port
        self.resource = resource
        self.required_toleration = required_toleration
        self.fixed_upstream = fixed_upstream

    def _list_all(self) -> list[dict[str, Any]]:
        reply = self._api.list_pod_for_all_namespaces(
            field_selector="status.phase!=Succeeded,status.phase!=Failed", _request_timeout=10
        )
        return cast(list[dict[str, Any]], self._sanitize(reply.items))  # camelCase dicts

    def _list_upstream(self) -> list[dict[str, Any]]:
        reply = self._api.list_namespaced_pod(
            self.upstream_namespace,
            label_selector=",".join(f"{k}={v}" for k, v in self.upstream_selector.items()),
            _request_timeout=10,
        )
        return cast(list[dict[str, Any]], self._sanitize(reply.items))  # camelCase dicts

    async def gpu_pods(self) -> GpuPods:
        pods = await asyncio.to_thread(self._list_all)
        return gpu_pods_of(
            pods,
            upstream_namespace=self.upstream_namespace,
            upstream_selector=self.upstream_selector,
            resource=self.resource,
            required_toleration=self.required_toleration,
        )

    async def upstream_url(self) -> str | None:
        if self.fixed_upstream is not None:
            return self.fixed_upstream
        return upstream_of(await asyncio.to_thread(self._list_upstream), self.upstream_port)


@dataclass
class StaticCluster:
    """A fixed upstream URL and a settable pod list (no Kubernetes)."""

    url: str
    pods: GpuPods = field(default_factory=GpuPods)

    async def gpu_pods(self) -> GpuPods:
        return self.pods

    async def upstream_url(self) -> str | None:
        return self.url
