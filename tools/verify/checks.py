"""The checks of one cluster against its stack outputs (see tools/verify/__init__.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from components.kube.labels import GPU_RESOURCE
from components.platform import cuda_validation, gpu_operator, jupyterhub, nvidia_device_plugin
from components.platform.monitoring import NAMESPACE as MONITORING_NAMESPACE
from tools.verify.api import http_get
from tools.verify.site import (
    FAIL,
    HUB_SERVICE,
    PASS,
    PROMETHEUS_SERVICE,
    SKIP,
    Result,
    Site,
    aws_worker_state,
    expected_nodes,
    is_virtual,
    labels_of,
    list_nodes,
    named,
    ready_condition,
    skip_stopped,
)


@named("api-reachable")
def check_api(site: Site) -> Result:
    version = site.kube.get("/version")
    return Result(site.name, "api-reachable", PASS, f"Kubernetes {version.get('gitVersion')}")


@named("nodes-ready")
def check_nodes(site: Site) -> Result:
    nodes = {k: v for k, v in list_nodes(site).items() if not is_virtual(v)}
    investigate = site.kubectl("get nodes -o wide")
    problems = []
    if site.name == "homelab":
        expected = expected_nodes(site)
        missing = sorted(set(expected) - set(nodes))
        if missing:
            problems.append(f"missing: {', '.join(missing)}")
        names = sorted(expected)
    else:
        # aws-gpu: the control node always; the GPU worker only while gpu-waker says it runs.
        state = aws_worker_state(site)
        gpu_type = site.outputs.get("gpuWorkerGpuType")
        workers = [n for n, v in nodes.items() if labels_of(v).get("gpu-type") == gpu_type]
        names = sorted(set(nodes) - set(workers))
        if state == "ready":
            names += workers
            if not workers:
                problems.append("gpu-waker reports the GPU worker ready, but it is no node")
    for name in names:
        if name in nodes:
            ok, why = ready_condition(nodes[name])
            if not ok:
                problems.append(f"{name} NotReady: {why}")
    if problems:
        return Result(site.name, "nodes-ready", FAIL, "; ".join(problems), investigate)
    return Result(site.name, "nodes-ready", PASS, f"Ready: {', '.join(names)}", investigate)


@named("gpus-allocatable")
def check_gpus(site: Site) -> Result:
    nodes = list_nodes(site)
    if site.name == "homelab":
        expected = {n: c for n, c in expected_nodes(site).items() if c}
    else:
        if aws_worker_state(site) != "ready":
            return skip_stopped(site, "gpus-allocatable")
        gpu_type = site.outputs.get("gpuWorkerGpuType")
        count = int(site.outputs.get("gpuWorkerGpuCount", 0))
        expected = {n: count for n, v in nodes.items() if labels_of(v).get("gpu-type") == gpu_type}
    problems = []
    for name, count in sorted(expected.items()):
        have = nodes.get(name, {}).get("status", {}).get("allocatable", {}).get(GPU_RESOURCE, "0")
        if int(have) != count:
            problems.append(f"{name}: {have} {GPU_RESOURCE} allocatable, {count} configured")
    investigate = site.kubectl(
        "get nodes -o custom-columns=NAME:.metadata.name,GPUS:.status.allocatable.nvidia\\.com/gpu"
    )
    if problems:
        return Result(site.name, "gpus-allocatable", FAIL, "; ".join(problems), investigate)
    total = sum(expected.values())
    return Result(
        site.name, "gpus-allocatable", PASS, f"{total} GPUs on {len(expected)} nodes", investigate
    )


def _pods_ready(site: Site, check: str, namespace: str) -> Result:
    pods = site.kube.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
    investigate = site.kubectl(f"-n {namespace} get pods")
    if not pods:
        return Result(site.name, check, FAIL, f"no pods in namespace {namespace}", investigate)
    bad = []
    for pod in pods:
        phase = pod.get("status", {}).get("phase")
        if phase == "Succeeded":  # the operator's one-shot validators
            continue
        ok, why = ready_condition(pod)
        if not ok:
            bad.append(f"{pod['metadata']['name']} ({phase}, {why})")
    if bad:
        return Result(site.name, check, FAIL, "not Ready: " + "; ".join(bad), investigate)
    return Result(site.name, check, PASS, f"{len(pods)} pods Ready or completed", investigate)


@named("gpu-operator-pods")
def check_gpu_operator(site: Site) -> Result:
    return _pods_ready(site, "gpu-operator-pods", gpu_operator.NAMESPACE)


@named("device-plugin-pods")
def check_device_plugin(site: Site) -> Result:
    if aws_worker_state(site) != "ready":
        return skip_stopped(site, "device-plugin-pods")
    return _pods_ready(site, "device-plugin-pods", nvidia_device_plugin.NAMESPACE)


@named("cuda-validation")
def check_cuda_jobs(site: Site) -> Result:
    ns = cuda_validation.NAMESPACE
    jobs = {
        j["metadata"]["name"]: j
        for j in site.kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]
    }
    expected = {
        worker: info["job"] for worker, info in (site.outputs.get("cudaValidation") or {}).items()
    }
    investigate = site.kubectl(f"-n {ns} get jobs")
    problems = []
    for worker, job in sorted(expected.items()):
        status = jobs.get(job, {}).get("status")
        if status is None:
            problems.append(f"{job} ({worker}) is missing")
            continue
        failed = [
            c
            for c in status.get("conditions", [])
            if c.get("type") == "Failed" and c.get("status") == "True"
        ]
        if failed:
            why = failed[0].get("reason") or failed[0].get("message") or "failed"
            problems.append(f"{job} failed ({why})")
            investigate = site.kubectl(f"-n {ns} logs job/{job}")
        elif not status.get("succeeded"):
            problems.append(f"{job} has not succeeded yet")
    if problems:
        return Result(site.name, "cuda-validation", FAIL, "; ".join(problems), investigate)
    return Result(
        site.name, "cuda-validation", PASS, f"{len(expected)} jobs succeeded", investigate
    )


@named("jupyterhub-hub")
def check_jupyterhub(site: Site) -> Result:
    path = f"/api/v1/namespaces/{jupyterhub.NAMESPACE}/services/{HUB_SERVICE}/proxy/hub/api"
    reply = site.kube.get(path)
    investigate = site.kubectl(f"-n {jupyterhub.NAMESPACE} logs deploy/hub")
    if isinstance(reply, dict) and "version" in reply:
        return Result(
            site.name, "jupyterhub-hub", PASS, f"hub API answers (JupyterHub {reply['version']})"
        )
    return Result(
        site.name, "jupyterhub-hub", FAIL, f"unexpected reply: {reply!r:.120}", investigate
    )


@named("liqo-virtual-node")
def check_virtual_node(site: Site) -> Result:
    virtual = {k: v for k, v in list_nodes(site).items() if is_virtual(v)}
    investigate = site.kubectl("get nodes -l liqo.io/type=virtual-node -o yaml")
    if not virtual:
        return Result(site.name, "liqo-virtual-node", FAIL, "no Liqo virtual node", investigate)
    problems = []
    for name, node in sorted(virtual.items()):
        ok, why = ready_condition(node)
        gpus = node.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE, "0")
        if not ok:
            problems.append(f"{name} NotReady: {why}")
        if int(gpus) < 1:
            problems.append(f"{name} offers no {GPU_RESOURCE}")
    if problems:
        return Result(site.name, "liqo-virtual-node", FAIL, "; ".join(problems), investigate)
    return Result(site.name, "liqo-virtual-node", PASS, f"{', '.join(virtual)} Ready with GPUs")


@named("ollama-tags")
def check_ollama(site: Site) -> Result:
    if site.waker is None:
        return Result(site.name, "ollama-tags", SKIP, "no gpu-waker URL in the aws-gpu outputs")
    url, token = site.waker
    investigate = f"curl -H 'Authorization: Bearer <gpuWakerToken>' {url.rstrip('/')}/api/tags"
    state = aws_worker_state(site)
    if state != "ready":
        # /api/tags is answered from gpu-waker's cache, or wakes the worker when it has none:
        # verify must not start an instance.
        return Result(
            site.name, "ollama-tags", SKIP, f"GPU worker is {state}; not waking it", investigate
        )
    status, _, body = http_get(f"{url.rstrip('/')}/api/tags", token, site.timeout / 2)
    if status != 200:
        return Result(site.name, "ollama-tags", FAIL, f"HTTP {status}: {body[:120]}", investigate)
    models = [m.get("name") for m in json.loads(body).get("models", [])]
    return Result(site.name, "ollama-tags", PASS, f"models: {', '.join(models) or 'none'}")


@named("prometheus-gpu-series")
def check_prometheus(site: Site) -> Result:
    if not site.outputs.get("grafanaUrl"):
        return Result(site.name, "prometheus-gpu-series", SKIP, "monitoring is not configured")
    base = (
        f"/api/v1/namespaces/{MONITORING_NAMESPACE}/services/{PROMETHEUS_SERVICE}:9090/proxy"
        "/api/v1/query?query="
    )
    investigate = site.kubectl(
        f"-n {MONITORING_NAMESPACE} port-forward svc/{PROMETHEUS_SERVICE} 9090"
    )

    def query(promql: str) -> list[dict[str, Any]]:
        reply = site.kube.get(base + urllib.parse.quote(promql))
        return reply["data"]["result"]

    sites = {r["metric"].get("site", "") for r in query("count by (site) (DCGM_FI_DEV_GPU_UTIL)")}
    # gpu-waker on AWS (job gpu-waker), not the homelab's wake gate, whose state is the control
    # node's (components/platform/monitoring.py WAKE_GATE_JOB).
    aws_ready = query('max(gpu_waker_worker_state{job="gpu-waker",state="ready"})')
    aws_running = bool(aws_ready) and float(aws_ready[0]["value"][1]) == 1
    missing = [s for s in ("homelab", "aws") if s not in sites]
    if "aws" in missing and not aws_running:
        missing.remove("aws")
        if not missing:
            return Result(
                site.name,
                "prometheus-gpu-series",
                PASS,
                "homelab GPU series present; aws has none while its worker is stopped",
                investigate,
            )
    if missing:
        reason = f"no DCGM_FI_DEV_GPU_UTIL series with site={' or '.join(missing)}"
        return Result(site.name, "prometheus-gpu-series", FAIL, reason, investigate)
    return Result(site.name, "prometheus-gpu-series", PASS, "GPU series of homelab and aws")
