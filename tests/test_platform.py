"""GPU platform of both clusters (issue: GPU platform): GPU Operator, storage classes,
JupyterHub, CUDA validation, Node Termination Handler, optional Rancher."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pulumi
import pytest

from components.k3s import scripts
from components.kube.charts import CUDA_SAMPLE_IMAGE
from components.kube.labels import toleration
from components.platform.cuda_validation import SUCCESS_TEXT, render_check_script
from components.platform.jupyterhub import (
    Authenticator,
    JupyterHub,
    JupyterHubArgs,
    render_profiles,
)
from tests import fixture_configs
from tests.real_tools import require, shellcheck
from tools import offline
from tools.offline import StackRun

RELEASE = "kubernetes:helm.sh/v3:Release"
JOB = "kubernetes:batch/v1:Job"


def test_gpu_operator_uses_k3s_containerd(homelab_run: StackRun) -> None:
    release = homelab_run.one(RELEASE, "gpu-operator-release").plain_inputs
    assert release["chart"] == "gpu-operator"
    assert release["name"] == "gpu-operator"
    values = release["values"]
    env = {e["name"]: e["value"] for e in values["toolkit"]["env"]}
    assert env["CONTAINERD_CONFIG"] == "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
    assert env["CONTAINERD_SOCKET"] == "/run/k3s/containerd/containerd.sock"
    assert env["CONTAINERD_RUNTIME_CLASS"] == "nvidia"
    # k3s rewrites config.toml at every start: a default set there by the toolkit would not last.
    assert "CONTAINERD_SET_AS_DEFAULT" not in env
    assert values["driver"]["enabled"] is True  # driver: operator in the example config
    tolerated = {t["key"] for t in values["daemonsets"]["tolerations"]}
    assert {"node-role.kubernetes.io/control-plane", "nvidia.com/gpu"} <= tolerated


VARIANT = Path(__file__).parent / "fixtures" / "valid" / "homelab-rancher-preinstalled-driver.yaml"


@pytest.fixture(scope="module")
def variant_run() -> StackRun:
    """homelab with Rancher on and preinstalled drivers (a valid fixture)."""
    return offline.run_with_dependencies("homelab", fixture_configs.load(VARIANT).overrides)


def test_preinstalled_driver_turns_the_operator_driver_off(variant_run: StackRun) -> None:
    values = variant_run.one(RELEASE, "gpu-operator-release").plain_inputs["values"]
    assert values["driver"]["enabled"] is False


def test_toleration_parsing() -> None:
    assert toleration("a=b:NoSchedule") == {
        "key": "a",
        "operator": "Equal",
        "value": "b",
        "effect": "NoSchedule",
    }
    assert toleration("a:NoExecute") == {"key": "a", "operator": "Exists", "effect": "NoExecute"}
    with pytest.raises(ValueError, match="key"):
        toleration("no-effect")


def test_one_cuda_job_per_gpu_worker_pinned_to_it(homelab_run: StackRun) -> None:
    workers = set(homelab_run.exports["gpuWorkers"])
    jobs = homelab_run.by_type(JOB)
    assert len(jobs) == len(workers) == 4
    pinned = set()
    for job in jobs:
        spec = job.plain_inputs["spec"]["template"]["spec"]
        node = spec["nodeSelector"]["kubernetes.io/hostname"]
        pinned.add(node)
        (container,) = spec["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container["image"] == CUDA_SAMPLE_IMAGE
        assert SUCCESS_TEXT in container["command"][-1]
        assert "ttlSecondsAfterFinished" not in job.plain_inputs["spec"]  # logs stay readable
    assert pinned == workers
    results = homelab_run.exports["cudaValidation"]
    assert set(results) == workers
    assert all(
        r["logs"].startswith("kubectl -n gpu-validation logs job/") for r in results.values()
    )
    operator = homelab_run.one(RELEASE, "gpu-operator-release")
    assert all(operator.urn in job.dependencies for job in jobs)


def test_cuda_check_script_passes_only_on_test_passed(tmp_path: Path) -> None:
    script = render_check_script()
    shellcheck(script, tmp_path, "cuda-check.sh")
    sh = require("sh")
    fake = tmp_path / "vectorAdd"
    for output, code, expected in (
        ("Test PASSED\nDone", 0, 0),
        ("Test FAILED", 0, 1),  # exit 0 is not enough
        ("Test PASSED", 1, 1),  # the success line is not enough either
    ):
        fake.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\nexit {code}\n")
        fake.chmod(0o755)
        result = subprocess.run(  # noqa: PLW1510 - the return code is the assertion
            [sh, "-c", script.replace("/cuda-samples/vectorAdd", str(fake))],
            env={"NODE_NAME": "gpu-1", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == expected, (output, code, result.stdout, result.stderr)


def test_storage_classes(homelab_run: StackRun) -> None:
    nfs = homelab_run.one(RELEASE, "storage-nfs").plain_inputs
    assert nfs["values"]["nfs"] == {
        "server": "192.168.10.5",
        "path": "/export/k8s",
        "mountOptions": ["nfsvers=4.1", "hard"],
    }
    assert nfs["values"]["storageClass"]["name"] == "nfs-client"
    assert nfs["values"]["storageClass"]["defaultClass"] is True
    scratch = homelab_run.one(
        "kubernetes:storage.k8s.io/v1:StorageClass", "storage-fast-scratch"
    ).plain_inputs
    assert scratch["metadata"]["name"] == "fast-scratch"
    assert scratch["volumeBindingMode"] == "WaitForFirstConsumer"
    config = homelab_run.one("kubernetes:core/v1:ConfigMap", "storage-scratch-configmap")
    assert "/mnt/scratch" in config.plain_inputs["data"]["config.json"]
    provisioner = homelab_run.one("kubernetes:apps/v1:Deployment", "storage-scratch-deployment")
    (container,) = provisioner.plain_inputs["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PROVISIONER_NAME"] == scratch["provisioner"] != "rancher.io/local-path"


def test_scratch_disk_is_formatted_once_and_mounted(homelab_run: StackRun) -> None:
    install = scripts.template("install.sh")
    # never mkfs a disk that has a file system; mount by label, nofail at boot
    assert install.index("blkid") < install.index("mkfs.ext4")
    assert "nofail" in install
    workers = {w["name"]: w for w in _homelab_config()["gpuWorkers"]}
    for reg in homelab_run.by_type("command:remote:Command"):
        node = reg.name.removeprefix("homelab-k3s-").removesuffix("-install")
        if not reg.name.endswith("-install") or not reg.name.startswith("homelab-k3s-"):
            continue
        expected = "/mnt/scratch" if node in workers else "''"
        assert f"SCRATCH_MOUNT={expected}\n" in reg.plain_inputs["create"], node


def _homelab_config() -> dict:
    return offline.stack_config_file("homelab")["hybridgpu:homelab"]


def test_sqlite_databases_live_on_node_local_volumes(homelab_run: StackRun) -> None:
    """SQLite over NFS is unsafe (locking), so neither the hub nor Open WebUI keeps it there."""
    hub = homelab_run.one(RELEASE, "jupyterhub-release").plain_inputs["values"]["hub"]
    assert hub["db"] == {"type": "sqlite-pvc", "pvc": {"storageClassName": "local-path"}}
    claim = homelab_run.one("kubernetes:core/v1:PersistentVolumeClaim", "open-webui-data")
    assert claim.plain_inputs["spec"]["storageClassName"] == "local-path"


def test_jupyterhub_profiles_follow_gpus_per_worker(homelab_run: StackRun) -> None:
    values = homelab_run.one(RELEASE, "jupyterhub-release").plain_inputs["values"]
    profiles = values["singleuser"]["profileList"]
    assert [p["slug"] for p in profiles] == ["cpu", "gpu-1", "gpu-2"]  # workers have 2 GPUs
    for profile in profiles[1:]:
        override = profile["kubespawner_override"]
        count = profile["slug"].split("-")[1]
        assert override["extra_resource_limits"] == {"nvidia.com/gpu": count}
        assert override["node_selector"] == {"node-type": "gpu"}
    assert profiles[0]["kubespawner_override"]["environment"]["NVIDIA_VISIBLE_DEVICES"] == "none"
    assert values["cull"] == {"enabled": True, "timeout": 3600, "every": 600}
    storage = values["singleuser"]["storage"]
    assert storage["dynamic"]["storageClass"] == "nfs-client"
    scratch = storage["extraVolumes"][0]["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert scratch["storageClassName"] == "fast-scratch"
    config = values["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "github"
    assert config["Authenticator"]["admin_users"] == ["lab-admin"]


def test_jupyterhub_profiles_scale_with_bigger_workers() -> None:
    profiles = render_profiles([1, 2, 4], {"node-type": "gpu"})
    assert [p["slug"] for p in profiles] == ["cpu", "gpu-1", "gpu-2", "gpu-4"]
    with pytest.raises(ValueError, match="start at 1"):
        render_profiles([0], {})


def test_jupyterhub_client_secret_is_secret(homelab_run: StackRun) -> None:
    release = homelab_run.one(RELEASE, "jupyterhub-release")
    assert any(p.startswith("values") for p in release.secret_inputs)
    section = release.plain_inputs["values"]["hub"]["config"]["GitHubOAuthenticator"]
    assert section["client_secret"] == "mock-secret-jupyterhubClientSecret"


@pulumi.runtime.test
def test_jupyterhub_component_values_are_secret():
    hub = JupyterHub(
        "probe-hub",
        JupyterHubArgs(
            hostname="hub.example",
            image="quay.io/jupyter/base-notebook:2025-01-01",
            authenticator=Authenticator(kind="github", client_id="id", admin_users=("a",)),
            client_secret=pulumi.Output.secret("s3cr3t"),
            gpu_counts=(1,),
        ),
    )

    def check(values: list) -> None:
        is_secret, plain = values
        assert is_secret
        assert plain["hub"]["config"]["GitHubOAuthenticator"]["client_secret"] == "s3cr3t"

    return pulumi.Output.all(
        pulumi.Output.from_input(pulumi.Output.is_secret(hub.values)), hub.values
    ).apply(check)


def test_nth_in_imds_mode_on_aws_only(aws_gpu_run: StackRun, homelab_run: StackRun) -> None:
    nth = aws_gpu_run.one(RELEASE, "node-termination-handler-release").plain_inputs
    assert nth["chart"].startswith("oci://")
    assert nth["chart"].endswith("aws-node-termination-handler")
    assert "repositoryOpts" not in nth  # an OCI chart needs no repository
    values = nth["values"]
    assert values["enableSqsTerminationDraining"] is False  # IMDS mode
    assert values["enableSpotInterruptionDraining"] is True
    assert values["daemonsetNodeSelector"] == {"node-type": "gpu"}
    assert not [r for r in homelab_run.by_type(RELEASE) if "termination" in r.plain_inputs["chart"]]
    # A rebalance recommendation would only cordon, with nothing to undo it.
    assert values["enableRebalanceMonitoring"] is False
    # On the host network, so IMDS (v2) is one hop away: the node's hop limit of 1 suffices.
    assert values["useHostNetwork"] is True
    assert values["taintNode"] is True  # the heal path recognises (and removes) its taints


def test_aws_gpu_plumbing_is_the_device_plugin(aws_gpu_run: StackRun) -> None:
    plugin = aws_gpu_run.one(RELEASE, "nvidia-device-plugin-release").plain_inputs
    assert plugin["values"]["runtimeClassName"] == "nvidia"
    assert plugin["values"]["nodeSelector"] == {"node-type": "gpu"}


def test_rancher_is_off_by_default_and_optional(
    homelab_run: StackRun, variant_run: StackRun
) -> None:
    assert not [r for r in homelab_run.by_type(RELEASE) if r.plain_inputs["chart"] == "rancher"]
    with_rancher = variant_run
    rancher = with_rancher.one(RELEASE, "rancher-release")
    assert rancher.plain_inputs["values"]["hostname"] == "rancher.lab.example"
    assert any(p.startswith("values") for p in rancher.secret_inputs)
    # Its certificate from the cluster's issuer (tests/test_tls.py), before the release.
    certificate = with_rancher.one(
        "kubernetes:cert-manager.io/v1:Certificate", "rancher-certificate"
    )
    assert certificate.urn in rancher.dependencies


def test_every_chart_and_image_is_pinned(aws_gpu_run: StackRun, homelab_run: StackRun) -> None:
    for run_ in (aws_gpu_run, homelab_run):
        for release in run_.by_type(RELEASE):
            version = release.plain_inputs.get("version", "")
            assert version, release.name
            assert version[0] in "v0123456789", release.name
            assert release.plain_inputs.get("name"), release.name
        for reg in run_.managed():
            spec = reg.plain_inputs.get("spec", {})
            template = spec.get("template", {}).get("spec", {}) if isinstance(spec, dict) else {}
            for container in template.get("containers", []):
                image = container["image"]
                assert ":" in image.rsplit("/", 1)[-1]
                assert not image.endswith(":latest"), image
