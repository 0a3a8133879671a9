"""Reading the cluster: GPU pods and the Ollama upstream, from pod manifests and through the real
Kubernetes client against a fake API server on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gpu_waker.cluster import (
    KubeCluster,
    Taint,
    gpu_pods_of,
    parse_selector,
    requests_gpu,
    tolerates,
    upstream_of,
)
from tests.conftest import run
from tests.fakes import start_site, write_kubeconfig

OLLAMA = {"app.kubernetes.io/name": "ollama"}


def pod(
    name: str,
    *,
    namespace: str = "jobs",
    phase: str = "Running",
    gpus: str | None = "1",
    labels: dict[str, str] | None = None,
    ready: bool = True,
    ip: str | None = "10.52.1.7",
) -> dict[str, Any]:
    resources = {"limits": {"nvidia.com/gpu": gpus}} if gpus else {}
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "labels": labels or {},
        },
        "spec": {"containers": [{"name": "c", "resources": resources}]},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_gpu_pods_exclude_ollama_cpu_pods_and_finished_ones() -> None:
    pods = [
        pod("train", phase="Pending"),
        pod("infer"),
        pod("web", gpus=None),
        pod("done", phase="Succeeded"),
        pod("ollama-abc", namespace="llm", labels=OLLAMA, phase="Pending"),
    ]
    found = gpu_pods_of(pods, upstream_namespace="llm", upstream_selector=OLLAMA)
    assert [p.name for p in found.pending] == ["jobs/train"]
    assert [p.name for p in found.running] == ["jobs/infer"]


def test_gpu_request_in_an_init_container_counts() -> None:
    spec = {
        "containers": [{"name": "a"}],
        "initContainers": [{"name": "b", "resources": {"requests": {"nvidia.com/gpu": 1}}}],
    }
    assert requests_gpu(spec)
    assert not requests_gpu({"containers": [{"name": "a", "resources": {"limits": {"cpu": 1}}}]})


def test_upstream_is_a_ready_pod_with_an_ip() -> None:
    assert upstream_of([pod("a", ready=False), pod("b", ip=None)], 11434) is None
    assert upstream_of([pod("b", ip="10.52.1.9"), pod("a", ready=False)], 11434) == (
        "http://10.52.1.9:11434"
    )


def test_selector_syntax() -> None:
    assert parse_selector("app.kubernetes.io/name=ollama, tier=gpu") == {
        "app.kubernetes.io/name": "ollama",
        "tier": "gpu",
    }
    with pytest.raises(ValueError, match="not key=value"):
        parse_selector("app")


def test_kube_cluster_reads_the_api_with_the_official_client(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    async def all_pods(request: web.Request) -> web.Response:
        seen.append((request.path, request.query.get("fieldSelector", "")))
        assert request.headers["Authorization"] == "Bearer sa-token"
        return web.json_response(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {},
                "items": [
                    pod("train", phase="Pending"),
                    pod("ollama-x", namespace="llm", labels=OLLAMA, ip="10.52.1.5"),
                ],
            }
        )

    async def llm_pods(request: web.Request) -> web.Response:
        seen.append((request.path, request.query.get("labelSelector", "")))
        return web.json_response(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {},
                "items": [pod("ollama-x", namespace="llm", labels=OLLAMA, ip="10.52.1.5")],
            }
        )

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/api/v1/pods", all_pods)
        app.router.add_get("/api/v1/namespaces/llm/pods", llm_pods)
        runner, port = await start_site(app)
        kubeconfig = tmp_path / "kubeconfig"
        write_kubeconfig(kubeconfig, port)
        cluster = KubeCluster(
            str(kubeconfig), upstream_namespace="llm", upstream_selector=OLLAMA, upstream_port=11434
        )
        pods = await cluster.gpu_pods()
        assert [p.name for p in pods.pending] == ["jobs/train"]
        assert await cluster.upstream_url() == "http://10.52.1.5:11434"
        await runner.cleanup()

    run(scenario)
    assert seen == [
        ("/api/v1/pods", "status.phase!=Succeeded,status.phase!=Failed"),
        ("/api/v1/namespaces/llm/pods", "app.kubernetes.io/name=ollama"),
    ]


LIQO_TAINT = Taint(key="virtual-node.liqo.io/not-allowed")
KEY = LIQO_TAINT.key


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        # What Liqo's webhook adds (pkg/webhooks/pod/mutations.go@v1.2.0).
        ({"key": KEY, "operator": "Exists", "effect": "NoExecute"}, True),
        ({"key": KEY, "operator": "Equal", "value": "true"}, True),
        ({"key": KEY, "value": "true", "effect": "NoExecute"}, True),  # no operator: Equal
        ({"operator": "Exists"}, True),  # tolerates every taint
        ({"key": KEY, "operator": "Equal", "value": "false"}, False),
        ({"key": KEY, "operator": "Exists", "effect": "NoSchedule"}, False),
        ({"key": "nvidia.com/gpu", "operator": "Exists"}, False),
    ],
)
def test_tolerations_match_liqos_taint_by_kubernetes_rules(
    toleration: dict[str, str], tolerated: bool
) -> None:
    assert tolerates([toleration], LIQO_TAINT) is tolerated


def test_with_a_required_toleration_only_pods_that_may_be_offloaded_count() -> None:
    offloadable = pod("offloaded", phase="Pending")
    offloadable["spec"]["tolerations"] = [
        {"key": "virtual-node.liqo.io/not-allowed", "operator": "Exists", "effect": "NoExecute"}
    ]
    local = pod("local", phase="Pending")
    local["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    pods = [offloadable, local, pod("plain", phase="Pending")]
    found = gpu_pods_of(
        pods, upstream_namespace="llm", upstream_selector=OLLAMA, required_toleration=LIQO_TAINT
    )
    assert [p.name for p in found.pending] == ["jobs/offloaded"]
    # Without it (worker mode, the AWS cluster) every GPU pod counts, as before.
    everyone = gpu_pods_of(pods, upstream_namespace="llm", upstream_selector=OLLAMA)
    assert len(everyone.pending) == 3
