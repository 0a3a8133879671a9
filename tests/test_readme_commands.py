"""Every `./dev` command in the README's code blocks runs here exactly as written, through its
Python entry point (the `./dev` script only installs, then execs it), or is listed below with
why it cannot run offline.

The plans reuse the session's stack runs (tests/conftest.py): a `--set` override is applied to
the config exactly as `./dev plan` applies it and validated by the stack's config models (what
decides whether the command works), then the plan prints and writes from the shared run.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from stacks import config as stack_config
from stacks.config import loading
from tools import mesh_join, offline, plan

README = offline.REPO_ROOT / "README.md"

NOT_OFFLINE = {
    "./dev test": "the whole suite: it is what CI runs (.ci/run)",
    "./dev bench": "times the whole suite; too slow for a test",
    "./dev models": "needs the deployed stack's S3 bucket (tests/test_models_cli.py runs the "
    "commands against a moto server)",
    "./dev mesh-join alice": "needs the deployed aws-gpu stack's outputs (pulumi stack output); "
    "tests/test_operator_mesh.py writes the files from recorded outputs",
    "./dev up": "needs the Pulumi CLI and credentials",
    "./dev destroy": "needs the Pulumi CLI and credentials",
}


def readme_dev_commands() -> list[str]:
    """`./dev ...` lines of the README's code blocks, comments stripped."""
    commands: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README.read_text(), re.S):
        for raw in block.splitlines():
            line = raw.strip()
            if line.startswith("./dev "):
                commands.append(line.split("  #", 1)[0].split(" # ", 1)[0].strip())
    return commands


def _offline(command: str) -> bool:
    return not any(command.startswith(prefix) for prefix in NOT_OFFLINE)


def test_the_readme_shows_dev_commands_and_the_set_example() -> None:
    commands = readme_dev_commands()
    assert "./dev plan aws-gpu" in commands
    assert any("--set" in c for c in commands if c.startswith("./dev plan"))


def _validate(stack: str, overrides: dict[str, Any]) -> None:
    """The config `./dev plan STACK --set ...` hands the program, checked by the same models
    and the same unknown-key rule the program applies before registering anything."""
    config, _ = offline.runtime_config_for(stack, overrides)
    role = offline.role_of(stack)
    allowed = {
        stack_config.STACK_AWS_GPU: loading.AWS_GPU_STACK_KEYS,
        stack_config.STACK_HOMELAB: loading.HOMELAB_STACK_KEYS,
    }[role or ""]
    project_values = {}
    for full in config:
        namespace, _, name = full.partition(":")
        if namespace != stack_config.PROJECT:
            continue
        if name in stack_config.PROJECT_KEYS:
            project_values[name] = config[full]
        else:
            assert name in allowed, f"{full}: not a key of stack {stack}"
    project = stack_config.parse_project(project_values)
    if role == stack_config.STACK_AWS_GPU:
        stack_config.parse_aws(project, json.loads(config[stack_config.key("aws")]))
    else:
        stack_config.parse_homelab(project, json.loads(config[stack_config.key("homelab")]))


@pytest.mark.parametrize(
    "command", [c for c in readme_dev_commands() if _offline(c)], ids=lambda c: c
)
def test_readme_command_runs_as_written(  # noqa: PLR0917 - pytest fixtures
    command: str,
    aws_gpu_run: offline.StackRun,
    homelab_run: offline.StackRun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    words = shlex.split(command)
    task, args = words[1], words[2:]
    monkeypatch.chdir(tmp_path)  # relative paths (--json build/...) land here
    if task == "plan":
        runs = {"aws-gpu": aws_gpu_run, "homelab": homelab_run}

        def shared_run(stack: str, overrides: dict[str, Any]) -> offline.StackRun:
            _validate(stack, overrides)
            return runs[stack]

        monkeypatch.setattr(plan.offline, "run_with_dependencies", shared_run)
        assert plan.main(args) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "rendered artifacts written" in out
        if "--json" in args:
            path = Path(args[args.index("--json") + 1])
            assert json.loads(path.read_text())["resources"]
    elif task == "mesh-join":
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        assert mesh_join.main(args) == 0
        assert "nebulaPublicKey" in capsys.readouterr().out
    elif task == "docs":
        from tools import gen_docs

        assert gen_docs.main(args) == 0
    else:
        pytest.fail(f"{command}: no way to run it here; run it or add it to NOT_OFFLINE")


def test_a_wrong_set_path_is_what_the_check_catches() -> None:
    """The validation above is the program's: a key that is not there fails it."""
    with pytest.raises((stack_config.ConfigError, AssertionError)):
        _validate("aws-gpu", {"hybridgpu:aws.gpuWorker.instanceTyp": "g5.xlarge"})
    with pytest.raises((stack_config.ConfigError, AssertionError)):
        _validate("aws-gpu", {"hybridgpu:gpuWorker": {"instanceType": "g5.xlarge"}})
