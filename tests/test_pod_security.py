"""Pod Security on both clusters: the API servers' admission configuration as each stack ships it
(``restricted`` by default, every exemption with a reason), the level of every namespace the
program declares, and the pods the program declares against the level their namespace enforces
(tests/pod_security.py: the Pod Security Standards' checks)."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import yaml

from components.k3s.pod_security import (
    ENFORCE_LABEL,
    PSA_CONFIG_PATH,
    REASON_ANNOTATION,
    apiserver_arg,
    render_admission_config,
    with_level,
)
from stacks import pod_security as stack_psa
from tests import pod_security
from tests.upstream_data import HELM_RELEASE_TYPES, UPSTREAM, kubernetes_objects, plain_object
from tools.offline import StackRun

CONTROL_FILES = "/hybridgpu/aws-gpu/control-node/files/"
LEVELS = ("privileged", "baseline", "restricted")
# Namespaces a chart creates whose pods meet "restricted" with the chart's defaults, with the
# values that show it (../shared/upstream: charts/<chart>/values.yaml).
COMPLIANT_CHART_NAMESPACES = {
    "cert-manager": ("cert-manager-v1.19.1", ("runAsNonRoot: true", "type: RuntimeDefault")),
}


def _ssm(run: StackRun, name: str) -> str:
    (reg,) = [
        r
        for r in run.by_type("aws:ssm/parameter:Parameter")
        if r.plain_inputs["name"] == CONTROL_FILES + name
    ]
    return str(reg.plain_inputs["value"])


def _b64_param(script: str, name: str) -> str:
    match = re.search(rf"^{name}=(\S*)$", script, re.M)
    assert match, name
    return base64.b64decode(match.group(1).strip("'")).decode()


def shipped_configs(aws_gpu_run: StackRun, homelab_run: StackRun) -> dict[str, tuple[Any, Any]]:
    """(k3s config.yaml, admission config) of every server of both stacks, by node."""
    configs = {
        "aws-control-node": (
            yaml.safe_load(_ssm(aws_gpu_run, "k3s/config.yaml")),
            yaml.safe_load(_ssm(aws_gpu_run, "k3s/psa.yaml")),
        )
    }
    for reg in homelab_run.by_type("command:remote:Command"):
        script = str(reg.plain_inputs.get("create", ""))
        if "\nPSA_B64=" not in script:  # not a k3s install
            continue
        k3s = yaml.safe_load(_b64_param(script, "CONFIG_B64"))
        if "cluster-cidr" not in k3s:  # an agent: no API server
            assert re.search(r"^PSA_B64=''$", script, re.M), reg.name
            continue
        configs[reg.name] = (k3s, yaml.safe_load(_b64_param(script, "PSA_B64")))
    return configs


def check_admission_config(config: dict[str, Any]) -> list[str]:
    """The AdmissionConfiguration as the API server reads it
    (https://kubernetes.io/docs/tasks/configure-pod-container/enforce-standards-admission-controller/)."""
    assert config["apiVersion"] == "apiserver.config.k8s.io/v1"
    assert config["kind"] == "AdmissionConfiguration"
    (plugin,) = config["plugins"]
    assert plugin["name"] == "PodSecurity"
    psa = plugin["configuration"]
    assert psa["apiVersion"] == "pod-security.admission.config.k8s.io/v1"
    assert psa["kind"] == "PodSecurityConfiguration"
    assert set(psa) == {"apiVersion", "kind", "defaults", "exemptions"}
    for mode in ("enforce", "audit", "warn"):
        assert psa["defaults"][mode] == "restricted", mode
        assert psa["defaults"][f"{mode}-version"] == "latest"
    exemptions = psa["exemptions"]
    assert set(exemptions) == {"usernames", "runtimeClasses", "namespaces"}
    assert exemptions["usernames"] == exemptions["runtimeClasses"] == []
    return list(exemptions["namespaces"])


def test_every_api_server_enforces_restricted_with_named_exemptions(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    configs = shipped_configs(aws_gpu_run, homelab_run)
    assert len(configs) == 4, sorted(configs)  # the AWS server and the three homelab ones
    for node, (k3s, admission) in configs.items():
        assert apiserver_arg() in k3s["kube-apiserver-arg"], node
        assert apiserver_arg() == f"admission-control-config-file={PSA_CONFIG_PATH}"
        exempt = check_admission_config(admission)
        expected = stack_psa.aws_exemptions() if node == "aws-control-node" else None
        if expected is not None:
            assert exempt == sorted(expected)
        assert "kube-system" in exempt
        assert not {"llm", "open-webui", "gpu-waker", "default"} & set(exempt), node


def test_an_exemption_without_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="'x' needs a reason"):
        render_admission_config({"x": " "}, "here")
    with pytest.raises(ValueError, match="'y' at 'baseline' needs a reason"):
        with_level({"metadata": {"name": "y"}}, "baseline")


def namespaces(run: StackRun) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for _, obj in kubernetes_objects(run):
        if obj["kind"] == "Namespace":
            name = obj["metadata"]["name"]
            # A patch (the Liqo-created namespace on AWS) merges with the namespace it patches.
            found.setdefault(name, {"labels": {}, "annotations": {}})
            found[name]["labels"] |= obj["metadata"].get("labels", {})
            found[name]["annotations"] |= obj["metadata"].get("annotations", {})
    return found


def pod_specs(run: StackRun) -> list[tuple[str, str, dict[str, Any]]]:
    specs = []
    for name, obj in kubernetes_objects(run):
        kind = obj["kind"]
        if kind in ("Deployment", "Job", "DaemonSet", "StatefulSet"):
            specs.append((name, obj["metadata"]["namespace"], obj["spec"]["template"]["spec"]))
        elif kind == "Pod":
            specs.append((name, obj["metadata"]["namespace"], obj["spec"]))
    return specs


@pytest.mark.parametrize("stack", ["aws-gpu", "homelab"])
def test_declared_namespaces_carry_a_level_and_their_pods_meet_it(
    stack: str, aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    run = aws_gpu_run if stack == "aws-gpu" else homelab_run
    declared = namespaces(run)
    assert declared
    for name, meta in declared.items():
        level = meta["labels"].get(ENFORCE_LABEL)
        assert level in LEVELS, f"namespace {name} has no Pod Security level"
        if level != "restricted":
            assert meta["annotations"].get(REASON_ANNOTATION), f"{name}: {level} without reason"
        assert meta["labels"]["pod-security.kubernetes.io/warn"] == "restricted"
    exempt = set(
        stack_psa.aws_exemptions() if stack == "aws-gpu" else _homelab_exemptions(homelab_run)
    )
    for obj_name, namespace, spec in pod_specs(run):
        if namespace in exempt:
            continue
        level = declared.get(namespace, {"labels": {}})["labels"].get(ENFORCE_LABEL, "restricted")
        problems = pod_security.problems(level, spec)
        assert not problems, f"{obj_name} in {namespace} ({level}): {problems}"


def _homelab_exemptions(homelab_run: StackRun) -> list[str]:
    """The exemptions the homelab's servers get (the same on each)."""
    shipped = set()
    for reg in homelab_run.by_type("command:remote:Command"):
        script = str(reg.plain_inputs.get("create", ""))
        if "\nPSA_B64=" in script and not re.search(r"^PSA_B64=''$", script, re.M):
            config = yaml.safe_load(_b64_param(script, "PSA_B64"))
            shipped.add(tuple(check_admission_config(config)))
    (exemptions,) = shipped
    return list(exemptions)


RUNTIME_POD_NAMESPACES = {
    # Pods the program does not declare but a controller starts there: local-path-provisioner's
    # helper pods get a hostPath volume of the node's scratch directory added at run time
    # (rancher/local-path-provisioner provisioner.go, createHelperPod).
    "fast-scratch": "local-path-provisioner helper pods (hostPath)",
}


def test_a_namespace_below_restricted_still_needs_it(homelab_run: StackRun) -> None:
    """A lower level is kept only while one of the namespace's pods would fail "restricted": once
    the pods comply (their hardening lands), this fails until the level is raised."""
    declared = namespaces(homelab_run)
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for _, namespace, spec in pod_specs(homelab_run):
        by_namespace.setdefault(namespace, []).append(spec)
    for name, meta in declared.items():
        if meta["labels"][ENFORCE_LABEL] == "restricted" or name not in by_namespace:
            continue
        if name in RUNTIME_POD_NAMESPACES:
            continue
        assert any(pod_security.restricted_problems(s) for s in by_namespace[name]), (
            f"every pod in {name} meets 'restricted': raise its level"
        )


@pytest.mark.parametrize("stack", ["aws-gpu", "homelab"])
def test_every_release_namespace_is_exempt_declared_or_compliant(
    stack: str, aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    """Helm creates a release's namespace without labels, so the cluster default (restricted)
    applies there: its chart's pods must meet it, or the namespace is exempt with a reason."""
    run = aws_gpu_run if stack == "aws-gpu" else homelab_run
    exempt = set(
        stack_psa.aws_exemptions() if stack == "aws-gpu" else _homelab_exemptions(homelab_run)
    )
    declared = set(namespaces(run))
    releases = [plain_object(r) for r in run.managed() if r.type in HELM_RELEASE_TYPES]
    assert releases
    for release in releases:
        namespace = release["namespace"]
        if namespace in exempt or namespace in declared:
            continue
        assert namespace in COMPLIANT_CHART_NAMESPACES, (
            f"release {release['name']} installs into {namespace}, which is neither exempt "
            "(stacks/pod_security.py) nor known to meet 'restricted'"
        )


def test_charts_taken_as_compliant_set_restricted_contexts() -> None:
    for chart, markers in COMPLIANT_CHART_NAMESPACES.values():
        values = (UPSTREAM / "charts" / chart / "values.yaml").read_text()
        for marker in markers:
            assert marker in values, (chart, marker)
