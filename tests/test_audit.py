"""API audit logging on both k3s clusters (issue #22): the policy is a well-formed audit.k8s.io/v1
Policy, never logs Secrets (or other credentials) above Metadata, logs RBAC and workload changes
with their bodies, and is on every server of both stacks with the kube-apiserver arguments that
enable it and bound the log."""

from __future__ import annotations

import base64
import binascii
import gzip
from typing import Any

import pytest
import yaml

from components.k3s.audit import (
    AUDIT_LOG_PATH,
    AUDIT_POLICY_PATH,
    audit_apiserver_args,
    render_audit_policy,
)
from components.k3s.scripts import template
from tests.k3s_configs import homelab_installs
from tools import offline
from tools.offline import StackRun

# audit.k8s.io/v1 (kubernetes/kubernetes staging/src/k8s.io/apiserver/pkg/apis/audit/v1/types.go
# and validation/validation.go @v1.33.0): the fields, levels and stages the API server accepts.
POLICY_FIELDS = {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
RULE_FIELDS = {
    "level",
    "users",
    "userGroups",
    "verbs",
    "resources",
    "namespaces",
    "nonResourceURLs",
    "omitStages",
    "omitManagedFields",
}
GROUP_RESOURCE_FIELDS = {"group", "resources", "resourceNames"}
LEVELS = ["None", "Metadata", "Request", "RequestResponse"]
STAGES = {"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
WRITE_VERBS = ["create", "update", "patch", "delete", "deletecollection"]

CREDENTIALS = [
    ("", "secrets"),
    ("", "configmaps"),
    ("", "serviceaccounts/token"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
]


def policy_problems(policy: Any) -> list[str]:
    """What the API server's validation would reject in ``policy`` (structure and values)."""
    if not isinstance(policy, dict):
        return ["not a mapping"]
    problems = [f"unknown field {f}" for f in sorted(set(policy) - POLICY_FIELDS)]
    if policy.get("apiVersion") != "audit.k8s.io/v1" or policy.get("kind") != "Policy":
        problems.append("not an audit.k8s.io/v1 Policy")
    problems += [f"omitStages: {s}" for s in policy.get("omitStages", []) if s not in STAGES]
    rules = policy.get("rules")
    if not isinstance(rules, list) or not rules:
        return [*problems, "rules: must be a non-empty list"]
    for i, rule in enumerate(rules):
        problems += rule_problems(f"rules[{i}]", rule)
    return problems


def rule_problems(where: str, rule: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    problems += [f"{where}: unknown field {f}" for f in sorted(set(rule) - RULE_FIELDS)]
    if rule.get("level") not in LEVELS:
        problems.append(f"{where}.level: {rule.get('level')!r}")
    if rule.get("resources") and rule.get("nonResourceURLs"):
        problems.append(f"{where}: resources and nonResourceURLs together")
    for url in rule.get("nonResourceURLs", []):
        if not url.startswith("/") or "*" in url[:-1]:
            problems.append(f"{where}.nonResourceURLs: {url!r}")
    for j, group in enumerate(rule.get("resources", [])):
        unknown = sorted(set(group) - GROUP_RESOURCE_FIELDS)
        problems += [f"{where}.resources[{j}]: unknown field {f}" for f in unknown]
        if group.get("resourceNames") and not group.get("resources"):
            problems.append(f"{where}.resources[{j}]: resourceNames without resources")
        for field in ("resources", "resourceNames"):
            if not all(isinstance(v, str) for v in group.get(field, [])):
                problems.append(f"{where}.resources[{j}].{field}: strings only")
    for field in ("users", "userGroups", "verbs", "namespaces", "omitStages"):
        if not isinstance(rule.get(field, []), list):
            problems.append(f"{where}.{field}: must be a list")
    problems += [f"{where}.omitStages: {s}" for s in rule.get("omitStages", []) if s not in STAGES]
    return problems


def _resource_matches(pattern: str, resource: str) -> bool:
    """GroupResources.resources matching (apiserver pkg/audit/policy/checker.go)."""
    base, _, sub = resource.partition("/")
    if pattern in ("*", resource):
        return True
    return bool(sub and pattern in (f"{base}/*", f"*/{sub}"))


def level_of(policy: dict[str, Any], verb: str, group: str, resource: str) -> str:
    """The level of a resource request: the first matching rule's (default None)."""
    for rule in policy["rules"]:
        if rule.get("verbs") and verb not in rule["verbs"]:
            continue
        if rule.get("nonResourceURLs"):
            continue
        groups = rule.get("resources")
        if groups and not any(
            g.get("group", "") == group
            and (
                not g.get("resources")
                or any(_resource_matches(p, resource) for p in g["resources"])
            )
            for g in groups
        ):
            continue
        return rule["level"]
    return "None"


def at_most(level: str, limit: str) -> bool:
    return LEVELS.index(level) <= LEVELS.index(limit)


POLICY = yaml.safe_load(render_audit_policy())


def test_the_policy_is_a_valid_audit_v1_policy() -> None:
    assert policy_problems(POLICY) == []
    # The check can fail: a wrong level, an unknown field, both matchers in one rule.
    broken = {**POLICY, "rules": [{"level": "Everything", "resource": []}]}
    assert len(policy_problems(broken)) == 2
    mixed = {"level": "Metadata", "resources": [{"group": ""}], "nonResourceURLs": ["/x"]}
    assert policy_problems({**POLICY, "rules": [mixed]}) == [
        "rules[0]: resources and nonResourceURLs together"
    ]


@pytest.mark.parametrize(("group", "resource"), CREDENTIALS)
def test_credentials_are_never_logged_above_metadata(group: str, resource: str) -> None:
    for verb in VERBS:
        level = level_of(POLICY, verb, group, resource)
        assert at_most(level, "Metadata"), f"{verb} {group}/{resource} logged at {level}"


def test_the_secret_check_can_fail() -> None:
    """A body-logging rule placed before the credentials rule would leak Secret values."""
    leaky = {**POLICY, "rules": [{"level": "RequestResponse"}, *POLICY["rules"]]}
    assert level_of(leaky, "create", "", "secrets") == "RequestResponse"


@pytest.mark.parametrize("verb", WRITE_VERBS)
def test_rbac_and_workload_changes_are_logged_with_their_bodies(verb: str) -> None:
    for group, resource in [
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("rbac.authorization.k8s.io", "roles"),
    ]:
        assert level_of(POLICY, verb, group, resource) == "RequestResponse"
    for group, resource in [
        ("", "pods"),
        ("apps", "deployments"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("", "namespaces"),
        ("", "resourcequotas"),
        ("networking.k8s.io", "networkpolicies"),
    ]:
        assert level_of(POLICY, verb, group, resource) == "Request", (group, resource)


def test_reads_and_everything_else_are_metadata() -> None:
    assert level_of(POLICY, "get", "apps", "deployments") == "Metadata"
    assert level_of(POLICY, "list", "rbac.authorization.k8s.io", "roles") == "Metadata"
    assert level_of(POLICY, "create", "", "pods/exec") == "Metadata"
    assert level_of(POLICY, "create", "example.com", "widgets") == "Metadata"
    assert POLICY["omitStages"] == ["RequestReceived"]


def _apiserver_args(config: dict[str, Any]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in config["kube-apiserver-arg"])


def _check_args(config: dict[str, Any]) -> None:
    args = _apiserver_args(config)
    assert args["audit-policy-file"] == AUDIT_POLICY_PATH
    assert args["audit-log-path"] == AUDIT_LOG_PATH
    assert {args[k] for k in ("audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize")} == {
        "30",
        "10",
        "100",
    }


def test_every_homelab_server_gets_the_policy_and_the_arguments(homelab_run: StackRun) -> None:
    homelab = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    servers = {vm["name"] for vm in homelab["controlPlanes"]}
    seen = set()
    for install in homelab_installs(homelab_run):
        node, params, config = install.node, install.parameters, install.config
        if node in servers:
            _check_args(config)
            assert base64.b64decode(params["AUDIT_POLICY_B64"]).decode() == render_audit_policy()
            seen.add(node)
        else:  # agents run no API server
            assert "kube-apiserver-arg" not in config
            assert params["AUDIT_POLICY_B64"] == ""
    assert seen == servers
    # install.sh writes the policy where the argument points.
    assert f"readonly audit_policy_path={AUDIT_POLICY_PATH}\n" in template("install.sh")


def _parameter(run: StackRun, name: str) -> str:
    (found,) = [
        r for r in run.by_type("aws:ssm/parameter:Parameter") if r.plain_inputs["name"] == name
    ]
    value = found.plain_inputs["value"]
    try:
        return gzip.decompress(base64.b64decode(value, validate=True)).decode()
    except (binascii.Error, gzip.BadGzipFile):
        return value


def test_the_aws_server_gets_the_policy_and_the_arguments(aws_gpu_run: StackRun) -> None:
    files = "/hybridgpu/aws-gpu/control-node/files"
    _check_args(yaml.safe_load(_parameter(aws_gpu_run, f"{files}/k3s/config.yaml")))
    assert _parameter(aws_gpu_run, f"{files}/k3s/audit-policy.yaml") == render_audit_policy()
    worker = yaml.safe_load(
        _parameter(aws_gpu_run, "/hybridgpu/aws-gpu/gpu-worker/files/k3s/config.yaml")
    )
    assert "kube-apiserver-arg" not in worker


def test_the_arguments_are_separate_list_entries() -> None:
    assert [a.split("=")[0] for a in audit_apiserver_args()] == [
        "audit-policy-file",
        "audit-log-path",
        "audit-log-maxage",
        "audit-log-maxbackup",
        "audit-log-maxsize",
    ]
