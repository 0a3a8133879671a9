"""``./dev verify`` against a Kubernetes API served on loopback (issue #17): a small http.server
answers with recorded API replies of a healthy homelab (tests/fixtures/verify/), then with one
thing broken at a time. Healthy: every check passes. A NotReady node, a missing GPU, a failed CUDA
job and a claim stuck Pending each fail with that reason; an unreachable API is a clear failure
within the time bound, not a hang; the throwaway claims are deleted."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fake_kube_api import FakeApi, kubeconfig, silent_port
from tools import verify
from tools.verify import FAIL, PASS, SKIP, Result

RECORDED = json.loads(
    (Path(__file__).parent / "fixtures" / "verify" / "homelab-healthy.json").read_text()
)
NODES = "/api/v1/nodes"
JOBS = "/apis/batch/v1/namespaces/gpu-validation/jobs"
TIMEOUT = 6.0


def healthy() -> dict[str, Any]:
    return copy.deepcopy({**RECORDED["api"], **RECORDED["gpuWaker"]})


def run_verify(server: str, *, timeout: float = TIMEOUT) -> list[Result]:
    outputs = {**RECORDED["outputs"], "kubeconfig": kubeconfig(server)}
    aws = {"gpuWakerUrl": server, "gpuWakerToken": "t0ken"}
    (site,) = verify.build_sites(["homelab"], {"homelab": outputs, "aws-gpu": aws}, timeout)
    return verify.verify_site(site, lambda _: None)


def by_check(results: list[Result]) -> dict[str, Result]:
    return {r.check: r for r in results}


def test_a_healthy_cluster_passes_every_check(serve: Any) -> None:
    api = FakeApi(healthy())
    results = by_check(run_verify(serve(api)))
    assert set(results) == {
        "api-reachable",
        "nodes-ready",
        "gpus-allocatable",
        "storage-nfs-client",
        "storage-fast-scratch",
        "storage-local-path",
        "gpu-operator-pods",
        "cuda-validation",
        "jupyterhub-hub",
        "liqo-virtual-node",
        "ollama-tags",
        "prometheus-gpu-series",
    }
    assert {r.status for r in results.values()} == {PASS}, [
        r for r in results.values() if r.status != PASS
    ]
    assert results["gpus-allocatable"].reason == "4 GPUs on 2 nodes"
    assert "llama3.1:8b" in results["ollama-tags"].reason
    # Throwaway objects: a claim per class, a pod for each class binding on first consumer,
    # every one deleted afterwards.
    assert (
        sorted(o.split("/")[0] for o in api.created) == ["PersistentVolumeClaim"] * 3 + ["Pod"] * 2
    )
    created_names = {o.split("/")[1] for o in api.created}
    deleted_names = {p.rsplit("/", 1)[1] for p in api.deleted}
    assert created_names <= deleted_names


def test_a_not_ready_node_fails_naming_it(serve: Any) -> None:
    replies = healthy()
    (node,) = [n for n in replies[NODES]["items"] if n["metadata"]["name"] == "k3s-gpu-2"]
    (ready,) = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    ready.update(status="Unknown", reason="NodeStatusUnknown")
    results = by_check(run_verify(serve(FakeApi(replies))))
    assert results["nodes-ready"].status == FAIL
    assert results["nodes-ready"].reason == "k3s-gpu-2 NotReady: Ready=Unknown (NodeStatusUnknown)"
    assert results["nodes-ready"].investigate.endswith("get nodes -o wide")
    assert results["gpus-allocatable"].status == PASS


def test_a_missing_node_fails(serve: Any) -> None:
    replies = healthy()
    replies[NODES]["items"] = [
        n for n in replies[NODES]["items"] if n["metadata"]["name"] != "k3s-cp-1"
    ]
    results = by_check(run_verify(serve(FakeApi(replies))))
    assert results["nodes-ready"].status == FAIL
    assert "missing: k3s-cp-1" in results["nodes-ready"].reason


def test_a_missing_gpu_fails_naming_node_and_counts(serve: Any) -> None:
    replies = healthy()
    (node,) = [n for n in replies[NODES]["items"] if n["metadata"]["name"] == "k3s-gpu-1"]
    node["status"]["allocatable"]["nvidia.com/gpu"] = "1"
    results = by_check(run_verify(serve(FakeApi(replies))))
    assert results["gpus-allocatable"].status == FAIL
    assert (
        results["gpus-allocatable"].reason
        == "k3s-gpu-1: 1 nvidia.com/gpu allocatable, 2 configured"
    )
    assert results["nodes-ready"].status == PASS


def test_a_failed_cuda_job_fails_with_its_logs_command(serve: Any) -> None:
    replies = healthy()
    job = replies[JOBS]["items"][1]
    job["status"] = {
        "failed": 4,
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
    }
    results = by_check(run_verify(serve(FakeApi(replies))))
    cuda = results["cuda-validation"]
    assert cuda.status == FAIL
    assert cuda.reason == "cuda-vectoradd-k3s-gpu-2 failed (BackoffLimitExceeded)"
    assert cuda.investigate.endswith("-n gpu-validation logs job/cuda-vectoradd-k3s-gpu-2")


def test_a_claim_stuck_pending_fails_and_is_cleaned_up(serve: Any) -> None:
    waiting = (
        "waiting for a volume to be created, either by external provisioner "
        '"cluster.local/nfs-subdir-external-provisioner" or manually created by system '
        "administrator"
    )
    events = [
        {"reason": "ExternalProvisioning", "message": waiting, "lastTimestamp": T}
        for T in ("2026-12-02T10:00:01Z", "2026-12-02T10:00:03Z")
    ]
    events[0]["message"] = "an older message"
    api = FakeApi(healthy(), claim_phases=["Pending"], events=events)
    started = time.monotonic()
    results = by_check(run_verify(serve(api), timeout=4.0))
    for name in ("storage-nfs-client", "storage-fast-scratch", "storage-local-path"):
        assert results[name].status == FAIL
        assert results[name].reason == f"throwaway claim stayed Pending for 2 s: {waiting}"
        assert "get events --field-selector involvedObject.name=hybridgpu-verify-" in (
            results[name].investigate
        )
    assert time.monotonic() - started < 3 * 4.0 + 20
    deleted = [p for p in api.deleted if "/persistentvolumeclaims/" in p]
    assert len(deleted) == 3


def test_prometheus_without_aws_series_while_the_worker_runs_fails(serve: Any) -> None:
    replies = healthy()
    key = next(k for k in replies if "DCGM_FI_DEV_GPU_UTIL" in k)
    replies[key]["data"]["result"] = replies[key]["data"]["result"][:1]
    results = by_check(run_verify(serve(FakeApi(replies))))
    assert results["prometheus-gpu-series"].status == FAIL
    assert results["prometheus-gpu-series"].reason == (
        "no DCGM_FI_DEV_GPU_UTIL series with site=aws"
    )


def test_a_stopped_worker_skips_ollama_rather_than_waking_it(serve: Any) -> None:
    replies = healthy()
    replies["/healthz"]["state"] = "stopped"
    del replies["/api/tags"]  # a call would 404: the check must not make it
    results = by_check(run_verify(serve(FakeApi(replies))))
    assert results["ollama-tags"].status == SKIP
    assert "stopped" in results["ollama-tags"].reason


def test_an_unresponsive_api_fails_clearly_within_the_bound() -> None:
    sock, port = silent_port()
    try:
        started = time.monotonic()
        results = run_verify(f"http://127.0.0.1:{port}", timeout=3.0)
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    (result,) = results
    assert result.check == "api-reachable"
    assert result.status == FAIL
    assert result.reason.startswith(f"cannot reach the Kubernetes API at http://127.0.0.1:{port}")
    assert "timed out" in result.reason
    assert elapsed < 3.0 + 1.0


def test_a_refused_api_fails_clearly() -> None:
    sock, port = silent_port()
    sock.close()  # nothing listens now
    (result,) = run_verify(f"http://127.0.0.1:{port}", timeout=3.0)
    assert result.status == FAIL
    assert "Connection refused" in result.reason


def test_the_cli_prints_the_table_and_exits_non_zero_on_a_failure(
    serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replies = healthy()
    replies[JOBS]["items"][0]["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    }
    server = serve(FakeApi(replies))
    homelab = tmp_path / "homelab.json"
    homelab.write_text(json.dumps({**RECORDED["outputs"], "kubeconfig": kubeconfig(server)}))
    aws = tmp_path / "aws.json"
    aws.write_text(json.dumps({"gpuWakerUrl": server, "gpuWakerToken": "t0ken"}))
    status = verify.main(
        ["homelab", "--outputs", f"homelab={homelab}", "--outputs", f"aws-gpu={aws}"]
    )
    out, err = capsys.readouterr()
    assert status == 1
    assert out.splitlines()[0].split() == ["SITE", "CHECK", "STATUS", "REASON", "INVESTIGATE"]
    assert "cuda-validation        FAIL" in out
    assert "11 passed, 1 failed, 0 skipped" in out
    assert "[homelab] nodes-ready ..." in err  # progress as it goes
    # Healthy: exit 0.
    server = serve(FakeApi(healthy()))
    homelab.write_text(json.dumps({**RECORDED["outputs"], "kubeconfig": kubeconfig(server)}))
    aws.write_text(json.dumps({"gpuWakerUrl": server, "gpuWakerToken": "t0ken"}))
    assert (
        verify.main(["homelab", "--outputs", f"homelab={homelab}", "--outputs", f"aws-gpu={aws}"])
        == 0
    )


def test_aws_gpu_with_the_worker_stopped_checks_the_control_node_and_skips_the_rest(
    serve: Any,
) -> None:
    """The AWS cluster: the GPU worker is NotReady while gpu-waker has it stopped; that is no
    failure, and nothing wakes it."""
    replies = healthy()
    items = replies[NODES]["items"]
    control = copy.deepcopy(items[0])
    control["metadata"]["name"] = "ip-10-100-1-10"
    worker = copy.deepcopy(items[1])
    worker["metadata"]["name"] = "ip-10-100-1-20"
    worker["metadata"]["labels"]["gpu-type"] = "nvidia-t4"
    (ready,) = [c for c in worker["status"]["conditions"] if c["type"] == "Ready"]
    ready.update(status="Unknown", reason="NodeStatusUnknown")
    replies[NODES]["items"] = [control, worker]
    replies["/apis/storage.k8s.io/v1/storageclasses"]["items"] = [
        sc
        for sc in replies["/apis/storage.k8s.io/v1/storageclasses"]["items"]
        if sc["metadata"]["name"] == "local-path"
    ]
    replies["/healthz"]["state"] = "stopped"
    server = serve(FakeApi(replies))
    outputs = {
        "adminKubeconfig": kubeconfig(server),
        "gpuWorkerGpuType": "nvidia-t4",
        "gpuWorkerGpuCount": 1,
        "gpuWakerUrl": server,
        "gpuWakerToken": "t0ken",
    }
    (site,) = verify.build_sites(["aws-gpu"], {"aws-gpu": outputs}, TIMEOUT)
    results = by_check(verify.verify_site(site, lambda _: None))
    assert results["nodes-ready"].status == PASS
    assert results["nodes-ready"].reason == "Ready: ip-10-100-1-10"
    for name in ("gpus-allocatable", "device-plugin-pods", "ollama-tags"):
        assert results[name].status == SKIP, results[name]
        assert "stopped" in results[name].reason
    assert results["storage-local-path"].status == PASS
    # The same cluster with the worker reported ready: its NotReady node is a failure.
    replies["/healthz"]["state"] = "ready"
    (site,) = verify.build_sites(
        ["aws-gpu"],
        {"aws-gpu": {**outputs, "adminKubeconfig": kubeconfig(serve(FakeApi(replies)))}},
        TIMEOUT,
    )
    results = by_check(verify.verify_site(site, lambda _: None))
    assert results["nodes-ready"].status == FAIL
    assert "ip-10-100-1-20 NotReady" in results["nodes-ready"].reason


def test_the_homelab_checks_ollama_through_the_wake_gate_when_there_is_one() -> None:
    """When the AWS side sleeps, the homelab's clients call the wake gate: verify takes that
    path (homelab output wakeGateUrl), with gpu-waker's token; the aws-gpu site keeps its own."""
    outputs = {**RECORDED["outputs"], "kubeconfig": kubeconfig("https://127.0.0.1:1")}
    aws_outputs = {
        **RECORDED["outputs"],
        "adminKubeconfig": kubeconfig("https://127.0.0.1:1"),
        "gpuWakerUrl": "http://10.200.0.1:11435",
        "gpuWakerToken": "t0ken",
    }
    gate = "http://192.168.10.21:11435"
    homelab, aws = verify.build_sites(
        ["homelab", "aws-gpu"],
        {"homelab": {**outputs, "wakeGateUrl": gate}, "aws-gpu": aws_outputs},
        TIMEOUT,
    )
    assert homelab.waker == (gate, "t0ken")
    assert aws.waker == ("http://10.200.0.1:11435", "t0ken")
    # Without a gate (the control node never sleeps) both call gpu-waker on AWS.
    (homelab,) = verify.build_sites(
        ["homelab"], {"homelab": {**outputs, "wakeGateUrl": None}, "aws-gpu": aws_outputs}, TIMEOUT
    )
    assert homelab.waker == ("http://10.200.0.1:11435", "t0ken")
