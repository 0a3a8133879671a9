"""Tearing the homelab down when the AWS cluster is gone (tools/teardown.py, README "Teardown").

The test replays the printed ``pulumi state delete --target-dependents`` commands on the homelab
run's registrations the way the engine edits a snapshot (pulumi/pulumi
pkg/resource/edit/operations.go DeleteResource and pkg/resource/graph/dependency_graph.go
OnlyDependsOn @v3.259.0: dependents through parent, dependencies, property dependencies,
deletedWith, replaceWith and provider references), then checks what is left: nothing whose delete
needs the AWS cluster, and nothing real (a VM, a disk, a token) dropped from state.
"""

from __future__ import annotations

import re
import shlex

import pytest

from tools import offline, teardown
from tools.mocks import Registration

STACK_REFERENCE = "pulumi:pulumi:StackReference"


def _depends_on(candidate: Registration, condemned: set[str]) -> bool:
    edges = {
        candidate.parent,
        candidate.deleted_with,
        *candidate.dependencies,
        *candidate.replace_with,
        *(urn for urns in candidate.property_dependencies.values() for urn in urns),
    }
    provider_urn = candidate.provider.rsplit("::", 1)[0] if candidate.provider else ""
    return bool(edges & condemned) or provider_urn in condemned


def state_delete(
    state: list[Registration], urn: str, *, target_dependents: bool
) -> list[Registration]:
    """The state after ``pulumi state delete [--target-dependents] URN``; raises as the CLI does."""
    if urn not in {r.urn for r in state}:
        raise LookupError(f"no resource {urn} in state")
    condemned = {urn}
    # The snapshot is in dependency order, so one pass collects the transitive dependents.
    for registration in state:
        if registration.urn != urn and _depends_on(registration, condemned):
            condemned.add(registration.urn)
    if len(condemned) > 1 and not target_dependents:
        raise RuntimeError(f"{urn} has dependents: {sorted(condemned - {urn})}")
    protected = [r.urn for r in state if r.urn in condemned and r.protect]
    if protected:
        raise RuntimeError(f"protected: {protected}")
    return [r for r in state if r.urn not in condemned]


def _replay(state: list[Registration], commands: list[str]) -> list[Registration]:
    for command in commands:
        argv = shlex.split(command)
        if argv[:3] != ["pulumi", "state", "delete"]:
            continue
        state = state_delete(state, argv[-1], target_dependents="--target-dependents" in argv)
    return state


@pytest.fixture(scope="module")
def managed(homelab_run: offline.StackRun) -> list[Registration]:
    return [r for r in homelab_run.registrations if not r.read]


@pytest.fixture(scope="module")
def after(managed: list[Registration]) -> list[Registration]:
    return _replay(managed, teardown.plan(managed).commands())


def test_the_replay_model_refuses_what_the_cli_refuses(managed: list[Registration]) -> None:
    provider = next(r.urn for r in managed if r.name == teardown.AWS_PROVIDER_NAME)
    with pytest.raises(RuntimeError, match="has dependents"):
        state_delete(managed, provider, target_dependents=False)
    protected = next(r for r in managed if r.protect)
    with pytest.raises(RuntimeError, match="protected"):
        state_delete(managed, protected.urn, target_dependents=True)


def test_nothing_left_in_state_needs_the_aws_cluster_to_be_deleted(
    homelab_run: offline.StackRun, managed: list[Registration], after: list[Registration]
) -> None:
    provider = next(r for r in managed if r.name == teardown.AWS_PROVIDER_NAME).urn
    on_aws = [r.name for r in after if r.provider.startswith(provider + "::")]
    assert on_aws == []
    # A local command that got aws-gpu's outputs (a kubeconfig) runs its delete against AWS.
    reference = next(r.urn for r in homelab_run.registrations if r.type == STACK_REFERENCE)
    with_aws_inputs = {
        r.urn
        for r in managed
        if reference in r.dependencies
        or any(reference in urns for urns in r.property_dependencies.values())
    }
    local_commands = [
        r.name
        for r in after
        if r.type == "command:local:Command"
        and (r.urn in with_aws_inputs or set(r.dependencies) & with_aws_inputs)
    ]
    assert local_commands == []
    liqo_releases = [
        r.name
        for r in after
        if r.type == teardown.RELEASE_TYPE and r.plain_inputs.get("chart") == "liqo"
    ]
    assert liqo_releases == []


def test_only_kubernetes_objects_and_the_peering_leave_state(
    managed: list[Registration], after: list[Registration]
) -> None:
    """A VM, disk, token or certificate dropped from state would outlive the destroy (or be
    re-created by the next up): only objects inside the two clusters and local commands may go."""
    left = {r.urn for r in after}
    dropped = [r for r in managed if r.urn not in left]
    assert any(r.type == "command:local:Command" for r in dropped)
    assert any(r.type.startswith("kubernetes:") for r in dropped)
    unexpected = [
        (r.type, r.name)
        for r in dropped
        if not r.type.startswith(("kubernetes:", "command:local:", "hybridgpu:"))
        and not (r.type == "pulumi:providers:kubernetes" and r.name == teardown.AWS_PROVIDER_NAME)
    ]
    assert unexpected == []
    kept = {r.type.split(":")[0] for r in after if r.custom}
    assert {"proxmoxve", "random", "command"} <= kept


def test_each_state_delete_finds_its_resource_and_the_commands_end_with_destroy(
    managed: list[Registration],
) -> None:
    commands = teardown.plan(managed).commands()
    _replay(managed, commands)  # raises LookupError if an earlier delete took a later target
    assert commands[-2:] == [
        "pulumi state unprotect -s homelab --all --yes",
        "pulumi destroy -s homelab",
    ]


def test_urns_follow_the_stack_name(managed: list[Registration]) -> None:
    commands = teardown.plan(managed, "homelab-2").commands()
    urns = [shlex.split(c)[-1] for c in commands if c.startswith("pulumi state delete")]
    assert urns
    assert all(u.startswith("urn:pulumi:homelab-2::hybridgpu::") for u in urns)
    assert all("-s homelab-2" in c for c in commands)


def test_readme_gives_the_teardown_command() -> None:
    readme = (offline.REPO_ROOT / "README.md").read_text()
    section = readme.split("### Teardown and what is protected", 1)[1].split("\n### ", 1)[0]
    assert "./dev teardown" in section
    assert re.search(r"pulumi state delete .*--target-dependents", section)
