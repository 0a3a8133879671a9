"""The command line (GPU_WAKER_* as the IaC writes them): defaults, what each mode builds, and
every missing or contradictory option refused before anything starts, naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_waker.__main__ import OPTIONS, build, parser
from gpu_waker.cluster import KubeCluster, StaticCluster
from gpu_waker.credentials import roles_anywhere_from
from gpu_waker.ec2 import Ec2Power
from tests.conftest import TOKEN, run
from tests.fakes import write_kubeconfig
from tests.test_roles_anywhere import ANCHOR, PROFILE, ROLE, self_signed, write_pem

WORKER = "i-0123456789abcdef0"
CONTROL = "i-0fedcba9876543210"


def base(tmp: Path, *options: str) -> list[str]:
    token = tmp / "token"
    token.write_text(TOKEN)
    return ["--region", "us-west-2", "--token-file", str(token), *options]


def gate(tmp: Path, *options: str) -> list[str]:
    return base(
        tmp,
        "--mode", "gate",
        "--instance-id", CONTROL,
        "--also-start-instance-ids", WORKER,
        "--upstream-url", "http://10.200.0.1:11435",
        *options,
    )  # fmt: skip


def worker(tmp: Path, *options: str) -> list[str]:
    return base(tmp, "--instance-id", WORKER, "--upstream-url", "http://127.0.0.1:9", *options)


def refused(argv: list[str]) -> str:
    async def scenario() -> None:
        build(parser().parse_args(argv))

    with pytest.raises(SystemExit) as caught:
        run(scenario)
    return str(caught.value)


def test_the_new_options_and_their_defaults() -> None:
    defaults = {name: default for name, default, _ in OPTIONS}
    assert defaults["mode"] == "worker"
    assert defaults["ready-path"] == "/healthz"
    assert defaults["offload-toleration-key"] == "virtual-node.liqo.io/not-allowed"
    assert defaults["credentials"] == "default"
    for name in (
        "sleep-instance-id",
        "sleep-after-minutes",
        "also-start-instance-ids",
        "roles-anywhere-trust-anchor-arn",
        "roles-anywhere-profile-arn",
        "roles-anywhere-role-arn",
        "certificate-file",
        "private-key-file",
        "roles-anywhere-endpoint-url",
    ):
        assert defaults[name] is None
    assert "wake timeout" in {n: t for n, _, t in OPTIONS}["upstream-read-timeout-seconds"]


def test_environment_variables_set_options_and_empty_ones_are_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPU_WAKER_MODE", "gate")
    monkeypatch.setenv("GPU_WAKER_SLEEP_AFTER_MINUTES", "")
    monkeypatch.setenv("GPU_WAKER_READY_PATH", "")
    args = parser().parse_args([])
    assert args.mode == "gate"
    assert args.sleep_after_minutes is None
    assert args.ready_path == "/healthz"


def test_gate_mode_builds_a_gate(tmp_path: Path) -> None:
    async def scenario() -> None:
        service = build(parser().parse_args(gate(tmp_path)))
        controller = service.controller
        try:
            assert controller.settings.mode == "gate"
            assert controller.settings.ready_path == "/healthz"
            assert controller.settings.subject == "AWS control node"
            assert controller.power.instance_id == CONTROL
            assert [p.instance_id for p in controller.also_start] == [WORKER]
            assert controller.sleeper is None
            assert isinstance(controller.cluster, StaticCluster)
            assert await controller.cluster.upstream_url() == "http://10.200.0.1:11435"
        finally:
            await service.session.close()

    run(scenario)


def test_gate_mode_with_a_kubeconfig_reads_pods_that_tolerate_the_liqo_taint(
    tmp_path: Path,
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, 9, token="t")

    async def scenario() -> None:
        service = build(parser().parse_args(gate(tmp_path, "--kubeconfig", str(kubeconfig))))
        try:
            cluster = service.controller.cluster
            assert isinstance(cluster, KubeCluster)
            assert cluster.required_toleration is not None
            assert cluster.required_toleration.key == "virtual-node.liqo.io/not-allowed"
            assert await cluster.upstream_url() == "http://10.200.0.1:11435"
        finally:
            await service.session.close()

    run(scenario)


def test_worker_mode_with_sleep_builds_a_sleeper_on_the_control_node(tmp_path: Path) -> None:
    async def scenario() -> None:
        argv = worker(tmp_path, "--sleep-instance-id", CONTROL, "--sleep-after-minutes", "45")
        service = build(parser().parse_args(argv))
        controller = service.controller
        try:
            assert controller.settings.mode == "worker"
            assert controller.settings.ready_path == "/api/version"
            assert controller.settings.sleep_after_seconds == 45 * 60
            assert isinstance(controller.sleeper, Ec2Power)
            assert controller.sleeper.instance_id == CONTROL
            assert controller.also_start == ()
        finally:
            await service.session.close()
        # The id alone (sleep-after-minutes empty): off.
        off = build(parser().parse_args(worker(tmp_path, "--sleep-instance-id", CONTROL)))
        try:
            assert off.controller.sleeper is None
            assert off.controller.settings.sleep_after_seconds is None
        finally:
            await off.session.close()

    run(scenario)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (("--sleep-after-minutes", "30"), "--sleep-instance-id"),
        (("--sleep-instance-id", CONTROL, "--sleep-after-minutes", "0"), "--sleep-after-minutes"),
        (("--sleep-instance-id", CONTROL, "--sleep-after-minutes", "x"), "--sleep-after-minutes"),
        (("--sleep-instance-id", WORKER, "--sleep-after-minutes", "30"), "--sleep-instance-id"),
        (("--sleep-instance-id", "control", "--sleep-after-minutes", "30"), "--sleep-instance-id"),
        (("--also-start-instance-ids", CONTROL), "--also-start-instance-ids"),
        (("--mode", "sleepy"), "--mode"),
        (("--credentials", "static"), "--credentials"),
        (("--certificate-file", "/etc/gate.crt"), "--certificate-file"),
    ],
)
def test_worker_mode_refuses(tmp_path: Path, extra: tuple[str, ...], named: str) -> None:
    assert named in refused(worker(tmp_path, *extra))


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (("--sleep-instance-id", WORKER), "--sleep-instance-id"),
        (("--sleep-after-minutes", "30"), "--sleep-after-minutes"),
        (("--upstream-url", ""), "--upstream-url"),
        (("--ready-path", "healthz"), "--ready-path"),
        (("--also-start-instance-ids", f"{WORKER},{CONTROL}"), "--also-start-instance-ids"),
        (("--also-start-instance-ids", "worker"), "--also-start-instance-ids"),
    ],
)
def test_gate_mode_refuses(tmp_path: Path, extra: tuple[str, ...], named: str) -> None:
    assert named in refused(gate(tmp_path, *extra))


def test_roles_anywhere_refuses_missing_or_wrong_options(tmp_path: Path) -> None:
    cert, key = self_signed("gate")
    cert_file, key_file = write_pem(tmp_path, "gate", cert, key)
    other_cert, other_key = self_signed("other")
    _, other_key_file = write_pem(tmp_path, "other", other_cert, other_key)
    complete = {
        "--roles-anywhere-trust-anchor-arn": ANCHOR,
        "--roles-anywhere-profile-arn": PROFILE,
        "--roles-anywhere-role-arn": ROLE,
        "--certificate-file": str(cert_file),
        "--private-key-file": str(key_file),
    }

    def argv(**changes: str | None) -> list[str]:
        options = {**complete, **{f"--{k.replace('_', '-')}": v for k, v in changes.items()}}
        flat = [part for k, v in options.items() if v is not None for part in (k, v)]
        return gate(tmp_path, "--credentials", "roles-anywhere", *flat)

    settings = roles_anywhere_from(parser().parse_args(argv()))
    assert settings is not None
    assert settings.region == "us-west-2"
    assert settings.endpoint is None
    for option in complete:
        name = option.removeprefix("--").replace("-", "_")
        assert option in refused(argv(**{name: None}))
    wrong = {
        "roles_anywhere_trust_anchor_arn": PROFILE,  # a profile, not a trust anchor
        "roles_anywhere_profile_arn": PROFILE.replace("us-west-2", "eu-west-1"),
        "roles_anywhere_role_arn": "arn:aws:iam::123456789012:user/gate",
        "certificate_file": str(key_file),
        "private_key_file": str(other_key_file),  # not the certificate's key
        "roles_anywhere_endpoint_url": "http://127.0.0.1:8443",
    }
    for name, value in wrong.items():
        assert f"--{name.replace('_', '-')}" in refused(argv(**{name: value})), name
    missing = str(tmp_path / "absent.crt")
    assert "--certificate-file" in refused(argv(certificate_file=missing))
