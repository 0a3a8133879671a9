"""The first `pulumi up -s homelab` on a real cluster: a way in (MetalLB + Traefik's address),
Ollama starting on an empty model store without blocking the update, the API VIP, the checks
against aws-gpu before anything is created, and `pulumi install` + `pulumi preview` working
as the README says. MetalLB's and Traefik's values and MetalLB's custom resources are checked
by the upstream tier (tests/test_upstream_charts.py, tests/test_kubernetes_objects.py); kube-vip,
a manifest and not a release, against its chart's data here."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from components.k3s.vip import VipSettings, render_env, render_manifests
from components.kube.charts import KUBE_VIP_IMAGE, METALLB
from stacks.config import ConfigError
from tests.test_kubernetes_objects import k8s_schema_version
from tools import offline
from tools.mocks import install_mocks
from tools.offline import StackRun

UPSTREAM = offline.REPO_ROOT.parent / "shared" / "upstream"
CHARTS = UPSTREAM / "charts"
RELEASE = "kubernetes:helm.sh/v3:Release"


def _values(chart_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((chart_dir / "values.yaml").read_text())


# -- ingress ---------------------------------------------------------------------------------


def test_the_ingress_has_a_lan_address_from_metallb(homelab_run: StackRun) -> None:
    config = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    pool = config["loadBalancer"]
    release = homelab_run.one(RELEASE, "lan-load-balancer-metallb").plain_inputs
    assert (release["chart"], release["version"]) == ("metallb", METALLB.version)
    address_pool = homelab_run.one(
        "kubernetes:metallb.io/v1beta1:IPAddressPool", "lan-load-balancer-pool"
    ).plain_inputs
    assert address_pool["spec"]["addresses"] == [f"{pool['firstAddress']}-{pool['lastAddress']}"]
    l2 = homelab_run.one(
        "kubernetes:metallb.io/v1beta1:L2Advertisement", "lan-load-balancer-l2"
    ).plain_inputs
    assert l2["spec"]["ipAddressPools"] == [address_pool["metadata"]["name"]]
    traefik = homelab_run.one(
        "kubernetes:helm.cattle.io/v1:HelmChartConfig", "lan-load-balancer-traefik"
    ).plain_inputs
    assert traefik["metadata"] == {"name": "traefik", "namespace": "kube-system"}
    values = yaml.safe_load(traefik["spec"]["valuesContent"])
    assert values["service"]["annotations"]["metallb.io/loadBalancerIPs"] == pool["ingressAddress"]
    assert homelab_run.exports["ingressAddress"] == pool["ingressAddress"]
    # servicelb stays off on every server: MetalLB alone answers LoadBalancer Services.
    for reg in homelab_run.by_type("command:remote:Command"):
        if reg.name.startswith("homelab-k3s-k3s-cp") and reg.name.endswith("-install"):
            (encoded,) = (
                line.split("=", 1)[1].strip("'")
                for line in reg.plain_inputs["create"].splitlines()
                if line.startswith("CONFIG_B64=")
            )
            assert "servicelb" in yaml.safe_load(base64.b64decode(encoded))["disable"]


def test_web_app_ingresses_wait_for_the_ingress_address(homelab_run: StackRun) -> None:
    ingress = homelab_run.one("kubernetes:networking.k8s.io/v1:Ingress", "open-webui-ingress")
    traefik = homelab_run.one(
        "kubernetes:helm.cattle.io/v1:HelmChartConfig", "lan-load-balancer-traefik"
    )
    assert traefik.urn in ingress.dependencies


# -- API VIP ---------------------------------------------------------------------------------


def test_kube_vip_follows_the_pinned_chart() -> None:
    chart = CHARTS / "kube-vip-0.9.9"
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    values = _values(chart)
    assert f"{values['image']['repository']}:{meta['appVersion']}" == KUBE_VIP_IMAGE
    env = render_env(VipSettings("192.168.10.20"))
    # vip_address is what the chart's daemonset template sets from config.address in
    # control-plane mode (kube-vip/helm-charts templates/daemonset.yaml); the rest are its env.
    assert set(env) - {"vip_address"} <= set(values["env"]), set(env) - set(values["env"])
    assert env["cp_enable"] == "true"
    assert env["svc_enable"] == "false", "MetalLB serves LoadBalancer Services"
    manifests = render_manifests(VipSettings("192.168.10.20"))
    daemonset = next(m for m in manifests if m["kind"] == "DaemonSet")
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    (container,) = spec["containers"]
    caps = container["securityContext"]["capabilities"]
    assert caps == values["securityContext"]["capabilities"]
    for manifest in manifests:
        kubernetes_validate.validate(manifest, k8s_schema_version(), strict=True)


def test_vip_settings_reject_a_bad_address() -> None:
    with pytest.raises(ValueError, match=r"192\.168\.10\.300"):
        VipSettings("192.168.10.300")


# -- Ollama on an empty store ----------------------------------------------------------------


def test_the_model_directories_exist_before_ollama_starts(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    prefix = (
        offline.stack_config_file("aws-gpu")["hybridgpu:aws"]
        .get("modelStore", {})
        .get("prefix", "ollama/")
    )
    bucket = aws_gpu_run.one("aws:s3/bucket:Bucket", "models-bucket")
    markers = aws_gpu_run.by_type("aws:s3/bucketObjectv2:BucketObjectv2")
    assert sorted(m.plain_inputs["key"] for m in markers) == [
        f"{prefix}blobs/",
        f"{prefix}manifests/",
    ]
    for marker in markers:
        assert marker.plain_inputs["content"] == ""
        assert bucket.urn in marker.property_dependencies["bucket"]
    # Ollama's models dir is that prefix, mounted read-only, from the volume aws-gpu exports
    # once its update (directories included) is done; homelab deploys after aws-gpu.
    volume = homelab_run.referenced["aws-gpu"].values["modelsVolume"]
    assert f"prefix {prefix}" in volume["spec"]["mountOptions"]
    deployment = homelab_run.one("kubernetes:apps/v1:Deployment", "ollama-deployment")
    (container,) = deployment.plain_inputs["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == env["OLLAMA_MODELS"]
    assert mounts["models"]["readOnly"] is True


def test_the_ollama_deployment_is_not_awaited(homelab_run: StackRun) -> None:
    deployment = homelab_run.one("kubernetes:apps/v1:Deployment", "ollama-deployment")
    annotations = deployment.plain_inputs["metadata"]["annotations"]
    assert annotations["pulumi.com/skipAwait"] == "true"
    for claim in ("ollama-models-claim", "ollama-remote-models-claim"):
        reg = homelab_run.one("kubernetes:core/v1:PersistentVolumeClaim", claim)
        assert reg.plain_inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    # Everything else keeps Pulumi's readiness checks.
    for reg in homelab_run.by_type("kubernetes:apps/v1:Deployment"):
        if reg.name != "ollama-deployment":
            meta = reg.plain_inputs["metadata"]
            assert "pulumi.com/skipAwait" not in (meta.get("annotations") or {}), reg.name


# -- checks before resources -----------------------------------------------------------------


def test_a_failed_cross_stack_check_creates_nothing() -> None:
    _, monitor = install_mocks()
    offline.run_stack("aws-gpu", {"hybridgpu:llmNamespace": "models"})
    try:
        with pytest.raises(ConfigError, match="llmNamespace"):
            offline.run_stack("homelab")
        registered = list(monitor.registrations)
    finally:
        offline.run_stack("aws-gpu")
    assert any(r.type == "pulumi:pulumi:StackReference" for r in registered), "homelab ran"
    created = [
        f"{r.type} {r.name}"
        for r in registered
        if r.custom and not r.read and r.type.split(":")[0] in ("proxmoxve", "command")
    ]
    assert created == [], "no Proxmox resource or remote command after a failed check"
    provider = [r for r in registered if r.type == "pulumi:providers:proxmoxve"]
    assert provider == [], "the first resource waits for the checks"


# -- pulumi install + preview ----------------------------------------------------------------


def test_pulumi_install_installs_everything_preview_runs() -> None:
    """`pulumi install` installs requirements.txt into the virtualenv; a `typechecker` runtime
    option makes every preview and update run that tool first, so it must be installed too
    (pulumi.com/docs/iac/languages-sdks/python/#type-checking)."""
    project = yaml.safe_load((offline.REPO_ROOT / "Pulumi.yaml").read_text())
    schema = json.loads((UPSTREAM / "pulumi" / "project-v3.259.0.json").read_text())
    jsonschema.validate(project, schema)
    options = project["runtime"]["options"]
    requirements = (offline.REPO_ROOT / "requirements.txt").read_text()
    names = {line.split("~")[0].split("=")[0].strip() for line in requirements.splitlines()}
    checker = options.get("typechecker")
    assert checker is None or checker in names, f"typechecker {checker} is not installed"
    assert options["toolchain"] == "pip"
    assert options["virtualenv"] == ".venv"
