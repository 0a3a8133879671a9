"""Every Kubernetes object a run declares validates: built-in kinds against the Kubernetes API
schema of the pinned k3s minor version (kubernetes-validate, strict: unknown fields fail), custom
resources against the structural schema of their CRD in the chart versions the same run installs
(``../shared/upstream``: types, required fields, enums, patterns; a field the CRD does not know
fails, since the API server would prune it). The test walks all recorded ``kubernetes:*``
registrations of both example stacks and of every valid fixture, so a new object is covered
without touching it."""

from __future__ import annotations

import copy
import functools
import json
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stacks.config import ProjectSettings
from tests import fixture_configs
from tests.upstream_checks import custom_resource_problems
from tests.upstream_data import (
    ChartData,
    chart_data,
    crd_sources,
    declared_releases,
    find_crd,
    kubernetes_objects,
    load_yaml,
)
from tools.offline import StackRun

pytestmark = pytest.mark.upstream

K3S_VERSION = ProjectSettings.model_fields["k3s_version"].default
# kubernetes-validate re-reads and re-parses its schema files (a 2 MB _definitions.json among
# them) on every call; they never change within a run, so read each once.
kubernetes_validate.utils.schema_contents = functools.cache(  # type: ignore[assignment]
    kubernetes_validate.utils.schema_contents
)
RUN_LABELS = ["aws-gpu", "homelab"] + [
    f"fixture {path.stem}" for path in fixture_configs.all_fixtures("valid")
]


def k8s_schema_version() -> str:
    """The Kubernetes minor of the pinned k3s release (v1.33.5+k3s1 -> 1.33.0)."""
    match = re.match(r"^v(\d+)\.(\d+)\.", K3S_VERSION)
    assert match, K3S_VERSION
    return f"{match.group(1)}.{match.group(2)}.0"


def crd_charts(label: str, run: StackRun) -> list[ChartData]:
    """Charts whose CRDs the run's cluster has: those it installs, plus k3s's own."""
    releases, _ = declared_releases(label, run, K3S_VERSION)
    return crd_sources(releases, K3S_VERSION)


_CHECKED: dict[str, list[str]] = {}


def problems_of(obj: dict[str, Any], charts: list[ChartData]) -> list[str]:
    """Why the cluster would reject (or silently prune) ``obj``; empty when it is valid. The
    fixture runs repeat most objects verbatim: each distinct one is validated once."""
    key = json.dumps([obj, sorted(c.label for c in charts)], sort_keys=True)
    if key not in _CHECKED:
        _CHECKED[key] = _validate(obj, charts)
    return _CHECKED[key]


def _validate(obj: dict[str, Any], charts: list[ChartData]) -> list[str]:
    crds = find_crd(charts, str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    if crds:
        return custom_resource_problems(obj, crds)
    try:
        kubernetes_validate.validate(obj, k8s_schema_version(), strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{obj.get('kind')}: {err}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"no schema for {obj.get('apiVersion')} {obj.get('kind')}: not a Kubernetes "
            f"{k8s_schema_version()} kind, and no CRD in the charts this run installs"
        ]
    return []


@pytest.mark.parametrize("label", RUN_LABELS)
def test_every_declared_object_validates(label: str, declared_runs: dict[str, StackRun]) -> None:
    run = declared_runs[label]
    charts = crd_charts(label, run)
    objects = list(kubernetes_objects(run))
    assert objects, "no Kubernetes objects recorded"
    failures = [f"{name}: {p}" for name, obj in objects for p in problems_of(obj, charts)]
    assert not failures, "\n".join(failures)


def test_custom_resources_are_checked_against_their_crd(homelab_run: StackRun) -> None:
    """NamespaceOffloading is validated by Liqo's CRD of the pinned chart, not by hand."""
    charts = crd_charts("homelab", homelab_run)
    (crd,) = find_crd(charts, "offloading.liqo.io/v1beta1", "NamespaceOffloading")
    assert crd.chart == "liqo v1.2.0"
    assert crd.crd == "namespaceoffloadings.offloading.liqo.io"


def _offloading(homelab_run: StackRun) -> dict[str, Any]:
    (obj,) = [
        obj for _, obj in kubernetes_objects(homelab_run) if obj["kind"] == "NamespaceOffloading"
    ]
    return copy.deepcopy(obj)


def test_a_custom_resource_with_a_wrong_enum_fails(homelab_run: StackRun) -> None:
    charts = crd_charts("homelab", homelab_run)
    broken = _offloading(homelab_run)
    broken["spec"]["podOffloadingStrategy"] = "Elsewhere"
    (problem,) = problems_of(broken, charts)
    assert "spec.podOffloadingStrategy: 'Elsewhere' is not one of" in problem
    assert "LocalAndRemote" in problem
    assert "CRD namespaceoffloadings.offloading.liqo.io of liqo v1.2.0" in problem


def test_a_custom_resource_with_a_field_the_crd_lacks_or_a_wrong_type_fails(
    homelab_run: StackRun,
) -> None:
    charts = crd_charts("homelab", homelab_run)
    broken = _offloading(homelab_run)
    broken["spec"]["podOffloadingStrategyy"] = "Remote"
    broken["spec"]["clusterSelector"]["nodeSelectorTerms"] = "all"
    problems = "\n".join(problems_of(broken, charts))
    assert "'podOffloadingStrategyy' was unexpected" in problems
    assert "spec.clusterSelector.nodeSelectorTerms: 'all' is not of type 'array'" in problems


def test_a_custom_resource_no_installed_chart_defines_fails(aws_gpu_run: StackRun) -> None:
    """aws-gpu installs Liqo too, but a kind from a chart it does not install has no CRD there."""
    charts = crd_charts("aws-gpu", aws_gpu_run)
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "x"},
        "spec": {"selfSigned": {}},
    }
    (problem,) = problems_of(issuer, charts)
    assert problem.startswith("no schema for cert-manager.io/v1 ClusterIssuer")


def test_a_broken_builtin_object_fails() -> None:
    """The check can fail: an unknown field and a wrong type are both caught."""
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "one", "selector": {}, "template": {}, "replicaz": 1},
    }
    assert problems_of(broken, [])


def test_schema_version_is_the_k3s_minor() -> None:
    assert k8s_schema_version() == "1.33.0"


def test_the_crd_pyyaml_cannot_read_is_read_and_enforced() -> None:
    """kube-prometheus-stack's AlertmanagerConfig CRD has ``=`` as an enum item, which PyYAML's
    safe_load takes for YAML 1.1's value tag and rejects; helm and kubectl read it as the string
    "=". The tier reads it the same way and enforces the enum (nothing skipped)."""
    chart = chart_data("kube-prometheus-stack", "88.5.3")
    assert chart is not None
    crd_file = chart.path / "charts" / "crds" / "crds" / "crd-alertmanagerconfigs.yaml"
    assert "enum:\n                            - '!='\n                            - =\n" in (
        crd_file.read_text()
    )
    with pytest.raises(yaml.constructor.ConstructorError, match=r"tag:yaml\.org,2002:value"):
        yaml.safe_load("enum:\n- '!='\n- =\n")  # what PyYAML does with that enum
    assert load_yaml("enum:\n- '!='\n- =\n") == {"enum": ["!=", "="]}
    (crd,) = find_crd([chart], "monitoring.coreos.com/v1alpha1", "AlertmanagerConfig")
    config = {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": {"name": "gpu", "namespace": "monitoring"},
        "spec": {
            "inhibitRules": [
                {"sourceMatch": [{"name": "severity", "value": "critical", "matchType": "="}]}
            ]
        },
    }
    assert custom_resource_problems(config, [crd]) == []
    config["spec"]["inhibitRules"][0]["sourceMatch"][0]["matchType"] = "=="
    (problem,) = custom_resource_problems(config, [crd])
    assert "matchType: '==' is not one of ['!=', '=', '=~', '!~']" in problem
