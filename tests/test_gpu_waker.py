"""gpu-waker's deployment (issue #15): least-privilege IAM on the recorded policy, secrets kept
off the command text, the install script run for real in a sandbox (fake k3s/systemctl), the
lock installable on the node's platform, and what a config change does."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from components.aws import gpu_waker_render as render
from components.nebula.config import GPU_WAKER_PORT
from stacks.gpu_waker import RUNTIME_PACKAGE
from tests.real_tools import require, run, shellcheck
from tools import fakes, offline
from tools.offline import StackRun

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
COMMAND = "command:remote:Command"
INSTANCE = "aws:ec2/instance:Instance"
TOKEN = "client-token-0123456789abcdefghij"
SETTINGS = render.WakerSettings(
    instance_id="i-0123456789abcdef0",
    region="us-west-2",
    listen_ip="10.200.0.1",
    port=11435,
    idle_stop_minutes=15,
    wake_timeout_seconds=240,
    manage_power=True,
    upstream_namespace="llm",
    upstream_selector={"app.kubernetes.io/name": "ollama"},
    upstream_port=11434,
)


def _statements(run: StackRun) -> list[dict[str, Any]]:
    policy = run.one(ROLE_POLICY, "gpu-waker-power").plain_inputs["policy"]
    return json.loads(policy)["Statement"]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _worker_arn(run: StackRun) -> str:
    """The GPU worker's instance ARN as EC2 names it (the instance the spot request launched)."""
    worker_id = run.exports["gpuWorkerInstanceId"]
    return f"arn:aws:ec2:us-west-2:{fakes.MOCK_ACCOUNT_ID}:instance/{worker_id}"


def test_the_iam_policy_names_only_the_gpu_worker(aws_gpu_run: StackRun) -> None:
    worker_arn = _worker_arn(aws_gpu_run)
    control = aws_gpu_run.one("aws:ec2/instance:Instance", "control-node-instance")
    assert worker_arn != control.plain_inputs.get("arn")
    registered = aws_gpu_run.one(ROLE_POLICY, "gpu-waker-power")
    # Attached to the control node's role, where the service runs.
    assert registered.plain_inputs["role"].startswith("control-node-role")
    power = [s for s in _statements(aws_gpu_run) if "ec2:StartInstances" in _actions(s)]
    assert len(power) == 1
    assert sorted(_actions(power[0])) == ["ec2:StartInstances", "ec2:StopInstances"]
    resource = power[0]["Resource"]
    assert isinstance(resource, str)
    assert ":instance/i-" in resource
    assert "*" not in resource
    assert resource == worker_arn
    # Everything else is read-only, and nothing else is granted at all.
    allowed = {a for s in _statements(aws_gpu_run) for a in _actions(s)}
    assert allowed == {"ec2:StartInstances", "ec2:StopInstances", "ec2:DescribeInstances"}
    assert all(s["Effect"] == "Allow" for s in _statements(aws_gpu_run))


def test_the_worker_arn_in_the_policy_is_the_gpu_workers_not_the_control_nodes() -> None:
    document = json.loads(
        render.power_policy("arn:aws:ec2:us-west-2:1:instance/i-0aaa", manage_power=True)
    )
    power = next(s for s in document["Statement"] if s["Sid"] == "StartStopGpuWorker")
    assert power["Resource"] == "arn:aws:ec2:us-west-2:1:instance/i-0aaa"
    with pytest.raises(ValueError, match="not the ARN of one EC2 instance"):
        render.power_policy("arn:aws:ec2:us-west-2:1:instance/*", manage_power=True)


def test_the_token_and_bundle_travel_on_stdin_never_in_the_command(
    aws_gpu_run: StackRun,
) -> None:
    install = aws_gpu_run.one(COMMAND, "gpu-waker-install")
    inputs = install.plain_inputs
    assert "stdin" in install.secret_inputs
    token = inputs["stdin"].split("\n", 1)[0]
    assert len(token) >= 16
    bundle = render.load_bundle(RUNTIME_PACKAGE)
    assert inputs["stdin"] == f"{token}\n{bundle.tar_gz_b64}\n"
    for text in (inputs["create"], inputs["update"], inputs["delete"]):
        assert token not in text
        assert bundle.tar_gz_b64[:200] not in text
    # The command names the bundle it installs, so a code change re-runs it.
    assert f'BUNDLE_SHA256="{bundle.sha256}"' in inputs["create"]
    assert inputs["create"] == inputs["update"]
    assert aws_gpu_run.exports["gpuWakerUrl"] == "http://10.200.0.1:11435"
    assert "gpuWakerToken" in aws_gpu_run.secret_exports


def test_the_install_waits_for_k3s_the_policy_and_the_service_account(
    aws_gpu_run: StackRun,
) -> None:
    install = aws_gpu_run.one(COMMAND, "gpu-waker-install")
    needed = {
        aws_gpu_run.one(COMMAND, "control-node-kubeconfig-read").urn,
        aws_gpu_run.one(ROLE_POLICY, "gpu-waker-power").urn,
        aws_gpu_run.one("kubernetes:core/v1:ServiceAccount", "gpu-waker-serviceaccount").urn,
    }
    assert needed <= set(install.dependencies)
    assert install.delete_before_replace


def test_the_bundle_is_deterministic_and_holds_the_lock_and_sources() -> None:
    first, second = render.load_bundle(RUNTIME_PACKAGE), render.load_bundle(RUNTIME_PACKAGE)
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(first.tar_gz_b64))) as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    assert "requirements.lock" in names
    assert "app/gpu_waker/controller.py" in names
    assert "app/gpu_waker/__main__.py" in names


def test_rendered_scripts_pass_shellcheck(tmp_path: Path) -> None:
    bundle = render.load_bundle(RUNTIME_PACKAGE)
    shellcheck(render.render_install_script(SETTINGS, bundle.sha256), tmp_path, "install.sh")
    shellcheck(render.render_uninstall_script(), tmp_path, "uninstall.sh")
    wrapped = tmp_path / "remote.sh"
    wrapped.write_text(render.remote_command("echo hi"))
    result = run(require("shellcheck"), "--shell=sh", wrapped, check=False)
    assert result.returncode == 0, result.stdout


def test_environment_file_refuses_values_systemd_would_mangle() -> None:
    bad = render.WakerSettings(**{**SETTINGS.__dict__, "upstream_namespace": "llm $HOME"})
    with pytest.raises(ValueError, match="UPSTREAM_NAMESPACE"):
        render.render_environment(bad)


def test_the_proxy_source_admitted_by_ollama_is_the_control_nodes_pod_range() -> None:
    assert render.control_node_pod_subnet("10.52.0.0/16") == "10.52.0.0/24"
    with pytest.raises(ValueError, match="smaller than one node range"):
        render.control_node_pod_subnet("10.52.0.0/25")


# ----------------------------------------------------------------------- the script, for real
FAKES = {
    # k3s kubectl: 'apply' records the manifest, 'get secret' returns a token (base64).
    "k3s": """#!/bin/bash
echo "k3s $*" >> "$FAKE_LOG"
if [ "$2" = apply ]; then cat >> "$FAKE_LOG"; exit 0; fi
if [[ "$*" == *"get secret"* ]]; then printf '%s' "$(printf 'sa-token-xyz' | base64)"; fi
""",
    "systemctl": '#!/bin/bash\necho "systemctl $*" >> "$FAKE_LOG"\n',
    "journalctl": "#!/bin/bash\nexit 0\n",
    "useradd": '#!/bin/bash\necho "useradd $*" >> "$FAKE_LOG"\n',
    "id": "#!/bin/bash\nexit 1\n",
    "apt-get": '#!/bin/bash\necho "apt-get must not run here" >&2; exit 1\n',
    # install(1) without -o/-g: the sandbox has no gpu-waker group and may not be root.
    "install": """#!/bin/bash
args=()
while [ $# -gt 0 ]; do
  case "$1" in -o|-g) shift 2 ;; *) args+=("$1"); shift ;; esac
done
exec /usr/bin/install "${args[@]}"
""",
    # python3 -m venv DIR makes a venv whose python only records the pip call.
    "python3": """#!/bin/bash
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"
  printf '#!/bin/bash\\necho "venv-python $*" >> "$FAKE_LOG"\\n' > "$3/bin/python"
  chmod +x "$3/bin/python"
  exit 0
fi
exec "$REAL_PYTHON3" "$@"
""",
}


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Path]:
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name, text in FAKES.items():
        path = fakes / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    ca = tmp_path / "server-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
    for sub in ("opt", "etc", "systemd"):
        (tmp_path / sub).mkdir()
    (tmp_path / "opt" / "releases").mkdir()
    return {"root": tmp_path, "bin": fakes, "ca": ca, "log": tmp_path / "fake.log"}


def _run_install(
    sandbox: dict[str, Path],
    stdin: str,
    settings: render.WakerSettings | render.GateSettings = SETTINGS,
) -> subprocess.CompletedProcess[str]:
    root = sandbox["root"]
    bundle = render.load_bundle(RUNTIME_PACKAGE)
    script = render.render_install_script(
        settings,
        bundle.sha256,
        prefix=str(root / "opt"),
        etc_dir=str(root / "etc" / "gpu-waker"),
        systemd_dir=str(root / "systemd"),
        k3s_ca=str(sandbox["ca"]),
    )
    path = root / "install.sh"
    path.write_text(script)
    env = {
        **os.environ,
        "PATH": f"{sandbox['bin']}:{os.environ['PATH']}",
        "FAKE_LOG": str(sandbox["log"]),
        "REAL_PYTHON3": require("python3"),
    }
    return subprocess.run(
        ["bash", str(path)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_install_script_installs_the_bundle_and_is_idempotent(
    sandbox: dict[str, Path],
) -> None:
    bundle = render.load_bundle(RUNTIME_PACKAGE)
    root = sandbox["root"]
    first = _run_install(sandbox, render.stdin_payload(TOKEN, bundle))
    assert first.returncode == 0, first.stderr
    assert f"gpu-waker: active ({bundle.sha256})" in first.stdout
    assert TOKEN not in first.stdout + first.stderr
    release = root / "opt" / "releases" / bundle.sha256
    assert (root / "opt" / "current").resolve() == release
    assert (release / "requirements.lock").read_bytes() == (
        RUNTIME_PACKAGE / "requirements.lock"
    ).read_bytes()
    assert (release / "app" / "gpu_waker" / "controller.py").is_file()
    etc = root / "etc" / "gpu-waker"
    assert (etc / "client-token").read_text() == TOKEN + "\n"
    assert stat.S_IMODE((etc / "client-token").stat().st_mode) == 0o640
    kubeconfig = (etc / "kubeconfig").read_text()
    assert "token: sa-token-xyz" in kubeconfig
    assert "server: https://127.0.0.1:6443" in kubeconfig
    assert base64.b64encode(sandbox["ca"].read_bytes()).decode() in kubeconfig
    assert (etc / "env").read_text() == render.render_environment(SETTINGS) + "\n"
    unit = (root / "systemd" / "gpu-waker.service").read_text()
    assert unit == render.render_unit(str(root / "opt"), str(etc))
    log = sandbox["log"].read_text()
    pip_calls = [line for line in log.splitlines() if line.startswith("venv-python")]
    assert len(pip_calls) == 1
    for flag in ("--require-hashes", "--only-binary=:all:", "--no-deps"):
        assert flag in pip_calls[0]
    assert "type: kubernetes.io/service-account-token" in log
    assert "kubernetes.io/service-account.name: gpu-waker" in log
    assert "systemctl restart gpu-waker.service" in log
    # Same bundle, same token: nothing to install, nothing to restart.
    sandbox["log"].write_text("")
    second = _run_install(sandbox, render.stdin_payload(TOKEN, bundle))
    assert second.returncode == 0, second.stderr
    log = sandbox["log"].read_text()
    assert "venv-python" not in log
    assert "restart" not in log
    # A new token is a change: the service restarts to read it.
    sandbox["log"].write_text("")
    third = _run_install(sandbox, render.stdin_payload(TOKEN + "x", bundle))
    assert third.returncode == 0, third.stderr
    assert "systemctl restart gpu-waker.service" in sandbox["log"].read_text()


GATE = render.GateSettings(
    control_instance_id="i-0123456789abcdef0",
    worker_instance_id="i-0123456789abcdef1",
    region="us-west-2",
    listen_ip="192.168.10.21",
    port=11435,
    wake_timeout_seconds=240,
    upstream_url="http://10.200.0.1:11435",
    trust_anchor_arn="arn:aws:rolesanywhere:us-west-2:123456789012:trust-anchor/a",
    profile_arn="arn:aws:rolesanywhere:us-west-2:123456789012:profile/p",
    role_arn="arn:aws:iam::123456789012:role/wake",
)
GATE_CERT = "-----BEGIN CERTIFICATE-----\nZ2F0ZQ==\n-----END CERTIFICATE-----\n"
GATE_KEY = "-----BEGIN PRIVATE KEY-----\na2V5\n-----END PRIVATE KEY-----\n"


def test_the_gate_install_writes_its_certificate_and_key_from_stdin(
    sandbox: dict[str, Path],
) -> None:
    bundle = render.load_bundle(RUNTIME_PACKAGE)
    result = _run_install(sandbox, render.stdin_payload(TOKEN, bundle, (GATE_CERT, GATE_KEY)), GATE)
    assert result.returncode == 0, result.stderr
    assert GATE_KEY.splitlines()[1] not in result.stdout + result.stderr
    etc = sandbox["root"] / "etc" / "gpu-waker"
    assert (etc / render.GATE_CERTIFICATE).read_text() == GATE_CERT
    assert (etc / render.GATE_PRIVATE_KEY).read_text() == GATE_KEY
    assert stat.S_IMODE((etc / render.GATE_PRIVATE_KEY).stat().st_mode) == 0o640
    assert (etc / "client-token").read_text() == TOKEN + "\n"
    env = (etc / "env").read_text()
    assert env == render.render_gate_environment(GATE, str(etc)) + "\n"
    assert "GPU_WAKER_MODE=gate\n" in env
    assert f"GPU_WAKER_PRIVATE_KEY_FILE={etc}/{render.GATE_PRIVATE_KEY}\n" in env
    # Without the certificate lines the gate install refuses (and installs nothing).
    sandbox["log"].write_text("")
    refused = _run_install(sandbox, render.stdin_payload(TOKEN + "y", bundle), GATE)
    assert refused.returncode == 1
    assert "no Roles Anywhere certificate and key on stdin" in refused.stderr
    assert (etc / "client-token").read_text() == TOKEN + "\n"


def test_the_install_script_refuses_a_tampered_bundle_or_no_token(
    sandbox: dict[str, Path],
) -> None:
    bundle = render.load_bundle(RUNTIME_PACKAGE)
    tampered = render.WakerBundle(
        base64.b64encode(base64.b64decode(bundle.tar_gz_b64) + b"x").decode(), bundle.sha256
    )
    result = _run_install(sandbox, render.stdin_payload(TOKEN, tampered))
    assert result.returncode == 1
    assert "bundle checksum mismatch" in result.stderr
    result = _run_install(sandbox, "\n" + bundle.tar_gz_b64 + "\n")
    assert result.returncode == 1
    assert "no client token" in result.stderr
    assert not (sandbox["root"] / "opt" / "current").exists()


def test_the_lock_installs_on_the_control_node_wheels_only_hashes_checked(
    tmp_path: Path,
) -> None:
    """Ubuntu 24.04 on x86_64: CPython 3.12, glibc 2.39. pip resolves every pinned file for that
    platform from PyPI and checks each SHA-256 (no sdist, nothing built on the node)."""
    platforms = [f"--platform=manylinux_{v}_x86_64" for v in ("2_17", "2_28", "2_34", "2_39")] + [
        "--platform=manylinux2014_x86_64"
    ]
    result = run(
        sys.executable,  # the project venv's pip
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "--python-version=3.12",
        "--implementation=cp",
        *platforms,
        "-r",
        RUNTIME_PACKAGE / "requirements.lock",
        "-d",
        tmp_path,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    pinned = [
        line.split("==")[0]
        for line in (RUNTIME_PACKAGE / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith(" ")
    ]
    assert len(list(tmp_path.glob("*.whl"))) == len(pinned)


# ----------------------------------------------------------------------- lifecycle
def _waker_config(**changes: Any) -> dict[str, Any]:
    config = offline.stack_config_file("aws-gpu")["hybridgpu:aws"]
    return {"hybridgpu:aws": {**config, "gpuWaker": changes}}


def test_disabling_power_management_drops_start_stop_and_keeps_the_proxy() -> None:
    run_b = offline.run_stack("aws-gpu", _waker_config(enabled=False))
    allowed = {a for s in _statements(run_b) for a in _actions(s)}
    assert allowed == {"ec2:DescribeInstances"}
    create = run_b.one(COMMAND, "gpu-waker-install").plain_inputs["create"]
    assert "GPU_WAKER_MANAGE_POWER=false" in create
    assert run_b.exports["gpuWakerUrl"] == "http://10.200.0.1:11435"


def test_changing_the_idle_time_updates_only_the_install_command(aws_gpu_run: StackRun) -> None:
    run_b = offline.run_stack("aws-gpu", _waker_config(idleStopMinutes=45))
    a_install = aws_gpu_run.one(COMMAND, "gpu-waker-install")
    b_install = run_b.one(COMMAND, "gpu-waker-install")
    assert a_install.urn == b_install.urn  # same resource: an update, no replacement
    assert "GPU_WAKER_IDLE_STOP_MINUTES=15" in a_install.plain_inputs["create"]
    assert "GPU_WAKER_IDLE_STOP_MINUTES=45" in b_install.plain_inputs["create"]
    changed = {
        r.name
        for r in run_b.registrations
        if r.inputs != next((a.inputs for a in aws_gpu_run.registrations if a.urn == r.urn), None)
        and r.type != "random:index/randomPassword:RandomPassword"
    }
    assert "gpu-waker-install" in changed
    assert "gpu-worker-instance" not in changed
    assert "gpu-waker-power" not in changed


# ----------------------------------------------------------------------- homelab side
def test_client_namespaces_get_the_address_and_token_as_a_secret(
    aws_gpu_served: offline.StackRun,
) -> None:
    config = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    ollama = {**config.get("ollama", {}), "clientNamespaces": ["research"]}
    homelab = offline.run_stack("homelab", {"hybridgpu:homelab": {**config, "ollama": ollama}})
    aws = homelab.referenced["aws-gpu"]
    secret = homelab.one("kubernetes:core/v1:Secret", "gpu-waker-clients-research")
    data = secret.plain_inputs["stringData"]
    assert secret.plain_inputs["metadata"]["namespace"] == "research"
    # The AWS side sleeps by default: the clients call the wake gate on the first server.
    assert aws.values["wakeGate"]["sleeps"] is True
    gate = f"http://{config['controlPlanes'][0]['ip']}:{GPU_WAKER_PORT}"
    assert data["OLLAMA_HOST"] == gate
    assert data["OPENAI_BASE_URL"] == gate + "/v1"
    assert data["OPENAI_API_KEY"] == data["GPU_WAKER_TOKEN"] == aws.values["gpuWakerToken"]
    assert any(path.startswith("stringData") for path in secret.secret_inputs)
    # The example config has no client namespace: no such Secret at all.
    plain = offline.run_stack("homelab")
    assert not [r for r in plain.registrations if r.name.startswith("gpu-waker-clients-")]
