"""Typed config: every valid fixture loads and runs, every invalid one fails with the key named
and before any resource is registered."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stacks import config as stack_config
from tests import fixture_configs
from tools import mocks, offline


@pytest.mark.parametrize("path", fixture_configs.all_fixtures("invalid"), ids=lambda p: p.stem)
def test_invalid_fixture_fails_naming_the_key(path: Path, aws_gpu_served: offline.StackRun) -> None:
    fixture = fixture_configs.load(path)
    assert fixture.expect_key, f"{path.name} must say which key the error names (expectKey)"
    # aws_gpu_served: a StackReference must never be what fails here
    with pytest.raises(stack_config.ConfigError) as caught:
        offline.run_stack(fixture.stack, fixture.overrides)
    message = str(caught.value)
    assert fixture.expect_key in message, f"{fixture.description}: error does not name the key"
    if fixture.expect_text:
        assert fixture.expect_text in message
    _, monitor = mocks.install_mocks()
    assert monitor.registrations == [], "config errors must come before any resource"


@pytest.mark.parametrize("path", fixture_configs.all_fixtures("valid"), ids=lambda p: p.stem)
def test_valid_fixture_runs(path: Path, valid_fixture_runs: dict[str, offline.StackRun]) -> None:
    """The runs are shared with the upstream tier (conftest.valid_fixture_runs)."""
    fixture = fixture_configs.load(path)
    run = valid_fixture_runs[path.stem]
    assert run.stack == fixture.stack
    assert run.exports, f"{fixture.description}: the stack exported nothing"


@pytest.mark.parametrize("stack", offline.STACK_ORDER)
def test_example_stack_config_is_valid(stack: str, aws_gpu_served: offline.StackRun) -> None:
    run = offline.run_stack(stack)
    assert run.registrations


def test_fixtures_exist_for_both_stacks() -> None:
    for kind in ("valid", "invalid"):
        stacks = {fixture_configs.load(p).stack for p in fixture_configs.all_fixtures(kind)}
        assert stacks == set(offline.STACK_ORDER), f"{kind} fixtures cover {stacks}"


def test_a_stack_without_a_role_is_a_clear_error() -> None:
    with pytest.raises(stack_config.ConfigError) as caught:
        offline.run_stack("staging")
    assert "stack 'staging' has no role" in str(caught.value)
    assert "pulumi config set hybridgpu:role homelab" in str(caught.value)
    for known in offline.STACK_ORDER:
        assert known in str(caught.value)
    with pytest.raises(stack_config.ConfigError) as bad:
        offline.run_stack("staging", {"hybridgpu:role": "gpu"})
    assert "hybridgpu:role: 'gpu' is not a stack role" in str(bad.value)


def test_any_number_of_stacks_of_each_role() -> None:
    """A second homelab, an AWS stack per region, a review stack: the role comes from config
    or the name, never from a fixed list of names."""
    second = offline.run_stack("homelab-2", config_from="homelab")
    assert second.by_type("proxmoxve:index/vmLegacy:VmLegacy")
    assert second.registrations[0].urn.startswith("urn:pulumi:homelab-2::")
    review = offline.run_stack("pr-42", {"hybridgpu:role": "aws-gpu"}, config_from="aws-gpu")
    assert review.by_type("aws:ec2/vpc:Vpc")
    assert review.exports["nebulaCaKeyParameter"] == "/hybridgpu/pr-42/mesh/ca-key"


def test_a_misspelt_config_namespace_is_rejected_naming_the_likely_one() -> None:
    config = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    with pytest.raises(stack_config.ConfigError) as caught:
        offline.run_stack("homelab", {"hybridgpuu:homelab": config})
    message = str(caught.value)
    assert "hybridgpuu:homelab: 'hybridgpuu' is neither this project's config namespace" in message
    assert "did you mean 'hybridgpu:homelab'?" in message


def test_pulumi_yaml_declares_exactly_the_project_keys_with_model_defaults() -> None:
    project = yaml.safe_load((offline.REPO_ROOT / "Pulumi.yaml").read_text())
    declared = {
        k.split(":", 1)[1]: v for k, v in project["config"].items() if k.startswith("hybridgpu:")
    }
    assert set(declared) == set(stack_config.PROJECT_KEYS)
    model_defaults = stack_config.parse_project({})
    for config_key, spec in declared.items():
        assert {"type", "description", "default"} <= set(spec), config_key
        # The CLI applies the Pulumi.yaml default; the model's own default must be the same.
        from_yaml = stack_config.parse_project({config_key: spec["default"]})
        assert from_yaml == model_defaults, f"{config_key}: Pulumi.yaml default differs from model"


def test_project_defaults_are_a_disjoint_plan() -> None:
    ranges = list(
        stack_config.parse_project({}).network.named_ranges(include_subnet=False).values()
    )
    for i, first in enumerate(ranges):
        for second in ranges[i + 1 :]:
            assert not first.overlaps(second)


@pytest.mark.parametrize(
    ("instance_type", "gpus", "label"),
    [
        ("g4dn.xlarge", 1, "nvidia-t4"),
        ("g5.12xlarge", 4, "nvidia-a10g"),
        ("p4d.24xlarge", 8, "nvidia-a100"),
    ],
)
def test_gpu_instance_facts(instance_type: str, gpus: int, label: str) -> None:
    worker = stack_config.GpuWorkerSettings(instance_type=instance_type)
    assert worker.gpu_count == gpus
    assert worker.gpu_type_label == label


def test_secrets_are_read_as_secrets() -> None:
    run = offline.run_stack("aws-gpu")
    assert run  # the loader read sshPrivateKey with require_secret: a plain read would warn
    cfg, secret_keys = offline.runtime_config_for("aws-gpu")
    assert "hybridgpu:sshPrivateKey" in secret_keys
    assert cfg["hybridgpu:sshPrivateKey"].startswith("mock-secret-")


def test_default_providers_are_disabled_for_every_provider_the_program_uses() -> None:
    """A resource or invoke that forgot its provider would use the operator's ambient AWS region
    or kubectl context; the engine refuses it with default providers disabled."""
    project = yaml.safe_load((offline.REPO_ROOT / "Pulumi.yaml").read_text())
    disabled = project["config"]["pulumi:disable-default-providers"]
    assert set(disabled) == {"aws", "kubernetes", "proxmoxve"}
