"""Liqo federation and LLM serving: both stacks' Liqo releases, the peering, Ollama offloaded
to the AWS cluster with its models from S3, Open WebUI (issue: federation)."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pulumi
import pytest
import yaml

from components.federation.liqo import render_liqo_values
from components.federation.liqo_peering import (
    CONSUMER_ENV,
    LIQOCTL_SHA256,
    PLATFORMS,
    PROVIDER_ENV,
    PeeringSettings,
    render_peer_script,
    render_unpeer_script,
)
from components.federation.ollama import OllamaSettings, render_deployment, render_offloading
from components.kube.charts import LIQO_DEFAULT_VERSION
from components.nebula.config import GPU_WAKER_PORT
from stacks.config import ProjectSettings
from tests import fake_liqoctl
from tests.real_tools import shellcheck
from tools import offline
from tools.mocks import redact
from tools.offline import StackRun

RELEASE = "kubernetes:helm.sh/v3:Release"
LOCAL_COMMAND = "command:local:Command"
GATEWAY = "10.200.0.1"
SETTINGS = PeeringSettings(
    liqo_version="v1.2.0",
    gateway_nodeport=30840,
    mtu=1240,
    cpu="4",
    memory="16Gi",
    pods=110,
    resources={"nvidia.com/gpu": 1},
    # The fake's archive, pinned as the real ones are; downloads go nowhere.
    liqoctl_sha256=fake_liqoctl.PINNED,
    liqoctl_url="file:///nonexistent/liqo-release",
)


def _liqo(run: StackRun) -> dict:
    return run.one(RELEASE, "liqo-release").plain_inputs


def test_both_liqo_releases_pin_the_same_chart(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    aws, homelab = _liqo(aws_gpu_run), _liqo(homelab_run)
    default = ProjectSettings.model_fields["liqo_version"].default
    for release in (aws, homelab):
        assert release["chart"] == "liqo"
        assert release["name"] == "liqo"  # named: no random suffix
        assert release["namespace"] == "liqo"
        assert release["repositoryOpts"]["repo"] == "https://helm.liqo.io/"
    assert aws["version"] == homelab["version"] == default


def test_liqo_values_per_cluster(aws_gpu_run: StackRun, homelab_run: StackRun) -> None:
    aws = _liqo(aws_gpu_run)["values"]
    homelab = _liqo(homelab_run)["values"]
    assert aws["discovery"]["config"]["clusterID"] == "aws-gpu"
    assert homelab["discovery"]["config"]["clusterID"] == "homelab"
    assert aws["ipam"]["podCIDRs"] == ["10.52.0.0/16"]
    assert aws["ipam"]["serviceCIDR"] == "10.53.0.0/16"
    assert homelab["ipam"]["podCIDRs"] == ["10.42.0.0/16"]
    assert homelab["ipam"]["serviceCIDR"] == "10.43.0.0/16"
    reserved = {"192.168.10.0/24", "10.100.0.0/16", "10.200.0.0/16"}
    assert set(aws["ipam"]["reservedSubnets"]) == reserved
    assert set(homelab["ipam"]["reservedSubnets"]) == reserved
    # The AWS control node on the overlay (the homelab, the consumer, calls it); the homelab's
    # own address is its API VIP on the LAN (HA; only a provider's address is handed out).
    assert aws["apiServer"]["address"] == "https://10.200.0.1:6443"
    assert homelab["apiServer"]["address"] == "https://192.168.10.20:6443"
    assert aws["networking"]["enabled"] is True


def test_homelab_servers_certify_their_overlay_ip(homelab_run: StackRun) -> None:
    """Liqo on AWS reaches the homelab API at its overlay IP: it must be on the certificate."""
    cp1 = next(
        r
        for r in homelab_run.by_type("command:remote:Command")
        if r.name.endswith("k3s-cp-1-install")
    )
    (encoded,) = re.findall(r"^CONFIG_B64='?([A-Za-z0-9+/=]+)'?$", cp1.plain_inputs["create"], re.M)
    config = yaml.safe_load(base64.b64decode(encoded))
    assert "10.200.1.1" in config["tls-san"]


def test_liqo_values_reject_a_non_https_api() -> None:
    with pytest.raises(ValueError, match="https://"):
        render_liqo_values(
            cluster_id="x",
            api_server_url="10.0.0.1:6443",
            pod_cidr="10.42.0.0/16",
            service_cidr="10.43.0.0/16",
            reserved_subnets=[],
            cluster_labels={},
        )


def _peering(homelab_run: StackRun):
    return homelab_run.one(LOCAL_COMMAND, "liqo-peering-liqoctl")


def test_peering_over_nebula_advertises_gpus(homelab_run: StackRun) -> None:
    create = _peering(homelab_run).plain_inputs["create"]
    assert "--resource nvidia.com/gpu=1" in create
    assert "--gw-server-service-type NodePort" in create
    assert "--gw-server-service-nodeport 30840" in create
    assert "--gw-client-address 10.200.0.1" in create  # the AWS control node's overlay IP
    assert "--mtu 1240" in create  # Nebula 1300 - WireGuard 60
    assert "--cpu 4" in create
    assert "--memory 16Gi" in create
    assert "LoadBalancer" not in create


def test_peering_kubeconfigs_stay_secret(homelab_run: StackRun) -> None:
    peering = _peering(homelab_run)
    secret = set(peering.secret_inputs)
    assert (
        "environment" in secret
        or {
            f"environment.{CONSUMER_ENV}",
            f"environment.{PROVIDER_ENV}",
        }
        <= secret
    )
    assert set(peering.plain_inputs["environment"]) == {CONSUMER_ENV, PROVIDER_ENV}
    assert peering.plain_inputs["logging"] == "stderr"
    shown = json.dumps(redact(peering.inputs), default=str)
    assert "client-key-data" not in shown


def test_destroy_unpeers_before_liqo_goes(homelab_run: StackRun) -> None:
    """Pulumi deletes dependents first: the peering depends on the Liqo release, and Ollama's
    objects depend on the peering, so delete order is Ollama -> unpeer -> uninstall."""
    peering = _peering(homelab_run)
    liqo = homelab_run.one(RELEASE, "liqo-release")
    assert liqo.urn in peering.dependencies
    assert '"$liqoctl" unpeer' in peering.plain_inputs["delete"]
    offloading = homelab_run.one(
        "kubernetes:offloading.liqo.io/v1beta1:NamespaceOffloading", "ollama-offloading"
    )
    assert peering.urn in offloading.dependencies
    deployment = homelab_run.one("kubernetes:apps/v1:Deployment", "ollama-deployment")
    assert offloading.urn in deployment.dependencies


def test_ollama_runs_only_on_the_virtual_node_with_one_gpu(homelab_run: StackRun) -> None:
    deployment = homelab_run.one("kubernetes:apps/v1:Deployment", "ollama-deployment")
    spec = deployment.plain_inputs["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    (term,) = terms
    expressions = {e["key"]: e for e in term["matchExpressions"]}
    assert expressions["liqo.io/type"]["values"] == ["virtual-node"]
    assert expressions["liqo.io/remote-cluster-id"]["values"] == ["aws-gpu"]
    assert {
        "key": "virtual-node.liqo.io/not-allowed",
        "operator": "Exists",
        "effect": "NoExecute",
    } in spec["tolerations"]
    # A WAN flap or control-node reboot must not evict a loaded model: the outage taints are
    # tolerated with no time limit (a tolerationSeconds, or none at all, means eviction).
    outage = {
        t["key"]: t
        for t in spec["tolerations"]
        if t["key"] in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
    }
    assert set(outage) == {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    for item in outage.values():
        assert item["effect"] == "NoExecute"
        assert item["operator"] == "Exists"
        assert "tolerationSeconds" not in item
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["runtimeClassName"] == "nvidia"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["OLLAMA_HOST"].startswith("0.0.0.0:")
    assert env["OLLAMA_KEEP_ALIVE"] == "30m"
    assert env["OLLAMA_NOPRUNE"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/tags"
    assert ":" in container["image"]
    assert not container["image"].endswith(":latest")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True


def test_namespace_offloading_is_remote_only(homelab_run: StackRun) -> None:
    offloading = homelab_run.one(
        "kubernetes:offloading.liqo.io/v1beta1:NamespaceOffloading", "ollama-offloading"
    ).plain_inputs
    assert offloading["metadata"] == {"name": "offloading", "namespace": "llm"}
    assert offloading["spec"]["podOffloadingStrategy"] == "Remote"
    assert offloading["spec"]["namespaceMappingStrategy"] == "EnforceSameName"
    namespace = homelab_run.one("kubernetes:core/v1:Namespace", "ollama-namespace").plain_inputs
    assert namespace["metadata"]["labels"]["liqo.io/scheduling-enabled"] == "true"


def test_models_volume_is_the_s3_bucket_read_only(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    csi = aws_gpu_run.one(RELEASE, "model-store-csi-driver").plain_inputs
    assert csi["chart"] == "aws-mountpoint-s3-csi-driver"
    assert csi["version"]
    exported = aws_gpu_run.exports["modelsVolume"]
    spec = exported["spec"]
    bucket = aws_gpu_run.exports["modelBucketName"]
    assert spec["csi"]["driver"] == "s3.csi.aws.com"
    assert spec["csi"]["volumeAttributes"]["bucketName"] == bucket
    assert spec["accessModes"] == ["ReadOnlyMany"]
    assert "read-only" in spec["mountOptions"]
    assert spec["claimRef"] == {"namespace": "llm", "name": "ollama-models"}
    assert spec["storageClassName"] == ""
    # The homelab declares the AWS volume (on the AWS cluster) and its inert twin from the very
    # same manifest, each bound to the uid of the claim it belongs to.
    aws_provider = homelab_run.one("pulumi:providers:kubernetes", "aws-gpu-k8s")
    for volume_name, claim_name, remote in (
        ("ollama-remote-models-volume", "ollama-remote-models-claim", True),
        ("ollama-models-twin", "ollama-models-claim", False),
    ):
        volume = homelab_run.one("kubernetes:core/v1:PersistentVolume", volume_name)
        claim = homelab_run.one("kubernetes:core/v1:PersistentVolumeClaim", claim_name)
        bound = volume.plain_inputs["spec"]
        assert {k: v for k, v in bound.items() if k != "claimRef"} == {
            k: v for k, v in spec.items() if k != "claimRef"
        }
        assert bound["claimRef"]["name"] == "ollama-models"
        assert bound["claimRef"]["uid"], "a volume names the uid of its claim"
        assert claim.urn in volume.dependencies
        assert claim.plain_inputs["spec"]["volumeName"] == exported["metadata"]["name"]
        assert claim.provider.startswith(aws_provider.urn) == remote
        assert volume.provider.startswith(aws_provider.urn) == remote
    assert not aws_gpu_run.by_type("kubernetes:core/v1:PersistentVolume"), (
        "the aws-gpu stack only exports the volume; the homelab owns it with its claim"
    )


def test_network_policies_admit_only_clients(homelab_run: StackRun) -> None:
    local = homelab_run.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "ollama-policy")
    (rule,) = local.plain_inputs["spec"]["ingress"]
    namespaces = [
        s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in rule["from"]
    ]
    assert namespaces == ["open-webui"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 11434}]
    remote = homelab_run.one(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy", "ollama-remote-policy"
    )
    (remote_rule,) = remote.plain_inputs["spec"]["ingress"]
    # Where the policy is enforced (AWS), only gpu-waker on the control node gets in: its pod
    # range, the first /24 of awsPodCidr. Not the homelab's pods through Liqo's tunnel.
    assert remote_rule["from"] == [{"ipBlock": {"cidr": "10.52.0.0/24"}}]
    assert remote_rule["ports"] == [{"protocol": "TCP", "port": 11434}]


def test_open_webui_needs_login_and_talks_to_ollama_through_gpu_waker(
    homelab_run: StackRun,
) -> None:
    deployment = homelab_run.one("kubernetes:apps/v1:Deployment", "open-webui-deployment")
    (container,) = deployment.plain_inputs["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "OLLAMA_BASE_URL" not in env  # no direct, unauthenticated path to Ollama
    assert env["ENABLE_OLLAMA_API"] == "False"
    assert env["ENABLE_OPENAI_API"] == "True"
    assert env["OPENAI_API_BASE_URLS"] is None  # from the Secret
    assert env["OPENAI_API_KEYS"] is None
    aws = homelab_run.referenced["aws-gpu"]
    secret_data = homelab_run.one("kubernetes:core/v1:Secret", "open-webui-secrets").plain_inputs[
        "stringData"
    ]
    # The AWS side sleeps by default: Open WebUI calls the wake gate on the first server, which
    # forwards to gpu-waker on AWS.
    assert aws.values["wakeGate"]["sleeps"] is True
    first_server = offline.stack_config_file("homelab")["hybridgpu:homelab"]["controlPlanes"][0]
    gate = f"http://{first_server['ip']}:{GPU_WAKER_PORT}"
    assert secret_data["OPENAI_API_BASE_URLS"] == gate + "/v1"
    assert secret_data["OPENAI_API_KEYS"] == aws.values["gpuWakerToken"]
    assert "gpuWakerToken" in aws.secret_names
    # The gate's longest hold, then gpu-waker's on AWS, then a model load.
    assert int(env["AIOHTTP_CLIENT_TIMEOUT"]) > 600 + 600 + 300
    assert env["WEBUI_AUTH"] == "True"
    assert env["ENABLE_SIGNUP"] == "False"
    assert env["WEBUI_ADMIN_EMAIL"] == "ops@example.com"
    assert env["WEBUI_ADMIN_PASSWORD"] is None  # from the Secret, not inline
    secret = homelab_run.one("kubernetes:core/v1:Secret", "open-webui-secrets")
    assert any(p.startswith("stringData") for p in secret.secret_inputs)
    ingress = homelab_run.one("kubernetes:networking.k8s.io/v1:Ingress", "open-webui-ingress")
    assert ingress.plain_inputs["spec"]["ingressClassName"] == "traefik"
    assert ingress.plain_inputs["spec"]["rules"][0]["host"] == "chat.lab.example"
    claim = homelab_run.one("kubernetes:core/v1:PersistentVolumeClaim", "open-webui-data")
    # SQLite never on NFS: a node-local volume.
    assert claim.plain_inputs["spec"]["storageClassName"] == "local-path"
    assert "openWebuiAdminPassword" in homelab_run.secret_exports


def test_pure_renderers_take_cluster_id() -> None:
    offloading = render_offloading("llm", "aws-x")
    terms = offloading["spec"]["clusterSelector"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["aws-x"]
    settings = OllamaSettings("llm", "ollama/ollama:1.0.0", "5m", 1, 8, "aws-x", ("open-webui",))
    spec = render_deployment(settings)["spec"]["template"]["spec"]
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][1]["values"] == ["aws-x"]


# ---------------------------------------------------------------------------------------------
# The liqoctl scripts, checked by shellcheck and run against a fake liqoctl
# ---------------------------------------------------------------------------------------------


def test_peering_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck(render_peer_script(SETTINGS, GATEWAY), tmp_path, "peer.sh")
    shellcheck(render_unpeer_script(SETTINGS), tmp_path, "unpeer.sh")


def test_peer_script_writes_private_kubeconfigs_and_removes_them(tmp_path: Path) -> None:
    result = fake_liqoctl.run_script(render_peer_script(SETTINGS, GATEWAY), tmp_path)
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "log").read_text()
    assert "ARGS peer" in log
    assert "--resource nvidia.com/gpu=1" in log
    files = [line.split(" ", 3) for line in log.splitlines() if line.startswith("FILE")]
    assert {(mode, content) for _, _, mode, content in files} == {
        ("600", "consumer-kubeconfig-content"),
        ("600", "provider-kubeconfig-content"),
    }
    for _, path, _, _ in files:
        assert not os.path.exists(path)  # removed after
    assert "kubeconfig-content" not in result.stdout + result.stderr  # nothing printed


def test_peer_script_refuses_a_missing_tampered_or_different_liqoctl(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    missing = fake_liqoctl.run_script(
        render_peer_script(SETTINGS, GATEWAY), tmp_path / "a", archive=b""
    )
    assert missing.returncode == 1
    assert "could not download liqoctl v1.2.0" in missing.stderr
    (tmp_path / "t").mkdir()
    tampered = fake_liqoctl.run_script(
        render_peer_script(SETTINGS, GATEWAY),
        tmp_path / "t",
        archive=fake_liqoctl.archive_bytes(fake_liqoctl.FAKE_LIQOCTL + "# one more line\n"),
    )
    assert tampered.returncode == 1
    assert f"not the pinned {fake_liqoctl.ARCHIVE_SHA256}" in tampered.stderr
    assert "refusing to run it" in tampered.stderr
    assert list((tmp_path / "t" / "argv").iterdir()) == []  # not even `liqoctl version` ran
    (tmp_path / "b").mkdir()
    other = fake_liqoctl.run_script(
        render_peer_script(SETTINGS, GATEWAY), tmp_path / "b", version="v1.1.2"
    )
    assert other.returncode == 1
    assert "v1.1.2" in other.stderr
    assert "v1.2.0" in other.stderr
    assert not (tmp_path / "b" / "log").exists()  # never peered


def test_the_real_liqoctl_archives_are_pinned_by_sha256() -> None:
    """Every platform the script maps to has a pinned digest for the default Liqo version, and
    the rendered script pins them (values: krew-index plugins/liqo.yaml, see the module)."""
    settings = PeeringSettings(LIQO_DEFAULT_VERSION, 30840, 1240, "4", "16Gi", 110, {})
    pinned = LIQOCTL_SHA256[LIQO_DEFAULT_VERSION]
    assert set(pinned) == set(PLATFORMS.values())
    script = render_peer_script(settings, GATEWAY)
    for digest in pinned.values():
        assert len(digest) == 64
        assert int(digest, 16) >= 0
        assert f"sha={digest}" in script
    assert f"releases/download/{LIQO_DEFAULT_VERSION}" in script
    assert "command -v liqoctl" not in script, "never the liqoctl on PATH"
    unknown = PeeringSettings("v9.9.9", 30840, 1240, "4", "16Gi", 110, {})
    assert "sha=" not in render_peer_script(unknown, GATEWAY)


def test_a_liqo_version_without_pinned_digests_refuses_to_peer(tmp_path: Path) -> None:
    unknown = PeeringSettings("v9.9.9", 30840, 1240, "4", "16Gi", 110, {})
    result = fake_liqoctl.run_script(render_peer_script(unknown, GATEWAY), tmp_path)
    assert result.returncode == 1
    assert "no pinned liqoctl v9.9.9 checksum" in result.stderr
    assert list((tmp_path / "argv").iterdir()) == []


def test_unpeer_tolerates_only_an_absent_peering(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    gone = fake_liqoctl.run_script(
        render_unpeer_script(SETTINGS),
        tmp_path / "a",
        extra_env={"FAKE_UNPEER_ERROR": 'foreignclusters "aws-gpu" not found'},
    )
    assert gone.returncode == 0, gone.stderr
    (tmp_path / "b").mkdir()
    broken = fake_liqoctl.run_script(
        render_unpeer_script(SETTINGS),
        tmp_path / "b",
        extra_env={"FAKE_UNPEER_ERROR": "connection refused"},
    )
    assert broken.returncode == 1
    assert "connection refused" in broken.stderr


@pulumi.runtime.test
def test_peering_component_keeps_kubeconfigs_secret():
    from components.federation.liqo_peering import LiqoPeering, LiqoPeeringArgs

    peering = LiqoPeering(
        "probe-peering",
        LiqoPeeringArgs(
            settings=SETTINGS,
            gateway_address=pulumi.Output.from_input("10.200.0.9"),
            consumer_kubeconfig="consumer",
            provider_kubeconfig="provider",
        ),
    )

    def check(values: list) -> None:
        create, environment_is_secret = values
        assert "--gw-client-address 10.200.0.9" in create
        assert environment_is_secret

    environment_is_secret = pulumi.Output.from_input(
        pulumi.Output.is_secret(peering.command.environment)  # type: ignore[arg-type]
    )
    return pulumi.Output.all(peering.command.create, environment_is_secret).apply(check)


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        (
            "aws-gpu",
            [
                "hybridgpu:federation:Liqo  liqo",
                "hybridgpu:llm:ModelStore  model-store",
                "hybridgpu:platform:NodeTerminationHandler",
                "hybridgpu:platform:NvidiaDevicePlugin",
            ],
        ),
        (
            "homelab",
            [
                "hybridgpu:federation:Liqo  liqo",
                "command:local:Command  liqo-peering-liqoctl",
                "NamespaceOffloading  ollama-offloading",
                "kubernetes:apps/v1:Deployment  ollama-deployment",
                "hybridgpu:llm:OpenWebUi  open-webui",
                "hybridgpu:platform:GpuOperator",
                "hybridgpu:platform:JupyterHub",
                "hybridgpu:platform:CudaValidation",
                "hybridgpu:platform:StorageClasses",
            ],
        ),
    ],
)
def test_offline_plan_lists_federation_and_platform(
    stack: str, expected: list[str], aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    from tools.plan import artifacts, resource_tree

    run = aws_gpu_run if stack == "aws-gpu" else homelab_run
    tree = "\n".join(resource_tree(run))
    for line in expected:
        assert line in tree, line
    names = {name for name, _, _ in artifacts(run)}
    assert "liqo-release.values.yaml" in names
