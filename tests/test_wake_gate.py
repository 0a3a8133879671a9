"""The AWS side sleeps (issue #15, idle cost): the control node stops itself, the homelab's wake
gate starts it with IAM Roles Anywhere credentials. Recorded policies, the gate's certificate, the
homelab's wiring, the cross-stack check and what a switch does on day 2."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.aws import gpu_waker_render as render
from components.aws.wake_access import start_policy, trust_policy
from components.base.x509_ca import ca_from_seed, client_cert_from_seed
from components.nebula.config import GPU_WAKER_PORT
from stacks.config import ConfigError
from stacks.cross_stack import wake_gate_error
from stacks.gpu_waker import WAKE_GATE_CN
from tests import lifecycle
from tools import fakes, offline
from tools.fakes import MOCK_TIME
from tools.offline import StackRun

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
_NOW = datetime.fromisoformat(MOCK_TIME.replace("Z", "+00:00"))
COMMAND = "command:remote:Command"


def _policy(run: StackRun, name: str) -> dict[str, Any]:
    return json.loads(run.one(ROLE_POLICY, name).plain_inputs["policy"])


def _instance_arns(run: StackRun) -> tuple[str, str]:
    """The control node's and the worker's ARNs as the mocks compute them (an instance, and the
    example's worker: a spot request's instance, whose ARN the gpu-waker policy names)."""
    control = run.one("aws:ec2/instance:Instance", "control-node-instance")
    control_arn = fakes.computed_outputs(
        control.type, control.name, control.plain_inputs, "aws-gpu"
    )
    worker_statement = [
        s for s in _policy(run, "gpu-waker-power")["Statement"] if s["Sid"] == "StartStopGpuWorker"
    ]
    return control_arn["arn"], worker_statement[0]["Resource"]


def test_the_wake_role_may_only_start_the_two_nodes(aws_gpu_run: StackRun) -> None:
    control_arn, worker_arn = _instance_arns(aws_gpu_run)
    policy = _policy(aws_gpu_run, "wake-access-start")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"ReadNodeState", "StartNodes"}
    assert by_sid["StartNodes"]["Action"] == "ec2:StartInstances"
    assert by_sid["StartNodes"]["Resource"] == sorted([control_arn, worker_arn])
    # DescribeInstances has no resource-level permissions; nothing else is "*".
    assert by_sid["ReadNodeState"] == {
        "Sid": "ReadNodeState",
        "Effect": "Allow",
        "Action": "ec2:DescribeInstances",
        "Resource": "*",
    }
    assert "Stop" not in json.dumps(policy)


def test_the_wake_role_trusts_only_the_gate_certificate_through_its_anchor(
    aws_gpu_run: StackRun,
) -> None:
    role = aws_gpu_run.one("aws:iam/role:Role", "wake-access-role")
    anchor = aws_gpu_run.one(
        "aws:rolesanywhere/trustAnchor:TrustAnchor", "wake-access-trust-anchor"
    )
    (statement,) = json.loads(role.plain_inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "rolesanywhere.amazonaws.com"}
    anchor_arn = aws_gpu_run.exports["wakeGate"]["trustAnchorArn"]
    assert anchor_arn.startswith("arn:aws:rolesanywhere:us-west-2:")
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": anchor_arn},
        "StringEquals": {"aws:PrincipalTag/x509Subject/CN": WAKE_GATE_CN},
    }
    profile = aws_gpu_run.one("aws:rolesanywhere/profile:Profile", "wake-access-profile")
    role_arn = aws_gpu_run.exports["wakeGate"]["roleArn"]
    assert role_arn.endswith(":role/wake-access-role-" + role_arn.rsplit("-", 1)[1])
    assert profile.plain_inputs["roleArns"] == [role_arn]
    assert profile.plain_inputs["durationSeconds"] == 3600
    # The anchor holds the CA that signed the certificate the homelab gets.
    ca_pem = anchor.plain_inputs["source"]["sourceData"]["x509CertificateData"]
    gate = aws_gpu_run.exports["wakeGate"]
    cert = x509.load_pem_x509_certificate(gate["certificate"].encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == WAKE_GATE_CN
    assert ":profile/" in gate["profileArn"]
    assert "wakeGatePrivateKey" in aws_gpu_run.secret_exports
    # The exported key is the gate certificate's (a leaf), never the CA's.
    key = serialization.load_pem_private_key(
        aws_gpu_run.exports["wakeGatePrivateKey"].encode(), password=None
    )
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    ca_cert = x509.load_pem_x509_certificate(ca_pem.encode())
    assert key.public_key().public_numbers() != ca_cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_the_control_node_may_stop_itself_and_nothing_else_new(aws_gpu_run: StackRun) -> None:
    control_arn, worker_arn = _instance_arns(aws_gpu_run)
    by_sid = {s["Sid"]: s for s in _policy(aws_gpu_run, "gpu-waker-power")["Statement"]}
    assert by_sid["StopThisNode"] == {
        "Sid": "StopThisNode",
        "Effect": "Allow",
        "Action": "ec2:StopInstances",
        "Resource": control_arn,
    }
    assert by_sid["StartStopGpuWorker"]["Resource"] == worker_arn
    assert set(by_sid) == {"ReadWorkerState", "StartStopGpuWorker", "StopThisNode"}
    install = aws_gpu_run.one(COMMAND, "gpu-waker-install").plain_inputs["create"]
    control_id = aws_gpu_run.exports["wakeGate"]["controlInstanceId"]
    assert f"GPU_WAKER_SLEEP_INSTANCE_ID={control_id}\n" in install
    assert "GPU_WAKER_SLEEP_AFTER_MINUTES=30\n" in install


def test_policy_renderers_refuse_what_is_not_an_arn() -> None:
    with pytest.raises(ValueError, match="not the ARN of one EC2 instance"):
        start_policy(["arn:aws:ec2:us-west-2:1:instance/*"])
    with pytest.raises(ValueError, match="not a Roles Anywhere trust anchor"):
        trust_policy("arn:aws:iam::1:role/x", WAKE_GATE_CN)
    with pytest.raises(ValueError, match="not a plain certificate common name"):
        trust_policy("arn:aws:rolesanywhere:us-west-2:1:trust-anchor/x", "*")
    with pytest.raises(ValueError, match="not the ARN of one EC2 instance"):
        render.power_policy(
            "arn:aws:ec2:us-west-2:1:instance/i-1", manage_power=True, sleep_arn="*"
        )


def test_the_gate_certificate_is_what_roles_anywhere_accepts_and_deterministic() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    ca = ca_from_seed(b"c" * 32, "hybridgpu wake CA", start, start + timedelta(days=3650))
    first = client_cert_from_seed(ca, b"g" * 32, WAKE_GATE_CN, start, start + timedelta(days=365))
    again = client_cert_from_seed(ca, b"g" * 32, WAKE_GATE_CN, start, start + timedelta(days=365))
    assert first == again
    cert = x509.load_pem_x509_certificate(first.cert_pem.encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem.encode()))
    assert cert.version == x509.Version.v3
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    key = serialization.load_pem_private_key(first.key_pem.encode(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    # The next window re-issues: a new serial and validity, the same key.
    later = client_cert_from_seed(
        ca, b"g" * 32, WAKE_GATE_CN, start + timedelta(days=305), start + timedelta(days=670)
    )
    assert later.cert_pem != first.cert_pem
    assert later.key_pem == first.key_pem
    with pytest.raises(ValueError, match="after its CA"):
        client_cert_from_seed(ca, b"g" * 32, WAKE_GATE_CN, start, start + timedelta(days=4000))


def test_the_homelab_gate_runs_on_the_first_server_with_aws_gpu_s_values(
    homelab_run: StackRun,
) -> None:
    aws = homelab_run.referenced["aws-gpu"]
    gate = aws.values["wakeGate"]
    first = offline.stack_config_file("homelab")["hybridgpu:homelab"]["controlPlanes"][0]
    install = homelab_run.one(COMMAND, "wake-gate-install")
    env = dict(
        line.split("=", 1)
        for line in install.plain_inputs["create"].splitlines()
        if line.startswith("GPU_WAKER_")
    )
    assert env["GPU_WAKER_MODE"] == "gate"
    assert env["GPU_WAKER_INSTANCE_ID"] == gate["controlInstanceId"]
    assert env["GPU_WAKER_ALSO_START_INSTANCE_IDS"] == gate["workerInstanceId"]
    assert env["GPU_WAKER_LISTEN_HOST"] == first["ip"]
    assert env["GPU_WAKER_LISTEN_PORT"] == str(GPU_WAKER_PORT)
    assert env["GPU_WAKER_UPSTREAM_URL"] == aws.values["gpuWakerUrl"]
    assert env["GPU_WAKER_CREDENTIALS"] == "roles-anywhere"
    for name, output in (
        ("TRUST_ANCHOR_ARN", "trustAnchorArn"),
        ("PROFILE_ARN", "profileArn"),
        ("ROLE_ARN", "roleArn"),
    ):
        assert env[f"GPU_WAKER_ROLES_ANYWHERE_{name}"] == gate[output]
    # Over SSH to that server, with its pinned host key.
    assert install.plain_inputs["connection"]["host"] == first["ip"]
    assert install.plain_inputs["connection"]["hostKey"].startswith("ssh-ed25519 ")
    # The key and the token only on stdin, a secret; never in the command's text.
    key = aws.values["wakeGatePrivateKey"]
    token = aws.values["gpuWakerToken"]
    assert "stdin" in install.secret_inputs
    key_body = key.strip().splitlines()[1]
    for text in (install.plain_inputs["create"], install.plain_inputs["update"]):
        assert token not in text
        assert "-----BEGIN PRIVATE KEY-----" not in text
        assert key_body not in text


def test_the_gate_is_scraped_and_its_clients_call_it(homelab_run: StackRun) -> None:
    first = offline.stack_config_file("homelab")["hybridgpu:homelab"]["controlPlanes"][0]
    address = f"{first['ip']}:{GPU_WAKER_PORT}"
    scrape = homelab_run.one(
        "kubernetes:monitoring.coreos.com/v1alpha1:ScrapeConfig", "monitoring-scrape-wake-gate"
    )
    spec = scrape.plain_inputs["spec"]
    assert spec["jobName"] == "wake-gate"
    assert spec["staticConfigs"] == [{"targets": [address], "labels": {"site": "homelab"}}]
    assert spec["authorization"]["credentials"]["name"] == "gpu-waker-scrape"


@pytest.mark.parametrize(
    ("ours", "theirs", "message"),
    [
        (True, {"sleeps": True}, None),
        (False, {"sleeps": False}, None),
        (False, {"sleeps": True}, "wakeGate: false, but the aws-gpu stack's control node sleeps"),
        (True, {"sleeps": False}, "wakeGate: true, but the aws-gpu stack's control node never"),
    ],
)
def test_the_two_stacks_must_agree_on_the_gate(
    ours: bool, theirs: dict[str, Any], message: str | None
) -> None:
    error = wake_gate_error(ours, theirs)
    if message is None:
        assert error is None
    else:
        assert isinstance(error, ConfigError)
        assert "hybridgpu:homelab.ollama.wakeGate" in str(error)
        assert message in str(error)


def test_a_control_node_that_never_sleeps_gets_no_wake_access(
    valid_fixture_runs: dict[str, StackRun],
) -> None:
    run = valid_fixture_runs["aws-gpu-waker-proxy-only"]  # gpuWaker.enabled: false
    assert run.exports["wakeGate"] == {"sleeps": False}
    assert run.exports["wakeGatePrivateKey"] is None
    assert not [r for r in run.registrations if r.name.startswith(("wake-access", "wake-ca"))]
    assert "Stop" not in json.dumps(_policy(run, "gpu-waker-power"))


def test_letting_the_aws_side_sleep_touches_no_node_and_updates_gpu_waker_in_place(
    aws_gpu_run: StackRun,
) -> None:
    config = offline.stack_config_file("aws-gpu")["hybridgpu:aws"]
    always_on = offline.run_stack(
        "aws-gpu",
        {
            "hybridgpu:aws": {
                **config,
                "gpuWaker": {**config["gpuWaker"], "sleepAfterMinutes": None},
            }
        },
    )
    steps = lifecycle.plan(always_on, aws_gpu_run)
    assert steps.step("aws:ec2/instance:Instance", "control-node-instance") == "same"
    assert steps.step(COMMAND, "gpu-waker-install") == "update"
    assert steps.step(ROLE_POLICY, "gpu-waker-power") == "update"
    for typ, name in (
        ("aws:rolesanywhere/trustAnchor:TrustAnchor", "wake-access-trust-anchor"),
        ("aws:rolesanywhere/profile:Profile", "wake-access-profile"),
        ("aws:iam/role:Role", "wake-access-role"),
        (ROLE_POLICY, "wake-access-start"),
    ):
        assert steps.step(typ, name) == "create"
    assert steps.by_step("replace") == []
    assert steps.by_step("delete") == []
    # And back: the access goes, nothing else is replaced.
    back = lifecycle.plan(aws_gpu_run, always_on)
    assert back.step("aws:rolesanywhere/trustAnchor:TrustAnchor", "wake-access-trust-anchor") == (
        "delete"
    )
    assert back.by_step("replace") == []


def test_a_year_later_the_gate_certificate_is_renewed_and_the_anchor_kept(
    aws_gpu_run: StackRun,
) -> None:
    later = offline.run_stack("aws-gpu", now=_NOW + timedelta(days=320))
    steps = lifecycle.plan(aws_gpu_run, later)
    assert steps.step("aws:rolesanywhere/trustAnchor:TrustAnchor", "wake-access-trust-anchor") == (
        "same"
    )
    before = x509.load_pem_x509_certificate(aws_gpu_run.exports["wakeGate"]["certificate"].encode())
    after = x509.load_pem_x509_certificate(later.exports["wakeGate"]["certificate"].encode())
    assert after.not_valid_after_utc > before.not_valid_after_utc
    assert after.not_valid_before_utc <= _NOW + timedelta(days=320)


RUNTIME = offline.REPO_ROOT / "runtime" / "gpu_waker"
CHECK_OPTIONS = (
    "from gpu_waker.__main__ import check, parser, settings_from\n"
    "from gpu_waker.credentials import roles_anywhere_from\n"
    "args = parser().parse_args([])\n"
    "check(args)\n"
    "anywhere = roles_anywhere_from(args)\n"
    "settings = settings_from(args)\n"
    "print(args.mode, anywhere is not None, settings.sleep_after_seconds)\n"
)


def _runtime_accepts(install_script: str, files: dict[str, str], tmp_path: Path) -> str:
    """The EnvironmentFile an install script writes, with its files under ``tmp_path``, read
    by the runtime's own option parser and checks (its venv: ``./dev setup``)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(RUNTIME / "src")}
    for line in install_script.splitlines():
        if line.startswith("GPU_WAKER_"):
            name, value = line.split("=", 1)
            if value.startswith(render.ETC_DIR + "/"):
                path = tmp_path / value.removeprefix(render.ETC_DIR + "/")
                path.write_text(files.get(path.name, "x" * 32))
                value = str(path)
            env[name] = value
    result = subprocess.run(
        [str(RUNTIME / ".venv" / "bin" / "python"), "-c", CHECK_OPTIONS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_runtime_accepts_what_both_stacks_configure(
    aws_gpu_run: StackRun, homelab_run: StackRun, tmp_path: Path
) -> None:
    """The contract between the IaC and runtime/gpu_waker: every GPU_WAKER_* the install
    scripts write is an option the runtime knows, in a combination it accepts, with the
    certificate and key aws-gpu issued (one key pair, ARNs in one region)."""
    worker = aws_gpu_run.one(COMMAND, "gpu-waker-install").plain_inputs["create"]
    (tmp_path / "aws").mkdir()
    assert _runtime_accepts(worker, {}, tmp_path / "aws") == "worker False 1800.0"
    aws = homelab_run.referenced["aws-gpu"]
    files = {
        render.GATE_CERTIFICATE: aws.values["wakeGate"]["certificate"],
        render.GATE_PRIVATE_KEY: aws.values["wakeGatePrivateKey"],
    }
    gate = homelab_run.one(COMMAND, "wake-gate-install").plain_inputs["create"]
    (tmp_path / "gate").mkdir()
    assert _runtime_accepts(gate, files, tmp_path / "gate") == "gate True None"
