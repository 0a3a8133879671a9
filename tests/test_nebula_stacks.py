"""The Nebula material the stacks actually plan, checked with the real tools: what the AWS control
node pulls from SSM and what each homelab VM receives over SSH verifies against the mesh CA and
passes `nebula -test`; keys stay secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from components.nebula.pki import parse_cert_pem
from stacks.config import ConfigError
from tests.real_tools import require, run
from tools import offline
from tools.mocks import redact
from tools.offline import StackRun

INSTANCE = "aws:ec2/instance:Instance"
CONTROL_FILES = "/hybridgpu/aws-gpu/control-node/files/nebula/"


def _control_nebula_files(run: StackRun) -> dict[str, str]:
    """/etc/nebula of the AWS control node, as published for its agent."""
    files = {}
    for reg in run.by_type("aws:ssm/parameter:Parameter"):
        name = reg.plain_inputs["name"]
        if name.startswith(CONTROL_FILES) and name.split("/")[-1] in (
            "config.yml",
            "ca.crt",
            "host.crt",
            "host.key",
        ):
            files[name.removeprefix(CONTROL_FILES)] = reg.plain_inputs["value"]
    return files


def check_with_real_nebula(files: dict[str, str], node_dir: Path) -> None:
    """Lay the node's /etc/nebula out in ``node_dir``: the cert must verify against the CA
    beside it and nebula must accept the config."""
    node_dir.mkdir()
    for name, text in files.items():
        (node_dir / name).write_text(text.replace("/etc/nebula", str(node_dir)))
    crt, ca = node_dir / "host.crt", node_dir / "ca.crt"
    verify = run(require("nebula-cert"), "verify", "-ca", ca, "-crt", crt, check=False)
    assert verify.returncode == 0, verify.stderr
    test = run(require("nebula"), "-test", "-config", node_dir / "config.yml", check=False)
    assert test.returncode == 0, test.stdout + test.stderr


def test_planned_nebula_files_pass_the_real_tools(aws_gpu_run: StackRun, tmp_path: Path) -> None:
    files = _control_nebula_files(aws_gpu_run)
    assert set(files) == {"config.yml", "ca.crt", "host.crt", "host.key"}
    assert files["ca.crt"] == aws_gpu_run.exports["nebulaCaBundle"]
    check_with_real_nebula(files, tmp_path / "control-node")
    details = parse_cert_pem(files["host.crt"]).details
    assert (details.name, [str(n) for n in details.networks], details.groups) == (
        "aws-control-node",
        ["10.200.0.1/16"],
        ("lighthouse", "aws"),
    )
    config = yaml.safe_load(files["config.yml"])
    assert config["lighthouse"]["am_lighthouse"] is True
    assert config["relay"]["am_relay"] is True
    # It advertises its VPC address only.
    assert config["lighthouse"]["local_allow_list"] == {"10.100.1.0/24": True}


def test_the_gpu_worker_is_not_on_the_mesh(aws_gpu_run: StackRun) -> None:
    """Both AWS nodes talk k3s over the VPC; everything the homelab sends reaches the control
    node, so the worker (which stops) needs no Nebula, no certificate, no renewal."""
    names = [r.plain_inputs["name"] for r in aws_gpu_run.by_type("aws:ssm/parameter:Parameter")]
    assert not [n for n in names if "/gpu-worker/" in n and "/nebula/" in n]
    hosts = [r.name for r in aws_gpu_run.by_type("hybridgpu:nebula:NebulaHost")]
    assert hosts == ["control-node-nebula"]


def test_nebula_keys_are_secret_everywhere(aws_gpu_run: StackRun) -> None:
    for reg in aws_gpu_run.registrations:
        shown = json.dumps(redact(reg.inputs), default=str)
        assert "PRIVATE KEY" not in shown, f"{reg.type} {reg.name} carries a key outside a secret"
    for parameter in aws_gpu_run.by_type("aws:ssm/parameter:Parameter"):
        assert "value" in parameter.secret_inputs


def test_no_stack_output_carries_the_ca_key(aws_gpu_run: StackRun, homelab_run: StackRun) -> None:
    """The CA key lives in the aws-gpu state (its seed) and in one SSM SecureString; a
    StackReference stores what it reads in the reader's state, so no output may carry it."""
    for run_ in (aws_gpu_run, homelab_run):
        # The one key an output carries is the wake gate's client key: a leaf's, a secret output
        # the homelab installs (tests/test_wake_gate.py: it is the certificate's, not a CA's).
        exports = {k: v for k, v in run_.exports.items() if k != "wakeGatePrivateKey"}
        assert "PRIVATE KEY" not in json.dumps(exports, default=str), run_.stack
    assert "wakeGatePrivateKey" in aws_gpu_run.secret_exports
    parameter = aws_gpu_run.one("aws:ssm/parameter:Parameter", "mesh-ca-key")
    assert parameter.plain_inputs["type"] == "SecureString"
    assert "value" in parameter.secret_inputs
    assert "NEBULA ED25519 PRIVATE KEY" in parameter.plain_inputs["value"]
    assert aws_gpu_run.exports["nebulaCaKeyParameter"] == parameter.plain_inputs["name"]
    # The homelab reads it with an invoke (kept in no state) through an explicit provider.
    reads = [c for c in homelab_run.calls if c[0] == "aws:ssm/getParameter:getParameter"]
    assert [c[1]["name"] for c in reads] == [parameter.plain_inputs["name"]]


def _files_from_stdin_bundle(bundle: str) -> dict[str, str]:
    """The /etc/nebula files a homelab install sends on stdin (``name mode base64`` lines)."""
    files = {}
    for line in bundle.splitlines():
        name, _mode, content = line.split(" ")
        if name in ("config.yml", "ca.crt", "host.crt", "host.key"):
            files[name] = base64.b64decode(content).decode()
    return files


def test_homelab_nodes_get_working_nebula_over_ssh(homelab_run: StackRun, tmp_path: Path) -> None:
    installs = [
        r
        for r in homelab_run.by_type("command:remote:Command")
        if r.name.endswith("-nebula-install")
    ]
    vms = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    expected = {vm["name"]: vm for vm in [*vms["controlPlanes"], *vms["gpuWorkers"]]}
    assert {r.name.removesuffix("-nebula-install") for r in installs} == set(expected)
    aws_exports = homelab_run.referenced["aws-gpu"].values
    aws_ca, aws_lighthouses = aws_exports["nebulaCaCert"], aws_exports["nebulaLighthouses"]
    for install in installs:
        node = install.name.removesuffix("-nebula-install")
        assert "stdin" in install.secret_inputs
        assert not {"create", "update"} & set(install.secret_inputs), "the script is public"
        assert install.delete_before_replace
        files = _files_from_stdin_bundle(install.plain_inputs["stdin"])
        assert files["ca.crt"] == aws_ca, "homelab hosts must trust the CA of the aws-gpu stack"
        check_with_real_nebula(files, tmp_path / node)
        details = parse_cert_pem(files["host.crt"]).details
        assert [str(n) for n in details.networks] == [f"{expected[node]['overlayIp']}/16"]
        gpu = "gpus" in expected[node]
        # Homelab nodes are "homelab"; GPU workers may also run Liqo's gateway client.
        assert details.groups == (("homelab", "liqo-gateway") if gpu else ("homelab",))
        config = yaml.safe_load(files["config.yml"])
        assert config["static_host_map"] == aws_lighthouses
        assert install.plain_inputs["connection"]["host"] == expected[node]["ip"]
        assert any(p.startswith("connection") for p in install.secret_inputs)


def test_homelab_node_may_not_take_the_lighthouse_overlay_ip(
    aws_gpu_served: offline.StackRun,
) -> None:
    config = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    config["gpuWorkers"][0]["overlayIp"] = "10.200.0.1"
    with pytest.raises(ConfigError) as caught:
        offline.run_stack("homelab", {"hybridgpu:homelab": config})
    assert "hybridgpu:homelab.gpuWorkers[0].overlayIp" in str(caught.value)


def test_homelab_keys_are_secret_everywhere(homelab_run: StackRun) -> None:
    for reg in homelab_run.registrations:
        shown = json.dumps(redact(reg.inputs), default=str)
        assert "PRIVATE KEY" not in shown, f"{reg.type} {reg.name} carries a key outside a secret"
        assert "mock-secret-" not in shown
