"""Pure renderers of the AWS side (no mocks): k3s configs, cloud-init, IAM/S3 policy documents,
kubeconfig rewrite, budget and instance helpers; checked by the real cloud-init, shellcheck and
moto's AWS API model."""

from __future__ import annotations

import base64
import gzip
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
from components.aws.k3s_node import AmiQuery, SpotOptions, ami_filters
from components.aws.model_bucket import ModelBucketArgs
from components.aws.model_bucket_policy import bucket_policy
from components.aws.node_iam import (
    EC2_ASSUME_ROLE_POLICY,
    model_read_policy,
    parameter_read_policy,
)
from components.base.ssh_keys import host_key_from_seed
from components.k3s.kubeconfig import fetch_kubeconfig_command, rewrite_kubeconfig_server
from components.kube.labels import CONTROL_PLANE_TAINT, GPU_TAINT, gpu_node_labels
from tests.real_tools import cloud_init_schema, require, run

TEMPLATES = Path(ci.__file__).parent / "templates"
TOKEN = "abc123XYZ" * 5
VERSION = "v1.33.5+k3s1"
BUCKET_ARN = "arn:aws:s3:::hybridgpu-models-0123456789ab"
PATH_ARN = "arn:aws:ssm:us-west-2:123456789012:parameter/hybridgpu/aws-gpu/gpu-worker"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBlahBlahBlahBlahBlahBlahBlahBlahBlahBlah op@lab"


def _server_config() -> dict[str, Any]:
    text = ci.render_k3s_server_config(
        private_ip="10.100.1.10",
        overlay_ip="10.200.0.1",
        pod_cidr="10.52.0.0/16",
        service_cidr="10.53.0.0/16",
        node_taints=(CONTROL_PLANE_TAINT,),
    )
    return yaml.safe_load(text)


def _agent_config(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "server_ip": "10.100.1.10",
        "node_labels": gpu_node_labels("nvidia-t4"),
        "node_taints": (GPU_TAINT,),
    } | overrides
    return yaml.safe_load(ci.render_k3s_agent_config(**args))


def _bootstrap(heal: bool = False) -> str:
    return ci.render_bootstrap_user_data(
        region="us-west-2",
        parameter_path="/hybridgpu/aws-gpu/gpu-worker",
        ssh_user="ubuntu",
        ssh_public_key=SSH_KEY,
        heal=heal,
    )


# --- k3s configs ----------------------------------------------------------------------------


def test_server_config_runs_k3s_on_the_vpc_and_answers_on_the_overlay() -> None:
    config = _server_config()
    assert config["node-ip"] == config["advertise-address"] == "10.100.1.10"
    # The homelab's Liqo reaches the API on the overlay IP: it must be on the certificate.
    assert config["tls-san"] == ["10.100.1.10", "10.200.0.1"]
    assert "flannel-iface" not in config  # flannel on the VPC interface, not nebula1
    assert "bind-address" not in config  # API on all addresses; the security group closes 6443


def test_server_config_uses_the_aws_cluster_ranges_and_secure_defaults() -> None:
    config = _server_config()
    assert config["cluster-cidr"] == "10.52.0.0/16"
    assert config["service-cidr"] == "10.53.0.0/16"
    assert config["cluster-dns"] == "10.53.0.10"
    assert config["disable"] == ["traefik", "servicelb"]
    assert config["write-kubeconfig-mode"] == "0600"  # a string: YAML 0600 would be octal 384
    assert config["secrets-encryption"] is True
    # Tokens live in their own 0600 files, never in the config text; agents get their own.
    assert config["token-file"] == ci.K3S_TOKEN_PATH
    assert config["agent-token-file"] == ci.K3S_AGENT_TOKEN_PATH
    assert "token" not in config
    # Only system pods that tolerate it land on the control node.
    assert config["node-taint"] == [CONTROL_PLANE_TAINT]


def test_agent_joins_with_the_agent_token_on_the_private_address_and_is_gpu_only() -> None:
    config = _agent_config()
    assert config["server"] == "https://10.100.1.10:6443"
    assert config["token-file"] == ci.K3S_AGENT_TOKEN_PATH != ci.K3S_TOKEN_PATH
    assert "node-ip" not in config
    assert "flannel-iface" not in config
    assert config["node-label"] == [
        "node-type=gpu",
        "gpu-type=nvidia-t4",
        "nvidia.com/gpu.present=true",
    ]
    assert config["node-taint"] == [GPU_TAINT]
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
    assert 'readonly version="v1.33.5+k3s1"' in script
    assert 'INSTALL_K3S_VERSION="$version"' in script
    assert "get.k3s.io" not in script
    assert 'INSTALL_K3S_EXEC="agent"' in script
    assert "@" not in script.replace("\n# ", "")  # every placeholder filled


def test_agent_start_never_blocks_and_server_start_is_bounded() -> None:
    agent = ci.render_install_script(role="agent", k3s_version=VERSION)
    server = ci.render_install_script(role="server", k3s_version=VERSION)
    assert 'readonly unit="k3s-agent.service"' in agent
    assert 'systemctl start --no-block "$unit"' in agent
    assert f'timeout {ci.SERVER_START_TIMEOUT_SECONDS} systemctl start "$unit"' in server


def test_k3s_files_are_root_only_and_restart_k3s_on_change() -> None:
    files = {
        f.name: f
        for f in ci.k3s_files(role="agent", k3s_version=VERSION, config="x: 1\n", token=TOKEN)
    }
    assert files["k3s/agent-token"].path == ci.K3S_AGENT_TOKEN_PATH
    assert files["k3s/agent-token"].content == TOKEN
    for name in ("k3s/config.yaml", "k3s/agent-token"):
        assert files[name].mode == "0600"
        assert files[name].owner == "root"
        assert files[name].restart == ("k3s-agent.service",)
    assert files["k3s/install"].mode == "0755"
    server_copy = ci.server_agent_token_file(TOKEN)
    assert server_copy.restart == ("k3s.service",)


@pytest.mark.parametrize("token", ["", "with-dash", "has space", "sp€cial"])
def test_token_must_be_alphanumeric(token: str) -> None:
    with pytest.raises(ValueError, match="alphanumeric"):
        ci.k3s_files(role="server", k3s_version=VERSION, config="", token=token)
    # The CA-pinned agent form passes.
    ci.k3s_files(
        role="agent", k3s_version=VERSION, config="", token=f"K10{'ab' * 32}::node:{TOKEN}"
    )


# --- bootstrap user data ----------------------------------------------------------------------


def test_bootstrap_user_data_holds_no_secret_and_installs_only_the_agent() -> None:
    document = yaml.safe_load(_bootstrap(heal=True))
    paths = [entry["path"] for entry in document["write_files"]]
    assert paths == [
        ci.AGENT_PATH,
        "/etc/systemd/system/hybridgpu-node-sync.service",
        "/etc/systemd/system/hybridgpu-node-sync.timer",
        "/etc/systemd/system/hybridgpu-node-heal.service",
        "/etc/systemd/system/hybridgpu-node-heal.timer",
    ]
    # The image's host keys go; sshd serves the program's key after the first sync.
    assert document["ssh_deletekeys"] is True
    assert document["ssh_genkeytypes"] == ["ed25519"]  # the type the sync overwrites
    assert document["ssh_authorized_keys"] == [SSH_KEY]
    agent = gzip.decompress(base64.b64decode(document["write_files"][0]["content"])).decode()
    assert agent == ci.AGENT_SOURCE.read_text()
    service = document["write_files"][1]["content"]
    assert "--region us-west-2 --path /hybridgpu/aws-gpu/gpu-worker" in service
    assert "Before=ssh.service nebula.service k3s.service k3s-agent.service" in service
    assert document["runcmd"][-1] == ["systemctl", "start", "hybridgpu-node-sync.service"]
    text = _bootstrap(heal=True)
    for marker in ("PRIVATE KEY", "token", "K10"):
        assert marker not in text.replace("hybridgpu-node", ""), marker


def test_the_worker_bootstrap_has_no_heal_timer_and_fits_ec2() -> None:
    paths = [e["path"] for e in yaml.safe_load(_bootstrap())["write_files"]]
    assert not [p for p in paths if "heal" in p]
    assert len(_bootstrap(heal=True).encode()) < ci.USER_DATA_LIMIT_BYTES


def test_user_data_over_the_ec2_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="16384"):
        ci.render_bootstrap_user_data(
            region="us-west-2",
            parameter_path="/p",
            ssh_user="ubuntu",
            ssh_public_key=SSH_KEY,
            heal=False,
            agent_source="".join(f"# {i:06d} {hash(str(i))}\n" for i in range(4000)),
        )


def test_rendering_is_deterministic() -> None:
    assert _bootstrap(heal=True) == _bootstrap(heal=True)


def test_cloud_init_accepts_the_bootstrap_documents(tmp_path: Path) -> None:
    for heal in (False, True):
        cloud_init_schema(_bootstrap(heal), tmp_path, f"bootstrap-{heal}.yaml")


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
    }
    bash["install-k3s.template.sh"] = (TEMPLATES / "install-k3s.sh").read_text()
    _shellcheck(bash, tmp_path, "bash")
    data = yaml.safe_load(_bootstrap(heal=True))
    posix = {
        "runcmd.sh": ci.runcmd_as_shell(data["runcmd"]),
        "fetch-kubeconfig.sh": "#!/bin/sh\n" + fetch_kubeconfig_command(),
    }
    _shellcheck(posix, tmp_path, "sh")


# --- SSH identity -----------------------------------------------------------------------------


def test_ssh_host_key_is_deterministic_and_read_by_the_real_ssh_keygen(tmp_path: Path) -> None:
    key = host_key_from_seed(bytes(range(32)), "control-node")
    assert key == host_key_from_seed(bytes(range(32)), "control-node")
    assert key != host_key_from_seed(bytes(range(1, 33)), "control-node")
    path = tmp_path / "ssh_host_ed25519_key"
    path.write_text(key.private_openssh)
    path.chmod(0o600)
    derived = run(require("ssh-keygen"), "-y", "-f", path).stdout.strip()
    assert derived == key.public_line.strip()
    assert key.public_line.startswith(key.public_key + " ")
    fingerprint = run(require("ssh-keygen"), "-l", "-f", path).stdout
    assert "(ED25519)" in fingerprint
    files = {
        f.name: f
        for f in ci.ssh_files(
            host_key=key.private_openssh,
            host_public_line=key.public_line,
            user="ubuntu",
            authorized_keys=SSH_KEY,
        )
    }
    assert files["ssh/host-key"].mode == "0600"
    assert files["ssh/host-key"].restart == ("ssh.service",)
    assert files["ssh/authorized_keys"].path == "/home/ubuntu/.ssh/authorized_keys"
    assert files["ssh/authorized_keys"].owner == "ubuntu"
    assert files["ssh/authorized_keys"].content == SSH_KEY + "\n"


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


def test_model_read_policy_names_only_the_models_prefix_of_this_bucket() -> None:
    statements = json.loads(model_read_policy(BUCKET_ARN, "ollama/"))["Statement"]
    assert {(s["Action"], s["Resource"]) for s in statements} == {
        ("s3:ListBucket", BUCKET_ARN),
        ("s3:GetObject", f"{BUCKET_ARN}/ollama/*"),
    }
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["ollama/", "ollama/*"]}}
    assert all(s["Effect"] == "Allow" for s in statements)
    for bad in ("*", "arn:aws:s3:::*", f"{BUCKET_ARN}/*", "bucket"):
        with pytest.raises(ValueError, match="one bucket"):
            model_read_policy(bad, "ollama/")
    for prefix in ("", "ollama", "/ollama/", "*/"):
        with pytest.raises(ValueError, match="folder"):
            model_read_policy(BUCKET_ARN, prefix)


def test_parameter_read_policy_names_only_the_nodes_own_path() -> None:
    (statement,) = json.loads(parameter_read_policy(PATH_ARN))["Statement"]
    assert statement["Resource"] == [PATH_ARN, f"{PATH_ARN}/*"]
    assert set(statement["Action"]) == {
        "ssm:GetParameter",
        "ssm:GetParameters",
        "ssm:GetParametersByPath",
    }
    for bad in ("arn:aws:ssm:us-west-2:1:parameter/*", f"{PATH_ARN}/", "arn:aws:s3:::x"):
        with pytest.raises(ValueError, match="parameter path"):
            parameter_read_policy(bad)


UPLOADER_ARN = "arn:aws:iam::123456789012:role/model-uploader"


def test_bucket_policy_denies_plain_http() -> None:
    (statement, _) = json.loads(bucket_policy(BUCKET_ARN, uploader_role_arn=UPLOADER_ARN))[
        "Statement"
    ]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [BUCKET_ARN, f"{BUCKET_ARN}/*"]


@mock_aws
def test_policy_documents_are_accepted_by_the_aws_api_model() -> None:
    """moto's IAM validates policy grammar (it rejects a misspelt Effect or a missing Resource);
    its S3 stores any policy text, so the bucket policy also goes through moto's validator."""
    policy = bucket_policy(
        BUCKET_ARN,
        uploader_role_arn=UPLOADER_ARN,
        reader_role_arns=["arn:aws:iam::123456789012:role/gpu-worker"],
        vpc_endpoint_id="vpce-0123456789abcdef0",
        stack_keys=["ollama/"],
    )
    IAMPolicyDocumentValidator(policy).validate()
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_role(RoleName="gpu-worker", AssumeRolePolicyDocument=EC2_ASSUME_ROLE_POLICY)
    iam.create_policy(
        PolicyName="model-read", PolicyDocument=model_read_policy(BUCKET_ARN, "ollama/")
    )
    iam.create_policy(PolicyName="node-files", PolicyDocument=parameter_read_policy(PATH_ARN))
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = BUCKET_ARN.rsplit(":", 1)[-1]
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
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


def test_spot_options_are_checked_like_aws_does() -> None:
    assert SpotOptions().valid_until == "2036-01-01T00:00:00Z"  # not the API's 7-day default
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
