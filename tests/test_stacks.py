"""Whole-stack properties under the mocks: determinism, the output contract, the StackReference
link between the stacks, and the offline plan command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from stacks import outputs
from stacks.outputs import MissingStackOutputError, UndecryptableStackOutputError
from tools import mocks, offline, plan


@pytest.mark.parametrize("stack", offline.STACK_ORDER)
def test_running_a_stack_twice_gives_byte_identical_inputs(stack: str) -> None:
    first = offline.run_with_dependencies(stack).canonical_inputs()
    second = offline.run_with_dependencies(stack).canonical_inputs()
    assert first == second


@pytest.mark.parametrize("stack", offline.STACK_ORDER)
def test_exports_match_the_contract_module(stack: str) -> None:
    run = offline.run_with_dependencies(stack)
    declared = {spec.name: spec for spec in outputs.CONTRACTS[stack]}
    assert set(run.exports) == set(declared)
    for name, spec in declared.items():
        assert (name in run.secret_exports) == spec.secret, f"{stack}.{name} secretness"


def test_homelab_reads_the_aws_gpu_stack_named_in_its_config(homelab_run: offline.StackRun) -> None:
    config = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    refs = homelab_run.by_type("pulumi:pulumi:StackReference")
    assert [r.name for r in refs] == [config["awsStack"]]
    assert all(r.read for r in refs)


def test_homelab_fails_naming_a_missing_aws_gpu_output(aws_gpu_served: offline.StackRun) -> None:
    plan_mocks, _ = mocks.install_mocks()
    exports = plan_mocks.stack_exports["aws-gpu"]
    exports.values = {k: v for k, v in exports.values.items() if k != "networkPlan"}
    with pytest.raises(MissingStackOutputError) as caught:
        offline.run_stack("homelab")
    assert "networkPlan" in str(caught.value)
    assert "pulumi up -s aws-gpu" in str(caught.value)


def test_an_undecryptable_secret_output_stops_homelab_naming_the_cause(
    aws_gpu_served: offline.StackRun,
) -> None:
    """Stacks with different secrets providers: the engine hands '{}' for a secret output
    (pulumi/pulumi#19533) and logs only an info line; homelab must say what is wrong."""
    plan_mocks, _ = mocks.install_mocks()
    exports = plan_mocks.stack_exports["aws-gpu"]
    exports.values = {**exports.values, "adminKubeconfig": {}}
    with pytest.raises(UndecryptableStackOutputError) as caught:
        offline.run_stack("homelab")
    message = str(caught.value)
    assert "output 'adminKubeconfig' of stack 'organization/hybridgpu/aws-gpu'" in message
    assert "cannot decrypt" in message
    assert "one secrets provider" in message


def test_homelab_refuses_a_network_plan_that_differs_from_aws_gpu() -> None:
    from stacks.config import ConfigError

    offline.run_stack("aws-gpu", {"hybridgpu:awsPodCidr": "10.62.0.0/16"})
    with pytest.raises(ConfigError) as caught:
        offline.run_stack("homelab")
    assert "hybridgpu:awsPodCidr" in str(caught.value)


def test_secret_config_never_appears_outside_secret_inputs() -> None:
    for stack in offline.STACK_ORDER:
        run = offline.run_with_dependencies(stack)
        for reg in run.registrations:
            redacted = json.dumps(mocks.redact(reg.inputs), default=str)
            assert "mock-secret-" not in redacted, f"{stack}: {reg.type} {reg.name} leaks a secret"
        exported = json.dumps(
            {k: v for k, v in run.exports.items() if k not in run.secret_exports}, default=str
        )
        assert "mock-secret-" not in exported


def test_plan_command_prints_tree_writes_artifacts_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for stack in offline.STACK_ORDER:
        json_path = tmp_path / f"{stack}.json"
        code = plan.main([stack, "--artifacts", str(tmp_path / stack), "--json", str(json_path)])
        printed = capsys.readouterr().out
        assert code == 0
        assert f"pulumi:pulumi:Stack  hybridgpu-{stack}" in printed
        data = json.loads(json_path.read_text())
        assert data["stack"] == stack
        assert data["resourceCount"] == sum(data["counts"].values()) == len(data["resources"])
        assert f"{data['resourceCount']} resources:" in printed
        # A second plan of the same config is byte-identical: diffable in a pull request.
        again = tmp_path / f"{stack}-again.json"
        assert plan.main([stack, "--artifacts", str(tmp_path / stack), "--json", str(again)]) == 0
        assert again.read_bytes() == json_path.read_bytes()


def test_plan_command_rejects_bad_config_with_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan.main(["aws-gpu", "--set", "nebulaMtu=100"]) == 2
    assert "hybridgpu:nebulaMtu" in capsys.readouterr().err
    assert plan.main(["production"]) == 2
    assert "unknown stack 'production'" in capsys.readouterr().err


def test_every_provider_bound_resource_and_invoke_names_its_provider(
    aws_gpu_run: offline.StackRun, homelab_run: offline.StackRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default providers are disabled (Pulumi.yaml): the mocks do not enforce it, so check that
    every AWS, Kubernetes and Proxmox resource carries an explicit provider of its package."""
    for run in (aws_gpu_run, homelab_run):
        for reg in run.managed():
            package = reg.type.split(":", 1)[0]
            if package in ("aws", "kubernetes", "proxmoxve") and reg.custom:
                assert reg.provider.split("::")[2].endswith(f"pulumi:providers:{package}"), reg.urn
    plan_mocks, _ = mocks.install_mocks()
    seen: list[tuple[str, str]] = []
    original = plan_mocks.call

    def recording(args: pulumi.runtime.MockCallArgs) -> Any:
        seen.append((args.token, args.provider or ""))
        return original(args)

    monkeypatch.setattr(plan_mocks, "call", recording)
    offline.run_with_dependencies("homelab")
    assert seen
    for token, provider in seen:
        package = token.split(":", 1)[0]
        assert f"pulumi:providers:{package}::" in provider, (token, provider)


@pytest.mark.parametrize("stack", ["aws-gpu", "homelab"])
def test_a_preview_registers_the_same_resources_as_an_update(
    stack: str, aws_gpu_run: offline.StackRun, homelab_run: offline.StackRun
) -> None:
    """During `pulumi preview` every computed output is unknown: a resource declared inside an
    apply, or a step that needs a value only a provider knows, would be missing from the preview
    (and from a PR's review). Both stacks must preview exactly what they then update."""
    update = {"aws-gpu": aws_gpu_run, "homelab": homelab_run}[stack]
    preview = offline.run_stack(stack, preview=True)
    assert sorted(r.urn for r in preview.registrations) == sorted(
        r.urn for r in update.registrations
    )
    # Unknown outputs really flowed: e.g. the worker's instance id is not known before launch.
    if stack == "aws-gpu":
        assert preview.exports["gpuWorkerInstanceId"] is None
