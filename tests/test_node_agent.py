"""The EC2 node agent (runtime/node_agent/hybridgpu_node.py): the files the aws-gpu stack really
publishes, pulled from a real moto server on loopback by the agent run as the node runs it; its
SigV4 signer against botocore's; the uncordon path against recorded NTH node objects."""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore.auth
import pytest
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.aws.cloud_init import AGENT_SOURCE, K3S_AGENT_TOKEN_PATH, K3S_CONFIG_PATH
from tests.moto_server import REGION, TEST_KEY, MotoServer
from tools.offline import StackRun

WORKER_PATH = "/hybridgpu/aws-gpu/gpu-worker"
CONTROL_PATH = "/hybridgpu/aws-gpu/control-node"


def _load_agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hybridgpu_node", AGENT_SOURCE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hybridgpu_node"] = module
    spec.loader.exec_module(module)
    return module


agent = _load_agent()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "server.log")
    yield server
    server.stop()


def _published(run: StackRun, path: str) -> dict[str, str]:
    """The SSM parameters the stack declares below ``path`` (name -> value)."""
    values = {}
    for reg in run.by_type("aws:ssm/parameter:Parameter"):
        inputs = reg.plain_inputs
        if inputs["name"].startswith(path + "/"):
            assert inputs["type"] == "SecureString", inputs["name"]
            values[inputs["name"]] = inputs["value"]
    return values


def _publish(moto: MotoServer, values: dict[str, str]) -> None:
    ssm = moto.client("ssm")
    for name, value in values.items():
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


def _clear(moto: MotoServer, path: str) -> None:
    ssm = moto.client("ssm")
    names = [
        p["Name"]
        for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True)
        for p in page["Parameters"]
    ]
    for name in names:
        ssm.delete_parameter(Name=name)


def _sync(moto: MotoServer, root: Path, path: str) -> subprocess.CompletedProcess[str]:
    """The agent as the node runs it (a separate python process), with test endpoints."""
    env = moto.env(TEST_KEY)
    return subprocess.run(
        [
            sys.executable,
            str(AGENT_SOURCE),
            "sync",
            "--region",
            REGION,
            "--path",
            path,
            "--endpoint",
            moto.url,
            "--root",
            str(root),
            "--dry-run-commands",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_agent_runs_on_the_nodes_python() -> None:
    """Ubuntu 22.04 (the GPU AMI) ships Python 3.10: no newer syntax."""
    ast.parse(AGENT_SOURCE.read_text(), feature_version=(3, 10))
    assert "dt.UTC" not in AGENT_SOURCE.read_text()  # datetime.UTC is 3.11+


def test_worker_pulls_the_files_the_stack_publishes(
    aws_gpu_run: StackRun, moto: MotoServer, tmp_path: Path
) -> None:
    published = _published(aws_gpu_run, WORKER_PATH)
    _clear(moto, WORKER_PATH)
    _publish(moto, published)
    result = _sync(moto, tmp_path, WORKER_PATH)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / K3S_CONFIG_PATH.lstrip("/")).read_text())
    assert config["token-file"] == K3S_AGENT_TOKEN_PATH
    token_file = tmp_path / K3S_AGENT_TOKEN_PATH.lstrip("/")
    token = token_file.read_text()
    # The CA-pinned agent form, never the server token.
    assert token.startswith("K10")
    assert "::node:" in token
    assert token_file.stat().st_mode & 0o777 == 0o600
    host_key = tmp_path / "etc/ssh/ssh_host_ed25519_key"
    assert "OPENSSH PRIVATE KEY" in host_key.read_text()
    assert host_key.stat().st_mode & 0o777 == 0o600
    agent_copy = tmp_path / "usr/local/sbin/hybridgpu-node"
    assert agent_copy.read_text() == AGENT_SOURCE.read_text()  # split over 3 parameters
    # Installers, then restarts of what changed, then enabled units (logged, not run here).
    log = result.stderr
    assert "would run /usr/local/sbin/hybridgpu-install-k3s" in log
    assert "would run systemctl restart k3s-agent.service" in log
    assert "would run systemctl restart ssh.service" in log
    assert "would run systemctl enable --now k3s-agent.service" in log
    # A second sync changes nothing and restarts nothing.
    again = _sync(moto, tmp_path, WORKER_PATH)
    assert again.returncode == 0, again.stderr
    assert "0 changed" in again.stderr
    assert "restart" not in again.stderr


def test_a_file_that_fails_its_checksum_is_refused_and_nothing_changes(
    aws_gpu_run: StackRun, moto: MotoServer, tmp_path: Path
) -> None:
    published = _published(aws_gpu_run, WORKER_PATH)
    _clear(moto, WORKER_PATH)
    _publish(moto, published)
    assert _sync(moto, tmp_path, WORKER_PATH).returncode == 0
    config_path = tmp_path / K3S_CONFIG_PATH.lstrip("/")
    before = config_path.read_text()
    # An update half done (or tampering): the config changed, the manifest not yet.
    _publish(moto, {f"{WORKER_PATH}/files/k3s/config.yaml": before + "node-label: [evil=1]\n"})
    result = _sync(moto, tmp_path, WORKER_PATH)
    assert result.returncode == agent.EXIT_INCOMPLETE
    assert "k3s/config.yaml: sha256" in result.stderr
    assert "nothing was changed" in result.stderr
    assert config_path.read_text() == before


def test_a_missing_parameter_is_a_clear_error_not_a_half_configured_node(
    aws_gpu_run: StackRun, moto: MotoServer, tmp_path: Path
) -> None:
    published = _published(aws_gpu_run, WORKER_PATH)
    _clear(moto, WORKER_PATH)
    _publish(moto, {k: v for k, v in published.items() if not k.endswith("/ssh/host-key")})
    result = _sync(moto, tmp_path, WORKER_PATH)
    assert result.returncode == agent.EXIT_INCOMPLETE
    assert "ssh/host-key: missing" in result.stderr
    assert not (tmp_path / K3S_CONFIG_PATH.lstrip("/")).exists(), "no file may be written"
    _clear(moto, WORKER_PATH)
    nothing = _sync(moto, tmp_path, WORKER_PATH)
    assert nothing.returncode == agent.EXIT_INCOMPLETE
    assert f"no manifest at {WORKER_PATH}/manifest" in nothing.stderr


def test_no_credentials_is_a_clear_error(moto: MotoServer, tmp_path: Path) -> None:
    env = moto.env(None)
    result = subprocess.run(
        [
            sys.executable,
            str(AGENT_SOURCE),
            "sync",
            "--region",
            REGION,
            "--path",
            WORKER_PATH,
            "--imds",
            "http://127.0.0.1:9",  # nothing listens there
            "--root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "no AWS credentials" in result.stderr


def test_control_node_files_start_nebula_and_k3s_server_and_drain_before_agents(
    aws_gpu_run: StackRun, moto: MotoServer, tmp_path: Path
) -> None:
    published = _published(aws_gpu_run, CONTROL_PATH)
    manifest = json.loads(published[f"{CONTROL_PATH}/manifest"])
    names = {f["name"] for f in manifest["files"]}
    assert {"nebula/host.key", "nebula/config.yml", "k3s/cluster-token", "k3s/agent-token"} <= names
    assert manifest["run"][-1][:2] == ["/usr/local/sbin/hybridgpu-node", "drain-for-upgrade"]
    assert manifest["enable"] == ["nebula.service", "k3s.service"]
    _clear(moto, CONTROL_PATH)
    _publish(moto, published)
    result = _sync(moto, tmp_path, CONTROL_PATH)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "etc/nebula/host.key").stat().st_mode & 0o777 == 0o600
    assert "would run systemctl restart nebula.service" in result.stderr


# --- SigV4 -------------------------------------------------------------------------------------


def test_signature_matches_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    now = dt.datetime(2026, 5, 17, 12, 30, 45, tzinfo=dt.timezone.utc)  # noqa: UP017
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now)
    body = json.dumps({"Name": "/x", "WithDecryption": True}).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonSSM.GetParameter",
    }
    for token in (None, "session-token-value"):
        credentials = agent.Credentials(
            "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token
        )
        ours = agent.sign_v4(
            method="POST",
            host="ssm.us-west-2.amazonaws.com",
            path="/",
            region="us-west-2",
            service="ssm",
            headers=headers,
            body=body,
            credentials=credentials,
            now=now,
        )
        request = AWSRequest(
            method="POST", url="https://ssm.us-west-2.amazonaws.com/", data=body, headers=headers
        )
        request.context["timestamp"] = now.strftime("%Y%m%dT%H%M%SZ")
        SigV4Auth(
            BotoCredentials("AKIDEXAMPLE", credentials.secret_key, token), "ssm", "us-west-2"
        ).add_auth(request)
        assert ours["authorization"] == request.headers["Authorization"]


# --- heal: uncordon after a spot stop or an upgrade --------------------------------------------

NTH_NODE: dict[str, Any] = {
    # As NTH v1.25 leaves a node after a spot interruption notice (IMDS mode, taintNode: true):
    # cordoned, spot-itn taint with the event time, action/event labels.
    "metadata": {
        "name": "ip-10-100-1-20",
        "labels": {
            "node-type": "gpu",
            "aws-node-termination-handler/action": "cordon-and-drain",
            "aws-node-termination-handler/action-time": "1779000000",
            "aws-node-termination-handler/event-id": "spot-itn-1a2b3c",
        },
        "annotations": {},
    },
    "spec": {
        "unschedulable": True,
        "taints": [
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
            {
                "key": "aws-node-termination-handler/spot-itn",
                "value": "1779000000",
                "effect": "NoSchedule",
            },
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
        ],
    },
    "status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "nodeInfo": {"bootID": "boot-1", "kubeletVersion": "v1.33.5+k3s1"},
    },
}


def _node(**changes: Any) -> dict[str, Any]:
    node = json.loads(json.dumps(NTH_NODE))
    for dotted, value in changes.items():
        target = node
        *path, leaf = dotted.split(".")
        for part in path:
            target = target[part]
        target[leaf] = value
    return node


def test_heal_records_the_boot_of_the_interruption_and_waits() -> None:
    patch = agent.heal_patch(_node())
    assert patch == {"metadata": {"annotations": {agent.BOOT_ID_SEEN: "boot-1"}}}
    recorded = _node(**{"metadata.annotations": {agent.BOOT_ID_SEEN: "boot-1"}})
    assert agent.heal_patch(recorded) is None, "same boot: the stop is still ahead"
    stopped = _node(**{"status.conditions": [{"type": "Ready", "status": "Unknown"}]})
    assert agent.heal_patch(stopped) == patch, "recorded while stopped too"


def test_heal_gives_the_node_back_on_a_later_boot_and_keeps_other_taints() -> None:
    restarted = _node(
        **{
            "metadata.annotations": {agent.BOOT_ID_SEEN: "boot-1"},
            "status.nodeInfo": {"bootID": "boot-2", "kubeletVersion": "v1.33.5+k3s1"},
        }
    )
    patch = agent.heal_patch(restarted)
    assert patch is not None
    assert patch["spec"]["unschedulable"] is None
    assert [t["key"] for t in patch["spec"]["taints"]] == [
        "nvidia.com/gpu",
        "node.kubernetes.io/unschedulable",
    ]
    assert patch["metadata"]["labels"] == dict.fromkeys(agent.NTH_LABELS)
    assert patch["metadata"]["annotations"] == {agent.BOOT_ID_SEEN: None}
    not_ready = json.loads(json.dumps(restarted))
    not_ready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert agent.heal_patch(not_ready) is None


def test_heal_uncordons_after_an_upgrade_only_at_the_target_version() -> None:
    clean = _node(
        **{
            "metadata.labels": {"node-type": "gpu"},
            "metadata.annotations": {agent.DRAINED_FOR_UPGRADE: "v1.34.1+k3s1"},
            "spec.taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        }
    )
    assert agent.heal_patch(clean) is None, "still the old kubelet"
    upgraded = json.loads(json.dumps(clean))
    upgraded["status"]["nodeInfo"]["kubeletVersion"] = "v1.34.1+k3s1"
    assert agent.heal_patch(upgraded) == {
        "metadata": {"annotations": {agent.DRAINED_FOR_UPGRADE: None}},
        "spec": {"unschedulable": None},
    }
    # Upgraded while NTH still holds it on this boot: the mark goes, the cordon stays.
    held = _node(
        **{
            "metadata.annotations": {
                agent.DRAINED_FOR_UPGRADE: "v1.33.5+k3s1",
                agent.BOOT_ID_SEEN: "boot-1",
            }
        }
    )
    assert agent.heal_patch(held) == {
        "metadata": {"annotations": {agent.DRAINED_FOR_UPGRADE: None}}
    }


def test_drain_for_upgrade_only_touches_ready_nodes_on_another_version(tmp_path: Path) -> None:
    nodes = {
        "items": [
            _node(**{"metadata.name": "old", "metadata.labels": {"node-type": "gpu"}}),
            _node(
                **{
                    "metadata.name": "current",
                    "status.nodeInfo": {"bootID": "b", "kubeletVersion": "v1.34.1+k3s1"},
                }
            ),
            _node(
                **{
                    "metadata.name": "stopped",
                    "status.conditions": [{"type": "Ready", "status": "Unknown"}],
                }
            ),
        ]
    }
    fake = tmp_path / "kubectl"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(nodes)}\nEOF\n")
    fake.chmod(0o755)
    calls: list[list[str]] = []
    drained = agent.drain_for_upgrade([str(fake)], "node-type=gpu", "v1.34.1+k3s1", calls.append)
    assert drained == ["old"]
    assert calls[0][-1] == f"{agent.DRAINED_FOR_UPGRADE}=v1.34.1+k3s1"
    assert calls[1][1:3] == ["drain", "old"]


# --- renew-certs -------------------------------------------------------------------------------


def _certificate(path: Path, days: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, path.stem)])
    now = dt.datetime.now(dt.timezone.utc)  # noqa: UP017
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_renew_certs_restarts_k3s_only_within_the_window(tmp_path: Path) -> None:
    _certificate(tmp_path / "client-admin.crt", 400)
    _certificate(tmp_path / "serving-kube-apiserver.crt", 300)
    _certificate(tmp_path / "server-ca.crt", 10)  # CAs are not k3s's to renew at start
    calls: list[list[str]] = []
    assert agent.renew_certs(tmp_path, "k3s.service", 90, calls.append) is False
    _certificate(tmp_path / "client-admin.crt", 60)
    assert agent.expiring_certificates(tmp_path, 90) == ["client-admin.crt"]
    assert agent.renew_certs(tmp_path, "k3s.service", 90, calls.append) is True
    assert calls == [["systemctl", "restart", "k3s.service"]]


def test_manifest_checksums_are_of_the_decoded_content(aws_gpu_run: StackRun) -> None:
    published = _published(aws_gpu_run, WORKER_PATH)
    manifest = agent.parse_manifest(published[f"{WORKER_PATH}/manifest"])
    files = {n.removeprefix(f"{WORKER_PATH}/files/"): v for n, v in published.items()}
    for entry in manifest.files:
        names = (
            [entry.name]
            if entry.parts == 1
            else [f"{entry.name}/part-{i:02d}" for i in range(entry.parts)]
        )
        data = agent.decode(entry, "".join(files[n] for n in names))
        assert hashlib.sha256(data).hexdigest() == entry.sha256, entry.name
