"""Ordered multi-stack operations (tools/deploy.py) against a fake workspace: there is no Pulumi CLI
on the test machines, so the order, the refusal and the error propagation are tested on what the
tool asks the workspace to do."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tools import deploy


class FakeStack:
    def __init__(self, name: str, log: list[str], *, resources: int, fail: str | None) -> None:
        self.name = name
        self.log = log
        self.resources = resources
        self.fail = fail

    def up(self, *, on_output: Callable[[str], Any], policy_packs: Sequence[str]) -> object:
        self.log.append(f"up {self.name} packs={','.join(policy_packs)}")
        on_output(f"Updating ({self.name})\n    + aws:ec2:Instance created\n")
        if self.fail == "up":
            raise RuntimeError(f"{self.name}: error: update failed")
        self.resources = 10
        return None

    def destroy(self, *, on_output: Callable[[str], Any]) -> object:
        self.log.append(f"destroy {self.name}")
        on_output(f"Destroying ({self.name})")
        if self.fail == "destroy":
            raise RuntimeError(f"{self.name}: error: resource in use")
        if self.fail != "destroy-leaves-resources":
            self.resources = 0
        return None

    def resource_count(self) -> int:
        self.log.append(f"count {self.name}")
        return self.resources


class FakeWorkspace:
    def __init__(
        self,
        resources: dict[str, int] | None = None,
        fail: dict[str, str] | None = None,
        missing: Sequence[str] = (),
    ) -> None:
        self.log: list[str] = []
        self.stacks = {
            name: FakeStack(
                name,
                self.log,
                resources=(resources or {}).get(name, 0),
                fail=(fail or {}).get(name),
            )
            for name in deploy.STACK_ORDER
            if name not in missing
        }

    def stack(self, name: str) -> FakeStack | None:
        return self.stacks.get(name)

    def operations(self) -> list[str]:
        return [entry for entry in self.log if not entry.startswith("count")]


def test_up_runs_aws_gpu_then_homelab_with_the_policy_pack_and_streams_progress() -> None:
    workspace, out = FakeWorkspace(), io.StringIO()
    deploy.up(workspace, out=out)
    pack = str(deploy.POLICY_PACK)
    assert workspace.operations() == [f"up aws-gpu packs={pack}", f"up homelab packs={pack}"]
    lines = out.getvalue().splitlines()
    assert "[aws-gpu] Updating (aws-gpu)" in lines
    assert "[homelab]     + aws:ec2:Instance created" in lines
    assert lines.index("[aws-gpu] Updating (aws-gpu)") < lines.index("[homelab] Updating (homelab)")


def test_a_failed_up_stops_the_sequence_and_names_what_was_skipped() -> None:
    workspace = FakeWorkspace(fail={"aws-gpu": "up"})
    with pytest.raises(
        deploy.OperationError, match="up of 'aws-gpu' failed; not run: homelab"
    ) as e:
        deploy.up(workspace, out=io.StringIO())
    assert workspace.operations() == [f"up aws-gpu packs={deploy.POLICY_PACK}"]
    assert "update failed" in str(e.value.__cause__)


def test_up_of_a_stack_that_does_not_exist_is_an_error_before_anything_runs() -> None:
    workspace = FakeWorkspace(missing=["aws-gpu"])
    with pytest.raises(deploy.OperationError, match="'aws-gpu' does not exist"):
        deploy.up(workspace, out=io.StringIO())
    assert workspace.operations() == []


def test_destroy_runs_homelab_then_aws_gpu_checking_homelab_is_empty_first() -> None:
    workspace = FakeWorkspace(resources={"aws-gpu": 40, "homelab": 90})
    deploy.destroy(workspace, out=io.StringIO())
    assert workspace.log == ["destroy homelab", "count homelab", "destroy aws-gpu"]


def test_destroy_of_aws_gpu_is_refused_while_homelab_has_resources() -> None:
    workspace = FakeWorkspace(resources={"aws-gpu": 40, "homelab": 90})
    with pytest.raises(deploy.OperationError, match="stack 'homelab' still has 90 resource"):
        deploy.destroy(workspace, ["aws-gpu"], out=io.StringIO())
    assert workspace.operations() == []


def test_destroy_is_refused_when_homelab_kept_resources_after_its_destroy() -> None:
    """e.g. protected or retained resources: aws-gpu must stay."""
    workspace = FakeWorkspace(
        resources={"aws-gpu": 40, "homelab": 90}, fail={"homelab": "destroy-leaves-resources"}
    )
    with pytest.raises(deploy.OperationError, match="refusing to destroy 'aws-gpu'"):
        deploy.destroy(workspace, out=io.StringIO())
    assert workspace.operations() == ["destroy homelab"]


def test_a_failed_destroy_stops_the_sequence() -> None:
    workspace = FakeWorkspace(resources={"aws-gpu": 40, "homelab": 90}, fail={"homelab": "destroy"})
    with pytest.raises(
        deploy.OperationError, match="destroy of 'homelab' failed; not run: aws-gpu"
    ):
        deploy.destroy(workspace, out=io.StringIO())
    assert workspace.operations() == ["destroy homelab"]


def test_destroy_of_aws_gpu_proceeds_when_there_is_no_homelab_stack() -> None:
    workspace = FakeWorkspace(resources={"aws-gpu": 40}, missing=["homelab"])
    out = io.StringIO()
    deploy.destroy(workspace, out=out)
    assert workspace.operations() == ["destroy aws-gpu"]
    assert "homelab: no such stack" in out.getvalue()


def test_cli_requires_confirmation_rejects_unknown_stacks_and_reports_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    workspace = FakeWorkspace(resources={"aws-gpu": 40, "homelab": 90})
    assert deploy.main(["destroy"], workspace=workspace) == 2
    assert "homelab then aws-gpu; run again with --yes" in capsys.readouterr().err
    assert deploy.main(["up", "aws"], workspace=workspace) == 1
    assert "unknown stack(s) aws; this project has aws-gpu, homelab" in capsys.readouterr().err
    assert workspace.operations() == []
    assert deploy.main(["destroy", "aws-gpu", "--yes"], workspace=workspace) == 1
    assert "refusing to destroy 'aws-gpu'" in capsys.readouterr().err
    assert deploy.main(["up", "homelab"], workspace=workspace) == 0
    assert workspace.operations() == [f"up homelab packs={deploy.POLICY_PACK}"]


def test_without_the_pulumi_cli_the_tool_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert deploy.main(["up"]) == 1
    assert "the Pulumi CLI is not on PATH" in capsys.readouterr().err


def test_resource_count_ignores_the_stack_and_its_providers() -> None:
    class Deployment:
        deployment: dict[str, Any] = {  # noqa: RUF012 - a fixed fake
            "resources": [
                {"type": "pulumi:pulumi:Stack"},
                {"type": "pulumi:providers:aws"},
                {"type": "aws:ec2/vpc:Vpc"},
            ]
        }

    class Stack:
        def export_stack(self) -> Deployment:
            return Deployment()

    assert deploy.AutomationStack(Stack()).resource_count() == 1
