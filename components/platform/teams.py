"""Teams: one namespace per team with a ResourceQuota, a LimitRange and a RoleBinding that gives
the team's users and groups the built-in ``edit`` ClusterRole in that namespace only.

The quota caps what a team can hold at once: GPUs (``requests.nvidia.com/gpu``; extended
resources are quota'd by their ``requests.`` name only, and a container's GPU request always
equals its limit, https://kubernetes.io/docs/concepts/policy/resource-quotas/#resource-quota-for-extended-resources),
CPU and memory requests, memory limits, storage requests and object counts. LoadBalancer and
NodePort Services are 0: MetalLB's LAN addresses and node ports belong to the platform.

A quota on ``requests.cpu``/``requests.memory``/``limits.memory`` makes the API server reject a
pod that leaves them unset (same page, "Compute Resource Quota"), hence the LimitRange: its
``default``/``defaultRequest`` fill them in for containers that say nothing.

``edit`` is one of the user-facing roles every cluster has (read/write of most namespaced
objects, no Roles or RoleBindings, no ResourceQuota/LimitRange writes,
https://kubernetes.io/docs/reference/access-authn-authz/rbac/#user-facing-roles); bound with a
RoleBinding it applies in that one namespace.

:func:`render_gpu_quota` is the GPU-only quota of the namespace offloaded to AWS (declared with
that namespace, by the federation layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi

from components.k3s.pod_security import namespace_labels
from components.kube.labels import GPU_RESOURCE
from components.kube.network_policies import render_isolation
from components.kube.objects import Manifest, declare

TEAM_LABEL = "hybridgpu.io/team"
EDIT_CLUSTER_ROLE = "edit"
QUOTA_NAME = "team-quota"
LIMITS_NAME = "team-defaults"
EDITORS_NAME = "team-editors"
GPU_QUOTA_NAME = "gpu-quota"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class ContainerDefaults:
    """What a container that sets no resources gets (LimitRange ``defaultRequest``/``default``)."""

    request_cpu: str = "250m"
    request_memory: str = "512Mi"
    limit_cpu: str = "2"
    limit_memory: str = "2Gi"


@dataclass(frozen=True)
class Team:
    name: str
    namespace: str
    users: Sequence[str]
    groups: Sequence[str]
    gpus: int
    cpu: str
    memory_gib: int
    storage_gib: int
    pods: int = 50
    persistent_volume_claims: int = 20
    services: int = 20
    config_maps: int = 50
    secrets: int = 50
    defaults: ContainerDefaults = field(default_factory=ContainerDefaults)

    def __post_init__(self) -> None:
        if not self.users and not self.groups:
            raise ValueError(f"team {self.name}: no users or groups; nobody could use it")


def _meta(name: str, team: Team) -> dict[str, object]:
    return {"name": name, "namespace": team.namespace, "labels": {TEAM_LABEL: team.name}}


def render_namespace(team: Team) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        # Team workloads are the users' own: Pod Security "restricted" (the cluster default,
        # stated on the namespace as for every namespace the program declares).
        "metadata": {
            "name": team.namespace,
            "labels": {TEAM_LABEL: team.name, **namespace_labels("restricted")},
        },
    }


def render_quota(team: Team) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(QUOTA_NAME, team),
        "spec": {
            "hard": {
                f"requests.{GPU_RESOURCE}": str(team.gpus),
                "requests.cpu": team.cpu,
                "requests.memory": f"{team.memory_gib}Gi",
                "limits.memory": f"{team.memory_gib}Gi",
                "requests.storage": f"{team.storage_gib}Gi",
                "pods": str(team.pods),
                "persistentvolumeclaims": str(team.persistent_volume_claims),
                "services": str(team.services),
                "services.loadbalancers": "0",
                "services.nodeports": "0",
                "configmaps": str(team.config_maps),
                "secrets": str(team.secrets),
            }
        },
    }


def render_limit_range(team: Team) -> Manifest:
    d = team.defaults
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta(LIMITS_NAME, team),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {"cpu": d.request_cpu, "memory": d.request_memory},
                    "default": {"cpu": d.limit_cpu, "memory": d.limit_memory},
                }
            ]
        },
    }


def render_role_binding(team: Team) -> Manifest:
    subjects = [{"kind": "User", "apiGroup": RBAC_GROUP, "name": u} for u in team.users] + [
        {"kind": "Group", "apiGroup": RBAC_GROUP, "name": g} for g in team.groups
    ]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(EDITORS_NAME, team),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": EDIT_CLUSTER_ROLE},
        "subjects": subjects,
    }


def render_team(team: Team) -> list[Manifest]:
    """The namespace first: every other object lives in it."""
    return [
        render_namespace(team),
        render_quota(team),
        render_limit_range(team),
        render_role_binding(team),
        # Ingress only from the team's own pods, as in every app namespace (a team that serves
        # through the ingress adds its own NetworkPolicy: `edit` may).
        *render_isolation(team.namespace),
    ]


def render_gpu_quota(namespace: str, gpus: int) -> Manifest:
    """GPU-only quota: pods there need not state CPU or memory (a quota enforces only the
    resources it lists)."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": GPU_QUOTA_NAME, "namespace": namespace},
        "spec": {"hard": {f"requests.{GPU_RESOURCE}": str(gpus)}},
    }


@dataclass(frozen=True)
class TeamsArgs:
    teams: Sequence[Team]


class Teams(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: TeamsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:Teams", name, None, opts)
        self.namespaces: dict[str, pulumi.Resource] = {}
        for team in args.teams:
            namespace, *objects = render_team(team)
            ns = declare(
                f"{name}-{team.name}-namespace", namespace, pulumi.ResourceOptions(parent=self)
            )
            self.namespaces[team.name] = ns
            for manifest in objects:
                # One object per kind, except the NetworkPolicies: those by their own name.
                role = manifest["kind"].lower()
                if manifest["kind"] == "NetworkPolicy":
                    role = manifest["metadata"]["name"]
                declare(
                    f"{name}-{team.name}-{role}",
                    manifest,
                    pulumi.ResourceOptions(parent=self, depends_on=[ns]),
                )
        self.register_outputs({"namespaces": {t.name: t.namespace for t in args.teams}})
