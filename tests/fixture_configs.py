"""Valid and invalid config fixtures: small edits of the example stack configs.

Each fixture is a YAML file in tests/fixtures/{valid,invalid}/::

    stack: aws-gpu
    description: why this config is (in)valid
    set:                       # dotted paths into Pulumi.<stack>.yaml's config; [i] indexes lists
      hybridgpu:aws.gpuWorker.instanceType: t3.large
    unset: [hybridgpu:aws.availabilityZone]
    expectKey: hybridgpu:aws.gpuWorker.instanceType     # invalid only: the key the error names
    expectText: not an NVIDIA GPU instance type         # invalid only, optional

Editing the real example keeps every invalid fixture one mistake away from a valid config.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools import offline

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Fixture:
    path: Path
    stack: str
    description: str
    overrides: dict[str, Any]
    expect_key: str | None
    expect_text: str | None


def load(path: Path) -> Fixture:
    data = yaml.safe_load(path.read_text())
    stack = data["stack"]
    config = copy.deepcopy(offline.stack_config_file(stack))
    for dotted, value in (data.get("set") or {}).items():
        offline.edit_config_path(config, dotted, value, remove=False)
    removed: set[str] = set()
    for dotted in data.get("unset") or []:
        offline.edit_config_path(config, dotted, None, remove=True)
        top, steps = offline.split_config_path(dotted)
        if not steps:
            removed.add(top)  # also drops defaults and harness placeholders for that key
    overrides: dict[str, Any] = {**config, **dict.fromkeys(removed)}
    return Fixture(
        path=path,
        stack=stack,
        description=data["description"],
        overrides=overrides,
        expect_key=data.get("expectKey"),
        expect_text=data.get("expectText"),
    )


def all_fixtures(kind: str) -> list[Path]:
    return sorted((FIXTURES / kind).glob("*.yaml"))
