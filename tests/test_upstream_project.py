"""Pulumi.yaml validates against the project schema the Pulumi CLI embeds
(``../shared/upstream/pulumi/project-v3.259.0.json``) and the CLI's own checks after it, and both
stack files' values fit the types Pulumi.yaml declares, as ``pulumi up`` checks them before the
program runs (pulumi/pulumi@v3.259.0 sdk/go/common/workspace/project.go)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.upstream_cli import project_problems, pulumi_project_schema, stack_file_problems
from tools.offline import REPO_ROOT, STACK_ORDER

pytestmark = pytest.mark.upstream


def _project() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())


def _stack_file(stack: str) -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())


def test_pulumi_yaml_is_a_project_the_cli_accepts() -> None:
    project = _project()
    assert project_problems(project, pulumi_project_schema()) == []
    # The declarations were really checked: every project key is typed, with a default (the
    # engine's own keys, e.g. pulumi:disable-default-providers, are plain values).
    declared = {k: v for k, v in project["config"].items() if k.startswith("hybridgpu:")}
    assert declared
    assert all("type" in d and "default" in d for d in declared.values())


@pytest.mark.parametrize("stack", STACK_ORDER)
def test_stack_files_fit_the_declared_types(stack: str) -> None:
    assert stack_file_problems(stack, _stack_file(stack), _project()) == []


def test_an_unknown_field_in_a_config_declaration_fails() -> None:
    project = _project()
    declaration = project["config"]["hybridgpu:nebulaMtu"]
    declaration["defualt"] = declaration.pop("default")
    problems = project_problems(project, pulumi_project_schema())
    assert any(
        "config.hybridgpu:nebulaMtu" in p and "'defualt' was unexpected" in p for p in problems
    ), problems


def test_an_unknown_runtime_option_field_fails() -> None:
    project = _project()
    project["runtime"]["option"] = project["runtime"].pop("options")
    assert project_problems(project, pulumi_project_schema()) == [
        "Pulumi.yaml: runtime: Additional properties are not allowed ('option' was unexpected) "
        "(rejected by the Pulumi CLI's project.json)"
    ]


def test_an_unknown_top_level_field_fails() -> None:
    """The CLI keeps unknown top-level fields without a word (Project.AdditionalKeys), so a
    typo such as ``stackConfigDr`` would be ignored: the tier rejects it."""
    project = _project()
    project["stackConfigDr"] = "stacks"
    assert project_problems(project, pulumi_project_schema()) == [
        "Pulumi.yaml: 'stackConfigDr' is not a project field the CLI reads; "
        "did you mean 'stackConfigDir'?"
    ]


def test_a_default_of_the_wrong_type_fails() -> None:
    project = _project()
    project["config"]["hybridgpu:nebulaMtu"]["default"] = "1300 bytes"
    assert project_problems(project, pulumi_project_schema()) == [
        "Pulumi.yaml config 'hybridgpu:nebulaMtu': default is not of type 'integer'"
    ]


def test_a_stack_value_of_the_wrong_type_or_an_unknown_stack_field_fails() -> None:
    stack_file = copy.deepcopy(_stack_file("aws-gpu"))
    stack_file["config"]["hybridgpu:nebulaMtu"] = "big"
    stack_file["secretprovider"] = "passphrase"
    assert stack_file_problems("aws-gpu", stack_file, _project()) == [
        "Pulumi.aws-gpu.yaml: 'secretprovider' is not a stack file field the CLI reads",
        "Pulumi.aws-gpu.yaml: 'hybridgpu:nebulaMtu' is 'big', not of the declared type 'integer'",
    ]


def test_config_values_are_typed_as_the_cli_types_them() -> None:
    """The CLI's ValidateConfigValue: "42" is an integer, "true" a boolean, true no integer."""
    project = {
        "name": "p",
        "config": {
            "p:count": {"type": "integer"},
            "p:flag": {"type": "boolean", "default": False},
            "p:list": {"type": "array", "items": {"type": "string"}, "default": []},
        },
    }
    ok = {"config": {"p:count": "42", "p:flag": "true", "p:list": ["a"]}}
    assert stack_file_problems("s", ok, project) == []
    bad = {"config": {"p:count": True, "p:flag": "yes", "p:list": [1]}}
    assert len(stack_file_problems("s", bad, project)) == 3
    assert stack_file_problems("s", {"config": {}}, project) == [
        "Pulumi.s.yaml: missing 'p:count' (typed, no default)"
    ]
