"""The operator on the mesh (issue #26): SSH and the k3s API of the AWS control node are closed to
the internet by default and reached over Nebula; ``adminCidrs`` opens them for a first up; the
operator's certificate is signed for a public key whose private half never leaves the machine;
``./dev mesh-join`` writes a Nebula config the real ``nebula`` accepts."""

from __future__ import annotations

import ipaddress
import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.nebula.pki import host_public_key, parse_cert_pem
from tests.real_tools import require
from tools import mesh_join, offline
from tools.offline import StackRun

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SSH_COMMANDS = ("control-node-apply", "control-node-kubeconfig-read", "gpu-waker-install")
OPERATOR_IP = "10.200.255.10"
ADMIN_CIDR = "198.51.100.7/32"


def _example_operators() -> list[dict[str, Any]]:
    return offline.stack_config_file("aws-gpu")["hybridgpu:aws"]["operators"]


@pytest.fixture(scope="module")
def public_admin_run() -> StackRun:
    """The same stack for a first up: adminCidrs set (config B)."""
    return offline.run_stack("aws-gpu", {"hybridgpu:aws.adminCidrs": [ADMIN_CIDR]})


def _admin_ports_from_outside(run: StackRun) -> set[tuple[int, str]]:
    return {
        (r.plain_inputs["fromPort"], r.plain_inputs["cidrIpv4"])
        for r in run.by_type(INGRESS)
        if "cidrIpv4" in r.plain_inputs and r.plain_inputs["ipProtocol"] == "tcp"
    }


def _ssh_hosts(run: StackRun) -> dict[str, str]:
    return {
        name: run.one("command:remote:Command", name).plain_inputs["connection"]["host"]
        for name in SSH_COMMANDS
    }


def _kubeconfig_server(text: str) -> str:
    (cluster,) = yaml.safe_load(text)["clusters"]
    return cluster["cluster"]["server"]


def test_by_default_nothing_but_nebula_is_open_and_pulumi_goes_over_the_mesh(
    aws_gpu_run: StackRun,
) -> None:
    assert _admin_ports_from_outside(aws_gpu_run) == set()
    overlay = aws_gpu_run.exports["controlNodeOverlayIp"]
    assert set(_ssh_hosts(aws_gpu_run).values()) == {overlay}
    assert aws_gpu_run.exports["adminAccess"] == "mesh"
    assert _kubeconfig_server(aws_gpu_run.exports["adminKubeconfig"]) == f"https://{overlay}:6443"


def test_admin_cidrs_open_ssh_and_api_to_that_range_only_and_use_the_elastic_ip(
    aws_gpu_run: StackRun, public_admin_run: StackRun
) -> None:
    assert _admin_ports_from_outside(public_admin_run) == {(22, ADMIN_CIDR), (6443, ADMIN_CIDR)}
    public_ip = public_admin_run.exports["controlNodePublicIp"]
    assert set(_ssh_hosts(public_admin_run).values()) == {public_ip}
    assert public_admin_run.exports["adminAccess"] == "public"
    assert _kubeconfig_server(public_admin_run.exports["adminKubeconfig"]) == (
        f"https://{public_ip}:6443"
    )
    # Switching the path is an update of the SSH steps, never a replacement: only triggers
    # replace a remote Command (pulumi-command remote/command.go@v1.2.1), and they are equal.
    for name in SSH_COMMANDS:
        a = aws_gpu_run.one("command:remote:Command", name).plain_inputs
        b = public_admin_run.one("command:remote:Command", name).plain_inputs
        assert a.get("triggers") == b.get("triggers"), name
    # ... and the cluster's provider keeps its identity (no replacement of every object).
    a_provider = aws_gpu_run.one("pulumi:providers:kubernetes", "aws-gpu-k8s").plain_inputs
    b_provider = public_admin_run.one("pulumi:providers:kubernetes", "aws-gpu-k8s").plain_inputs
    assert a_provider["clusterIdentifier"] == b_provider["clusterIdentifier"]


def test_operator_certificate_is_for_the_configured_key_group_admin_and_public(
    aws_gpu_run: StackRun, tmp_path: Path
) -> None:
    (operator,) = _example_operators()
    certs = aws_gpu_run.exports["nebulaOperatorCerts"]
    assert "nebulaOperatorCerts" not in aws_gpu_run.secret_exports
    cert = parse_cert_pem(certs[operator["name"]])
    assert cert.details.groups == ("admin",)
    assert [str(n) for n in cert.details.networks] == [f"{operator['overlayIp']}/16"]
    assert cert.details.public_key == host_public_key(operator["nebulaPublicKey"])
    (tmp_path / "ca.crt").write_text(aws_gpu_run.exports["nebulaCaBundle"])
    (tmp_path / "host.crt").write_text(certs[operator["name"]])
    subprocess.run(
        [
            require("nebula-cert"),
            "verify",
            "-ca",
            str(tmp_path / "ca.crt"),
            "-crt",
            str(tmp_path / "host.crt"),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_the_lighthouse_admits_the_admin_group_to_ssh_and_the_api_only(
    aws_gpu_run: StackRun,
) -> None:
    files = aws_gpu_run.outputs_of("hybridgpu:nebula:NebulaHost", "control-node-nebula")
    inbound = yaml.safe_load(files["configYaml"].split("\n", 1)[1])["firewall"]["inbound"]
    admin = sorted(r["port"] for r in inbound if r.get("group") == "admin")
    assert admin == [22, 6443]


def test_mesh_join_init_then_join_writes_a_config_nebula_accepts(tmp_path: Path) -> None:
    folder = tmp_path / "alice"
    printed = mesh_join.init("aws-gpu", "alice", folder, None)
    key_mode = stat.S_IMODE((folder / "host.key").stat().st_mode)
    assert key_mode == 0o600
    public_pem = (folder / "host.pub").read_text()
    assert public_pem in printed or public_pem.strip().splitlines()[1] in printed
    assert "hybridgpu:aws.operators[0]" in printed  # alice is the example's first operator
    # init again keeps the key (a new one would orphan the signed certificate).
    mesh_join.init("aws-gpu", "alice", folder, None)
    assert (folder / "host.pub").read_text() == public_pem

    run = offline.run_stack("aws-gpu", {"hybridgpu:aws.operators[0].nebulaPublicKey": public_pem})
    outputs = dict(run.exports)
    joined = mesh_join.join("aws-gpu", "alice", folder, outputs)
    assert joined.overlay_ip == OPERATOR_IP
    assert stat.S_IMODE((folder / "kubeconfig").stat().st_mode) == 0o600
    assert _kubeconfig_server((folder / "kubeconfig").read_text()) == (
        f"https://{run.exports['controlNodeOverlayIp']}:6443"
    )
    config = yaml.safe_load((folder / "config.yml").read_text())
    assert config["pki"] == {
        "ca": f"{folder}/ca.crt",
        "cert": f"{folder}/host.crt",
        "key": f"{folder}/host.key",
    }
    assert config["listen"]["port"] == 0  # roaming laptop: any port
    assert config["static_host_map"] == run.exports["nebulaLighthouses"]
    assert "local_allow_list" not in config["lighthouse"]
    assert config["tun"]["mtu"] == 1300
    # The real nebula loads the config, the CA bundle, the certificate and the key together.
    nebula = require("nebula")
    result = subprocess.run(
        [nebula, "-test", "-config", str(folder / "config.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    text = mesh_join.instructions(joined, "alice")
    assert f"sudo nebula -config {folder}/config.yml" in text
    assert "adminCidrs" not in text  # already closed


def test_mesh_join_refuses_a_certificate_for_another_key(
    aws_gpu_run: StackRun, tmp_path: Path
) -> None:
    folder = tmp_path / "alice"
    mesh_join.init("aws-gpu", "alice", folder, None)  # a fresh key, not the example's
    with pytest.raises(mesh_join.MeshJoinError, match="another public key"):
        mesh_join.join("aws-gpu", "alice", folder, dict(aws_gpu_run.exports))
    mesh_join.init("aws-gpu", "bob", tmp_path / "bob", None)
    with pytest.raises(mesh_join.MeshJoinError, match="no certificate for operator 'bob'"):
        mesh_join.join("aws-gpu", "bob", tmp_path / "bob", dict(aws_gpu_run.exports))


def test_mesh_join_cli_reads_an_outputs_file_and_fails_clearly(
    aws_gpu_run: StackRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"adminAccess": "mesh"}))
    code = mesh_join.main(["--dir", str(tmp_path / "carol"), "--outputs", str(outputs), "carol"])
    assert code == 2
    assert "run `./dev mesh-join init carol` first" in capsys.readouterr().err
    assert mesh_join.main(["--dir", str(tmp_path / "carol"), "init", "carol"]) == 0
    printed = capsys.readouterr().out
    # The next free address of the operators' range (alice holds the first one used).
    ip = yaml.safe_load(printed.split("\n\n")[1])["operators"][0]["overlayIp"]
    assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("10.200.255.0/24")
    assert ip != OPERATOR_IP
    code = mesh_join.main(["--dir", str(tmp_path / "carol"), "--outputs", str(outputs), "carol"])
    assert code == 2
    assert "no output 'nebulaOperatorCerts'" in capsys.readouterr().err
