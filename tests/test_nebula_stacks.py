"""The Nebula material the stacks actually plan, checked with the real tools: what each EC2
node receives in its user data verifies against the mesh CA and passes `nebula -test`; keys
stay secret."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from components.nebula_pki import parse_cert_pem
from tests.real_tools import require, run
from tools.offline import StackRun, redact

INSTANCE = "aws:ec2/instance:Instance"
EXPECTED_GROUPS = {
    "control-node-instance": (
        "aws-control-node",
        "10.200.0.1/16",
        ("lighthouse", "aws", "kubernetes", "liqo-gateway"),
    ),
    "gpu-worker-instance": ("aws-gpu-worker", "10.200.2.1/16", ("aws", "kubernetes", "gpu")),
}


def _nebula_files(user_data: str) -> dict[str, str]:
    document = yaml.safe_load(user_data)
    return {
        Path(entry["path"]).name: entry["content"]
        for entry in document["write_files"]
        if entry["path"].startswith("/etc/nebula/")
    }


def test_planned_nebula_files_pass_the_real_tools(aws_gpu_run: StackRun, tmp_path: Path) -> None:
    instances = aws_gpu_run.by_type(INSTANCE)
    assert {i.name for i in instances} == set(EXPECTED_GROUPS)
    for instance in instances:
        files = _nebula_files(instance.plain_inputs["userData"])
        assert set(files) == {"config.yml", "ca.crt", "host.crt", "host.key"}
        assert files["ca.crt"] == aws_gpu_run.exports["nebulaCaCert"]
        node_dir = tmp_path / instance.name
        node_dir.mkdir()
        for name, text in files.items():
            (node_dir / name).write_text(text.replace("/etc/nebula", str(node_dir)))
        verify = run(
            require("nebula-cert"),
            "verify",
            "-ca",
            node_dir / "ca.crt",
            "-crt",
            node_dir / "host.crt",
            check=False,
        )
        assert verify.returncode == 0, verify.stderr
        test = run(require("nebula"), "-test", "-config", node_dir / "config.yml", check=False)
        assert test.returncode == 0, test.stdout + test.stderr
        name, ip, groups = EXPECTED_GROUPS[instance.name]
        details = parse_cert_pem(files["host.crt"]).details
        assert (details.name, [str(n) for n in details.networks], details.groups) == (
            name,
            [ip],
            groups,
        )


def test_worker_finds_the_lighthouse_on_its_elastic_ip(aws_gpu_run: StackRun) -> None:
    worker = aws_gpu_run.one(INSTANCE, "gpu-worker-instance")
    config = yaml.safe_load(_nebula_files(worker.plain_inputs["userData"])["config.yml"])
    public_ip = aws_gpu_run.exports["controlNodePublicIp"]
    assert config["static_host_map"] == {"10.200.0.1": [f"{public_ip}:4242"]}
    assert config["relay"]["relays"] == ["10.200.0.1"]
    control = aws_gpu_run.one(INSTANCE, "control-node-instance")
    lighthouse = yaml.safe_load(_nebula_files(control.plain_inputs["userData"])["config.yml"])
    assert lighthouse["lighthouse"]["am_lighthouse"] is True
    assert lighthouse["relay"]["am_relay"] is True


def test_nebula_keys_are_secret_everywhere(aws_gpu_run: StackRun) -> None:
    for reg in aws_gpu_run.registrations:
        shown = json.dumps(redact(reg.inputs), default=str)
        assert "PRIVATE KEY" not in shown, f"{reg.type} {reg.name} carries a key outside a secret"
    for instance in aws_gpu_run.by_type(INSTANCE):
        assert "userData" in instance.secret_inputs
    assert "nebulaCaKey" in aws_gpu_run.secret_exports
    public = {k: v for k, v in aws_gpu_run.exports.items() if k not in aws_gpu_run.secret_exports}
    assert "PRIVATE KEY" not in json.dumps(public, default=str)
    assert "PRIVATE KEY" in aws_gpu_run.exports["nebulaCaKey"]
