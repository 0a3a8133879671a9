"""docs/reference.md is what tools/gen_docs.py prints from the code: every config key of both
stacks and every stack output. A key added without `./dev docs` fails here (and so in CI)."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import Field

from stacks import config as stack_config
from stacks import outputs
from stacks.config.aws_gpu import GpuWakerSettings
from tools import config_walk, gen_docs, offline


def test_the_reference_is_what_the_generator_prints() -> None:
    assert gen_docs.REFERENCE.read_text() == gen_docs.render(), (
        "docs/reference.md differs from the code: run ./dev docs"
    )


def test_a_new_key_shows_up_in_the_walk() -> None:
    """The walk is generic: a field added to any model is a new row (so the file above drifts
    until regenerated)."""

    class Extended(GpuWakerSettings):
        probe_interval_seconds: int = Field(default=30, ge=5)
        """How often the worker is probed."""

    rows = {r.path: r for r in config_walk.walk(Extended, "hybridgpu:aws.gpuWaker", None, False)}
    row = rows["hybridgpu:aws.gpuWaker.probeIntervalSeconds"]
    assert (row.type, row.default, row.allowed) == ("integer", "`30`", "≥ 5")
    assert row.meaning == "How often the worker is probed."
    assert row.path not in gen_docs.REFERENCE.read_text()


def _leaf_paths(value: Any, prefix: str) -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaf_paths(v, f"{prefix}.{k}")]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [p for item in value for p in _leaf_paths(item, f"{prefix}[]")]
    return [prefix]


def test_every_key_of_the_example_stacks_and_every_output_is_documented() -> None:
    text = gen_docs.REFERENCE.read_text()
    documented = {
        line.split(" | ")[0].removeprefix("| ").strip("`"): line.split(" | ")[1]
        for line in text.splitlines()
        if line.startswith("| `")
    }
    for stack in offline.STACK_ORDER:
        for top, value in offline.stack_config_file(stack).items():
            if isinstance(value, dict) and set(value) == {"secure"}:
                assert top in documented, top
                continue
            for path in _leaf_paths(value, top):
                parent = path.rsplit(".", 1)[0]  # a key inside a map-typed key (tags.Owner)
                assert path in documented or documented.get(parent, "").startswith("map of"), (
                    f"{stack}: {path} is not in docs/reference.md"
                )
    for key in stack_config.PROJECT_KEYS:
        assert stack_config.key(key) in documented
    for specs in outputs.CONTRACTS.values():
        for spec in specs:
            assert spec.name in documented, spec.name


def test_readers_of_the_outputs_are_found_in_the_code() -> None:
    read = gen_docs.readers()["aws-gpu"]
    assert "homelab stack (StackReference)" in read["nebulaCaKeyParameter"]
    assert read["nebulaOperatorCerts"] == ["`./dev mesh-join`"]
    assert "`./dev models`" in read["modelsPrefix"]
    declared = {spec.name for spec in outputs.AWS_GPU_OUTPUTS}
    by_stack = {name for name, who in read.items() if "homelab stack (StackReference)" in who}
    assert by_stack <= declared


def test_the_readme_points_at_the_reference() -> None:
    readme = (offline.REPO_ROOT / "README.md").read_text()
    section = readme.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    assert "docs/reference.md" in section


def test_pulumi_yaml_descriptions_are_the_project_meanings() -> None:
    declared = yaml.safe_load((offline.REPO_ROOT / "Pulumi.yaml").read_text())["config"]
    rows = {r.path: r for r in gen_docs.project_rows()}
    for key, spec in declared.items():
        if key.startswith(f"{stack_config.PROJECT}:"):
            assert rows[key].meaning == " ".join(str(spec["description"]).split())
