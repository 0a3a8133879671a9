"""Teams (issue #22): each configured team gets its Namespace, ResourceQuota, LimitRange and a
RoleBinding to ``edit`` in that namespace only; the offloaded namespace's GPU quota is the
virtual node's GPUs. Bad team configs are invalid fixtures (tests/fixtures/invalid/homelab-team*);
the objects are validated with all others (tests/test_kubernetes_objects.py)."""

from __future__ import annotations

from typing import Any

import pytest

from components.platform.teams import Team, render_gpu_quota, render_team
from stacks.config import ConfigError, parse_homelab, parse_project
from tools import offline
from tools.offline import StackRun

TEAM_KINDS = {"Namespace", "ResourceQuota", "LimitRange", "RoleBinding", "NetworkPolicy"}


def _example_teams() -> list[dict[str, Any]]:
    return offline.stack_config_file("homelab")["hybridgpu:homelab"]["teams"]


def _objects(run: StackRun) -> list[dict[str, Any]]:
    return [
        reg.plain_inputs | {"kind": reg.type.rsplit(":", 1)[1]}
        for reg in run.managed()
        if reg.type.startswith("kubernetes:") and reg.custom
    ]


def _in_namespace(run: StackRun, namespace: str) -> dict[str, dict[str, Any]]:
    return {
        obj["kind"]: obj
        for obj in _objects(run)
        if obj.get("metadata", {}).get("namespace") == namespace
        or (obj["kind"] == "Namespace" and obj["metadata"]["name"] == namespace)
    }


def test_every_team_gets_its_objects_in_its_namespace(homelab_run: StackRun) -> None:
    teams = _example_teams()
    assert len(teams) == 2
    for team in teams:
        found = _in_namespace(homelab_run, team["namespace"])
        assert set(found) == TEAM_KINDS, team["name"]
        hard = found["ResourceQuota"]["spec"]["hard"]
        assert hard["requests.nvidia.com/gpu"] == str(team["gpus"])
        assert hard["requests.cpu"] == team["cpu"]
        assert hard["requests.memory"] == f"{team['memoryGiB']}Gi"
        assert hard["requests.storage"] == f"{team['storageGiB']}Gi"
        assert hard["services.loadbalancers"] == "0"
        assert {"pods", "persistentvolumeclaims", "configmaps", "secrets"} <= set(hard)
        defaults = found["LimitRange"]["spec"]["limits"][0]
        assert set(defaults["default"]) == set(defaults["defaultRequest"]) == {"cpu", "memory"}
        binding = found["RoleBinding"]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "edit",
        }
        names = {(s["kind"], s["name"]) for s in binding["subjects"]}
        assert names == {("User", u) for u in team.get("users", [])} | {
            ("Group", g) for g in team.get("groups", [])
        }


def test_team_members_get_no_cluster_wide_rights(homelab_run: StackRun) -> None:
    """``edit`` reaches them only through a namespaced RoleBinding, never a ClusterRoleBinding."""
    members = {m for t in _example_teams() for m in (*t.get("users", []), *t.get("groups", []))}
    for obj in _objects(homelab_run):
        if obj["kind"] == "ClusterRoleBinding":
            assert not members & {s["name"] for s in obj.get("subjects", [])}, obj["metadata"]


def test_the_offloaded_namespace_quota_is_the_virtual_nodes_gpus(homelab_run: StackRun) -> None:
    homelab = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    gpus = homelab["federation"]["offload"]["gpus"]
    namespace = parse_project({}).llm_namespace
    quotas = [
        o
        for o in _objects(homelab_run)
        if o["kind"] == "ResourceQuota" and o["metadata"]["namespace"] == namespace
    ]
    assert [q["spec"]["hard"] for q in quotas] == [{"requests.nvidia.com/gpu": str(gpus)}]
    # The Ollama pod itself asks for one GPU: it must fit its own quota.
    deployment = homelab_run.one("kubernetes:apps/v1:Deployment", "ollama-deployment")
    (container,) = [
        c
        for c in deployment.plain_inputs["spec"]["template"]["spec"]["containers"]
        if c["name"] == "ollama"
    ]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) <= gpus


def test_render_team_rejects_a_team_without_members() -> None:
    with pytest.raises(ValueError, match="no users or groups"):
        Team("x", "x", (), (), 0, "1", 1, 1)


def test_render_is_namespace_first_and_labelled() -> None:
    team = Team("ml", "team-ml", ("a",), ("g",), 2, "4", 8, 50)
    manifests = render_team(team)
    assert [m["kind"] for m in manifests] == [
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "RoleBinding",
        "NetworkPolicy",
        "NetworkPolicy",
    ]
    assert all(m["metadata"]["labels"]["hybridgpu.io/team"] == "ml" for m in manifests[:4])
    assert manifests[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {m["metadata"]["name"] for m in manifests[4:]} == {
        "default-deny-ingress",
        "allow-same-namespace",
    }
    assert render_gpu_quota("llm", 1)["spec"]["hard"] == {"requests.nvidia.com/gpu": "1"}


def test_teams_config_checks_name_the_key() -> None:
    project = parse_project({})
    raw = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    teams = raw["teams"]
    for change, where, text in [
        ({"users": [], "groups": []}, "teams[0]", "at least one user or group"),
        ({"namespace": "kube-system"}, "teams[0].namespace", "system or platform namespace"),
        ({"users": ["system:admin"]}, "teams[0].users", "'system:' name"),
        ({"gpus": -1}, "teams[0].gpus", "greater than or equal to 0"),
    ]:
        bad = {**raw, "teams": [{**teams[0], **change}, teams[1]]}
        with pytest.raises(ConfigError) as caught:
            parse_homelab(project, bad)
        assert f"hybridgpu:homelab.{where}" in str(caught.value), change
        assert text in str(caught.value), change
