"""Pure renderers of the AWS side (no mocks): k3s configs, cloud-init, IAM/S3 policy documents,
kubeconfig rewrite, budget and instance helpers; checked by the real cloud-init, shellcheck and
moto's AWS API model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws
from moto.iam.policy_validation import IAMPolicyDocumentValidator

from components.aws import cloud_init as ci
from components.aws.budget import CostBudgetArgs, limit_amount, tag_filter_value
from components.aws.k3s_node import AmiQuery, SpotOptions, ami_filters, market_options
from components.aws.model_bucket import ModelBucketArgs, tls_only_policy
from components.aws.node_iam import EC2_ASSUME_ROLE_POLICY, model_read_policy
from components.k3s.kubeconfig import fetch_kubeconfig_command, rewrite_kubeconfig_server
from components.kube.labels import gpu_node_labels
from components.nebula.install import NebulaFiles, render_cloud_init_fragment
from tests.real_tools import cloud_init_schema, require, run

TOKEN = "abc123XYZ" * 5
VERSION = "v1.33.5+k3s1"
BUCKET_ARN = "arn:aws:s3:::hybridgpu-models-0123456789ab"


def _server_config() -> dict[str, Any]:
    text = ci.render_k3s_server_config(
        overlay_ip="10.200.0.1", pod_cidr="10.52.0.0/16", service_cidr="10.53.0.0/16"
    )
    return yaml.safe_load(text)


def _agent_config(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "server_ip": "10.200.0.1",
        "overlay_ip": "10.200.2.1",
        "node_labels": gpu_node_labels("nvidia-t4"),
    } | overrides
    return yaml.safe_load(ci.render_k3s_agent_config(**args))


def _node_document(role: ci.K3sRole = "agent", extra: dict[str, Any] | None = None) -> str:
    config = ci.render_k3s_agent_config(
        server_ip="10.200.0.1", overlay_ip="10.200.2.1", node_labels=gpu_node_labels("t4")
    )
    part = ci.k3s_install_part(
        role=role, k3s_version=VERSION, k3s_config=config, token=TOKEN, overlay_ip="10.200.2.1"
    )
    return ci.render_cloud_config(part, extra_parts=extra)


def _nebula_fragment() -> dict[str, Any]:
    files = NebulaFiles(config_yaml="pki: {}\n", ca_pem="CA\n", cert_pem="CERT\n", key_pem="KEY\n")
    return render_cloud_init_fragment(files)


# --- k3s configs ----------------------------------------------------------------------------


def test_server_config_puts_everything_on_the_overlay() -> None:
    config = _server_config()
    assert config["node-ip"] == config["advertise-address"] == "10.200.0.1"
    assert config["tls-san"] == ["10.200.0.1"]
    assert config["flannel-iface"] == "nebula1"
    assert "bind-address" not in config  # API on all addresses; the security group closes 6443


def test_server_config_uses_the_aws_cluster_ranges_and_secure_defaults() -> None:
    config = _server_config()
    assert config["cluster-cidr"] == "10.52.0.0/16"
    assert config["service-cidr"] == "10.53.0.0/16"
    assert config["cluster-dns"] == "10.53.0.10"
    assert config["disable"] == ["traefik", "servicelb"]
    assert config["write-kubeconfig-mode"] == "0600"  # a string: YAML 0600 would be octal 384
    assert config["secrets-encryption"] is True
    # The token lives in its own 0600 file, never in the config text.
    assert config["token-file"] == ci.K3S_TOKEN_PATH
    assert "token" not in config


def test_agent_config_joins_the_server_over_the_overlay_with_gpu_labels() -> None:
    config = _agent_config()
    assert config["server"] == "https://10.200.0.1:6443"
    assert config["node-ip"] == "10.200.2.1"
    assert config["flannel-iface"] == "nebula1"
    assert config["token-file"] == ci.K3S_TOKEN_PATH
    assert config["node-label"] == [
        "node-type=gpu",
        "gpu-type=nvidia-t4",
        "nvidia.com/gpu.present=true",
    ]
    assert config["default-runtime"] == "nvidia"
    assert "default-runtime" not in _agent_config(default_runtime=None)


@pytest.mark.parametrize("bad", ["NVIDIA T4", "-t4", "a" * 64, "t4/16gb"])
def test_gpu_type_label_must_be_a_kubernetes_label_value(bad: str) -> None:
    with pytest.raises(ValueError, match="label value"):
        gpu_node_labels(bad)


def test_installer_and_release_are_pinned_to_the_configured_tag() -> None:
    script = ci.render_install_script(role="agent", k3s_version=VERSION)
    url = "https://raw.githubusercontent.com/k3s-io/k3s/v1.33.5%2Bk3s1/install.sh"
    assert ci.k3s_installer_url(VERSION) == url
    assert url in script
    assert "readonly K3S_VERSION=v1.33.5+k3s1" in script
    assert 'INSTALL_K3S_VERSION="$K3S_VERSION"' in script
    assert "get.k3s.io" not in script
    assert "INSTALL_K3S_EXEC=agent" in script


def test_agent_start_never_blocks_cloud_init_and_server_start_is_bounded() -> None:
    agent = ci.render_install_script(role="agent", k3s_version=VERSION)
    server = ci.render_install_script(role="server", k3s_version=VERSION)
    assert "systemctl enable k3s-agent" in agent
    assert "systemctl start --no-block k3s-agent" in agent
    assert "systemctl enable k3s\n" in server
    assert f"timeout {ci.SERVER_START_TIMEOUT_SECONDS} systemctl start k3s\n" in server


def test_k3s_waits_for_nebula_through_a_systemd_dropin() -> None:
    document = yaml.safe_load(_node_document("agent"))
    files = {entry["path"]: entry for entry in document["write_files"]}
    dropin = files["/etc/systemd/system/k3s-agent.service.d/10-after-nebula.conf"]["content"]
    assert "After=nebula.service" in dropin
    assert "Requires=nebula.service" in dropin
    assert f"ExecStartPre={ci.WAIT_SCRIPT_PATH} nebula1 10.200.2.1 120" in dropin
    server = yaml.safe_load(_node_document("server"))
    assert any(
        e["path"] == "/etc/systemd/system/k3s.service.d/10-after-nebula.conf"
        for e in server["write_files"]
    )


def test_secret_files_are_root_only() -> None:
    document = yaml.safe_load(_node_document())
    files = {entry["path"]: entry for entry in document["write_files"]}
    assert files[ci.K3S_TOKEN_PATH]["content"] == TOKEN
    for path in (ci.K3S_TOKEN_PATH, ci.K3S_CONFIG_PATH):
        assert files[path]["permissions"] == "0600"
        assert files[path]["owner"] == "root:root"


@pytest.mark.parametrize("token", ["", "with-dash", "has space", "sp€cial"])
def test_token_must_be_alphanumeric(token: str) -> None:
    with pytest.raises(ValueError, match="alphanumeric"):
        ci.k3s_install_part(
            role="server", k3s_version=VERSION, k3s_config="", token=token, overlay_ip="10.200.0.1"
        )


# --- cloud-config merge -----------------------------------------------------------------------


def test_cloud_config_runs_the_nebula_fragment_before_k3s() -> None:
    document = _node_document(extra=_nebula_fragment())
    assert document.startswith("#cloud-config\n")
    data = yaml.safe_load(document)
    runcmd = data["runcmd"]
    assert runcmd[-1] == [ci.INSTALL_SCRIPT_PATH]
    assert ["systemctl", "enable", "--now", "nebula.service"] in runcmd[:-1]
    paths = [entry["path"] for entry in data["write_files"]]
    assert "/etc/nebula/host.key" in paths
    assert ci.K3S_TOKEN_PATH in paths


def test_merge_deduplicates_packages_and_rejects_conflicts() -> None:
    merged = ci.merge_cloud_config_parts(
        [{"packages": ["curl", "jq"], "runcmd": ["a"]}, {"packages": ["curl"], "runcmd": ["b"]}]
    )
    assert merged == {"packages": ["curl", "jq"], "runcmd": ["a", "b"]}
    with pytest.raises(ValueError, match="unsupported keys"):
        ci.merge_cloud_config_parts([{"bootcmd": ["x"]}])
    twice = {"write_files": [{"path": "/etc/x", "content": ""}]}
    with pytest.raises(ValueError, match="/etc/x"):
        ci.merge_cloud_config_parts([twice, twice])


def test_user_data_over_the_ec2_limit_is_refused() -> None:
    big = {"write_files": [{"path": "/big", "content": "x" * ci.USER_DATA_LIMIT_BYTES}]}
    with pytest.raises(ValueError, match="16384"):
        ci.render_cloud_config(big)


def test_rendering_is_deterministic() -> None:
    assert _node_document(extra=_nebula_fragment()) == _node_document(extra=_nebula_fragment())


# --- real tools -------------------------------------------------------------------------------


def test_cloud_init_accepts_the_node_documents_merged_with_nebula(tmp_path: Path) -> None:
    for role in ("server", "agent"):
        cloud_init_schema(_node_document(role, _nebula_fragment()), tmp_path, f"{role}.yaml")


def _shellcheck(scripts: dict[str, str], tmp_path: Path, shell: str) -> None:
    paths = []
    for name, text in scripts.items():
        path = tmp_path / name
        path.write_text(text)
        paths.append(path)
    result = run(require("shellcheck"), f"--shell={shell}", "--severity=style", *paths, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_accepts_the_scripts(tmp_path: Path) -> None:
    bash = {
        f"install-{role}.sh": ci.render_install_script(role=role, k3s_version=VERSION)
        for role in ("server", "agent")
    } | {"wait-for-nebula.sh": ci.render_wait_for_nebula_script()}
    _shellcheck(bash, tmp_path, "bash")
    data = yaml.safe_load(_node_document(extra=_nebula_fragment()))
    posix = {
        "runcmd.sh": ci.runcmd_as_shell(data["runcmd"]),
        "fetch-kubeconfig.sh": "#!/bin/sh\n" + fetch_kubeconfig_command(),
    }
    _shellcheck(posix, tmp_path, "sh")


# --- kubeconfig -------------------------------------------------------------------------------

K3S_YAML = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context: {cluster: default, user: default}
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
"""


def test_kubeconfig_points_at_the_overlay_and_keeps_credentials() -> None:
    rewritten = yaml.safe_load(rewrite_kubeconfig_server(K3S_YAML, "https://10.200.0.1:6443"))
    assert rewritten["clusters"][0]["cluster"]["server"] == "https://10.200.0.1:6443"
    assert rewritten["clusters"][0]["cluster"]["certificate-authority-data"] == "Q0E="
    assert rewritten["users"][0]["user"]["client-key-data"] == "S0VZ"


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("kind: Pod\n", "https://10.200.0.1:6443"),
        ("kind: Config\nclusters: []\n", "https://10.200.0.1:6443"),
        (K3S_YAML, "http://10.200.0.1:6443"),
        ("not: [valid", "https://10.200.0.1:6443"),
    ],
)
def test_kubeconfig_rewrite_refuses_what_it_does_not_understand(text: str, url: str) -> None:
    with pytest.raises((ValueError, yaml.YAMLError)):
        rewrite_kubeconfig_server(text, url)


def test_kubeconfig_fetch_waits_for_cloud_init_bounded() -> None:
    command = fetch_kubeconfig_command()
    assert "timeout 900 cloud-init status --wait" in command
    assert command.rstrip().endswith("sudo cat /etc/rancher/k3s/k3s.yaml")


# --- policies, budget, instance helpers -------------------------------------------------------


def test_model_read_policy_names_only_this_bucket() -> None:
    statements = json.loads(model_read_policy(BUCKET_ARN))["Statement"]
    assert {(s["Action"], s["Resource"]) for s in statements} == {
        ("s3:ListBucket", BUCKET_ARN),
        ("s3:GetObject", f"{BUCKET_ARN}/*"),
    }
    assert all(s["Effect"] == "Allow" for s in statements)
    for bad in ("*", "arn:aws:s3:::*", f"{BUCKET_ARN}/*", "bucket"):
        with pytest.raises(ValueError, match="one bucket"):
            model_read_policy(bad)


def test_tls_only_policy_denies_plain_http() -> None:
    (statement,) = json.loads(tls_only_policy(BUCKET_ARN))["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [BUCKET_ARN, f"{BUCKET_ARN}/*"]


@mock_aws
def test_policy_documents_are_accepted_by_the_aws_api_model() -> None:
    """moto's IAM validates policy grammar (it rejects a misspelt Effect or a missing Resource);
    its S3 stores any policy text, so the bucket policy also goes through moto's validator."""
    IAMPolicyDocumentValidator(tls_only_policy(BUCKET_ARN)).validate()
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_role(RoleName="gpu-worker", AssumeRolePolicyDocument=EC2_ASSUME_ROLE_POLICY)
    iam.create_policy(PolicyName="model-read", PolicyDocument=model_read_policy(BUCKET_ARN))
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = BUCKET_ARN.rsplit(":", 1)[-1]
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=tls_only_policy(BUCKET_ARN))
    stored = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert stored["Statement"][0]["Sid"] == "DenyInsecureTransport"


def test_budget_filter_and_amount_formats() -> None:
    assert tag_filter_value("Project", "hybridgpu") == "user:Project$hybridgpu"
    assert limit_amount(100) == "100.00"
    assert limit_amount(12.5) == "12.50"
    with pytest.raises(ValueError, match="notifications"):
        CostBudgetArgs(monthly_limit_usd=1, thresholds_percent=range(1, 11), emails=["a@b.c"])
    with pytest.raises(ValueError, match="e-mail"):
        CostBudgetArgs(monthly_limit_usd=1, thresholds_percent=[50], emails=[])


def test_bucket_prefix_length_is_checked_before_aws_does() -> None:
    ModelBucketArgs(name_prefix="a" * 36)
    with pytest.raises(ValueError, match="at most 36"):
        ModelBucketArgs(name_prefix="a" * 37)


def test_market_options_follow_the_spot_settings() -> None:
    assert market_options(None) is None
    assert market_options(SpotOptions("one-time", "terminate")) == {
        "market_type": "spot",
        "spot_options": {
            "spot_instance_type": "one-time",
            "instance_interruption_behavior": "terminate",
        },
    }
    persistent = market_options(SpotOptions(max_price_usd_per_hour="0.40"))
    assert persistent is not None
    assert persistent["spot_options"] == {
        "spot_instance_type": "persistent",
        "instance_interruption_behavior": "stop",
        "max_price": "0.40",
        # not the API's 7-day default: an expired request no longer restarts the worker
        "valid_until": "2036-01-01T00:00:00Z",
    }
    with pytest.raises(ValueError, match="valid_until"):
        SpotOptions(valid_until="in a week")
    with pytest.raises(ValueError, match="persistent"):
        SpotOptions("one-time", "stop")


def test_ami_lookup_filters_on_name_architecture_and_hvm() -> None:
    filters = ami_filters(AmiQuery(owners=["099720109477"], name_pattern="ubuntu-*"))
    assert {f["name"]: f["values"] for f in filters} == {
        "name": ["ubuntu-*"],
        "architecture": ["x86_64"],
        "virtualization-type": ["hvm"],
    }
