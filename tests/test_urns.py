"""Protected state and stable URNs: what cannot be recreated without loss is protected, and its URN
is checked in, so a refactor that moves or renames it fails here unless it carries an alias."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

from tools import urn_snapshot
from tools.mocks import Registration
from tools.offline import StackRun

MUST_BE_PROTECTED = {
    "aws-gpu": {
        "k3s-token",  # a new token locks k3s out of its own datastore (k3s-io/k3s#4640)
        "k3s-agent-token",
        "mesh-ca-key-seed",  # a new CA re-keys the whole mesh at once
        "models-bucket",  # gigabytes of models uploaded by hand
        "control-node-eip",  # in every node's Nebula static_host_map
        "control-node-instance",  # the cluster datastore
    },
}


def _runs(aws_gpu_run: StackRun, homelab_run: StackRun) -> dict[str, list]:
    return {"aws-gpu": aws_gpu_run.registrations, "homelab": homelab_run.registrations}


def test_what_cannot_be_recreated_is_protected(aws_gpu_run: StackRun) -> None:
    protected = {r.name for r in aws_gpu_run.registrations if r.protect}
    assert MUST_BE_PROTECTED["aws-gpu"] <= protected


def test_protected_urns_match_the_checked_in_snapshot(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    snapshot = json.loads(urn_snapshot.SNAPSHOT.read_text())
    assert urn_snapshot.problems(snapshot, _runs(aws_gpu_run, homelab_run)) == [], (
        "update with `python -m tools.urn_snapshot --write` only together with an alias"
    )


def test_a_moved_protected_resource_fails_unless_aliased(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    snapshot = json.loads(urn_snapshot.SNAPSHOT.read_text())
    runs = _runs(aws_gpu_run, homelab_run)
    token = next(r for r in runs["aws-gpu"] if r.name == "k3s-token")
    moved_urn = token.urn.replace("::hybridgpu::", "::hybridgpu::hybridgpu:k3s:K3sCluster$", 1)
    assert moved_urn != token.urn
    moved = dataclasses.replace(token, urn=moved_urn)
    others = [r for r in runs["aws-gpu"] if r is not token]
    found = urn_snapshot.problems(snapshot, {**runs, "aws-gpu": [*others, moved]})
    assert any("k3s-token is gone without an alias" in p for p in found), found
    aliased = dataclasses.replace(moved, aliases=(token.urn,))
    found = urn_snapshot.problems(snapshot, {**runs, "aws-gpu": [*others, aliased]})
    assert [p for p in found if "gone without an alias" in p] == []
    # ... and the new URN, protected, must then be recorded in the snapshot too.
    assert any("is protected but not in" in p for p in found)


def test_urns_are_formed_as_the_engine_forms_them(homelab_run: StackRun) -> None:
    """The snapshot is only worth something if its URNs are the ones a state file holds: the
    parent's whole type chain, the root stack left out (pulumi/pulumi
    pkg/resource/deploy/deployment.go@v3.259.0, generateURN)."""
    by_urn = homelab_run.by_urn()
    nested = 0
    for reg in homelab_run.registrations:
        qualified_type = reg.urn.split("::")[2]
        assert not qualified_type.startswith("pulumi:pulumi:Stack$"), reg.urn
        parent = by_urn.get(reg.parent)
        if parent is None:
            assert qualified_type == reg.type, reg.urn
            continue
        assert qualified_type == f"{parent.urn.split('::')[2]}${reg.type}", reg.urn
        nested += parent.parent in by_urn
    assert nested > 0, "no grandchild checked"


def duplicate_urns(registrations: list[Registration]) -> list[str]:
    """URNs registered twice in one run. The engine refuses the second ("Duplicate resource URN
    '%v'; try giving it a unique name", pulumi/pulumi sdk/go/common/diag/errors.go@v3.259.0),
    so the whole `up` fails; the mocks would accept it."""
    counts = Counter(r.urn for r in registrations if not r.read)
    return sorted(urn for urn, count in counts.items() if count > 1)


def test_no_run_registers_a_urn_twice(
    aws_gpu_run: StackRun, homelab_run: StackRun, valid_fixture_runs: dict[str, StackRun]
) -> None:
    for name, run in {"aws-gpu": aws_gpu_run, "homelab": homelab_run, **valid_fixture_runs}.items():
        assert duplicate_urns(run.registrations) == [], name


def test_a_name_used_twice_is_found(homelab_run: StackRun) -> None:
    managed = next(r for r in reversed(homelab_run.registrations) if not r.read)
    twice = [*homelab_run.registrations, managed]
    assert duplicate_urns(twice) == [managed.urn]
