"""The IMDS guard (components/aws/imds_guard.py): the rendered script is shellcheck-clean, run
against recording stand-ins for iptables and crictl it installs the raw-table rule that drops pod
traffic to 169.254.169.254 and lets only the allowed namespaces' pods through, and both AWS nodes
get it before k3s can start."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from components.aws.imds_guard import (
    MOUNTPOINT_NAMESPACE,
    SCRIPT_PATH,
    UNIT,
    guard_files,
    render_guard_script,
)
from tests.real_tools import shellcheck
from tools.offline import StackRun

POD_CIDR = "10.52.0.0/16"
NODE_PATHS = {"control-node": (), "gpu-worker": (MOUNTPOINT_NAMESPACE,)}

# Stand-ins: log every call; iptables -C (check) fails so every rule is added; crictl lists one
# ready pod in mount-s3 (and none elsewhere) and answers its address.
FAKE_IPTABLES = """#!/bin/bash
echo "iptables $*" >> "$LOG"
for arg in "$@"; do [[ $arg == -C ]] && exit 1; done
exit 0
"""
FAKE_RESTORE = """#!/bin/bash
{ echo "iptables-restore $*"; cat; } >> "$LOG"
"""
FAKE_CRICTL = """#!/bin/bash
echo "crictl $*" >> "$LOG"
if [[ $1 == pods ]]; then
  [[ $3 == mount-s3 ]] && echo sandbox-1
elif [[ $1 == inspectp ]]; then
  echo "$POD_IP"
fi
"""


def _run_guard(tmp_path: Path, script: str, pod_ip: str = "10.52.1.7") -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (
        ("iptables", FAKE_IPTABLES),
        ("iptables-restore", FAKE_RESTORE),
        ("crictl", FAKE_CRICTL),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    guard = tmp_path / "guard.sh"
    guard.write_text(script)
    log = tmp_path / "log"
    log.touch()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log)}
    env["POD_IP"] = pod_ip
    result = subprocess.run(
        ["/bin/bash", str(guard), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return log.read_text()


def test_the_rendered_script_is_shellcheck_clean(tmp_path: Path) -> None:
    shellcheck(render_guard_script(POD_CIDR, [MOUNTPOINT_NAMESPACE]), tmp_path, "imds-guard")


def test_the_rule_drops_pod_traffic_to_imds_before_anything_accepts_it(tmp_path: Path) -> None:
    log = _run_guard(tmp_path, render_guard_script(POD_CIDR, [MOUNTPOINT_NAMESPACE]))
    # Hooked first in raw PREROUTING: pods' packets only (host traffic leaves through OUTPUT).
    assert "iptables -w -t raw -I PREROUTING 1 -d 169.254.169.254/32 -j HYBRIDGPU-IMDS" in log
    allow = log.index("-A HYBRIDGPU-IMDS -j HYBRIDGPU-IMDS-ALLOW")
    drop = log.index(f"-A HYBRIDGPU-IMDS -s {POD_CIDR} -j DROP")
    assert allow < drop, "the allow list must be consulted before the drop"
    # The ready Mountpoint pod's address, and only it, is let through; in one transaction.
    assert "crictl pods --namespace mount-s3 --state ready -q" in log
    assert "iptables-restore -w --noflush\n*raw\n:HYBRIDGPU-IMDS-ALLOW - [0:0]\n" in log
    assert "-A HYBRIDGPU-IMDS-ALLOW -s 10.52.1.7/32 -j ACCEPT\nCOMMIT" in log
    assert log.count("-j ACCEPT") == 1


def test_a_node_without_allowed_namespaces_lets_no_pod_through(tmp_path: Path) -> None:
    log = _run_guard(tmp_path, render_guard_script(POD_CIDR, []))
    assert f"-A HYBRIDGPU-IMDS -s {POD_CIDR} -j DROP" in log
    assert "crictl" not in log
    assert "-j ACCEPT" not in log
    assert ":HYBRIDGPU-IMDS-ALLOW - [0:0]\nCOMMIT" in log


def test_a_malformed_address_is_never_allowed(tmp_path: Path) -> None:
    """crictl's answer is checked: anything but a dotted quad adds no rule."""
    script = render_guard_script(POD_CIDR, [MOUNTPOINT_NAMESPACE])
    log = _run_guard(tmp_path, script, pod_ip="0.0.0.0/0 -j ACCEPT -s 10.0.0.1")
    assert "-j ACCEPT" not in log.split("iptables-restore", 1)[1].replace("COMMIT", "")


def test_namespaces_are_checked() -> None:
    with pytest.raises(ValueError, match="not a namespace name"):
        render_guard_script(POD_CIDR, ["mount-s3; rm -rf /"])


def test_the_unit_installs_the_rules_before_k3s(tmp_path: Path) -> None:
    script, unit = guard_files(POD_CIDR, [MOUNTPOINT_NAMESPACE])
    assert script.path == SCRIPT_PATH
    assert script.mode == "0755"
    assert "Before=k3s.service k3s-agent.service" in unit.content
    assert f"ExecStartPre={SCRIPT_PATH} --once" in unit.content
    assert script.restart == unit.restart == (UNIT,)


def _manifest(run: StackRun, node: str) -> dict[str, object]:
    return json.loads(_parameter(run, f"/hybridgpu/aws-gpu/{node}/manifest"))


def _parameter(run: StackRun, name: str) -> str:
    for reg in run.by_type("aws:ssm/parameter:Parameter"):
        if reg.plain_inputs["name"] == name:
            return str(reg.plain_inputs["value"])
    raise AssertionError(f"no parameter {name}")


@pytest.mark.parametrize("node", sorted(NODE_PATHS))
def test_both_nodes_start_the_guard_before_k3s_and_the_worker_allows_mountpoint(
    aws_gpu_run: StackRun, node: str
) -> None:
    manifest = _manifest(aws_gpu_run, node)
    run = manifest["run"]
    assert isinstance(run, list)
    assert run[0] == ["systemctl", "enable", "--now", UNIT], node
    script = _parameter(aws_gpu_run, f"/hybridgpu/aws-gpu/{node}/files/imds/imds-guard")
    allowed = " ".join(NODE_PATHS[node])
    assert f'readonly ALLOWED_NAMESPACES="{allowed}"' in script, node
    # The whole AWS pod range (both nodes' pod subnets).
    assert 'readonly POD_CIDR="10.' in script, node
