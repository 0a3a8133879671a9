"""Every Kubernetes object either stack declares validates against the Kubernetes API schema of
the pinned k3s minor version (kubernetes-validate, strict: unknown fields fail), and custom
resources against their CRD: MetalLB's from the upstream CRDs at the pinned chart version
(../shared/upstream), Liqo's and k3s's from the fields their sources define. The test walks all
recorded ``kubernetes:*`` registrations, so a new object is covered without touching it."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from stacks.config import ProjectSettings
from tools.offline import StackRun

UPSTREAM = Path(__file__).resolve().parent.parent.parent / "shared" / "upstream"
METALLB_CRDS = UPSTREAM / "charts" / "metallb-0.16.1" / "config" / "crd" / "bases"

NOT_OBJECTS = ("pulumi:providers:kubernetes", "kubernetes:helm.sh/v3:Release")

# The fields of Liqo 1.x's NamespaceOffloading CRD we rely on
# (liqotech/liqo apis/offloading/v1beta1/namespaceoffloading_types.go); the CRD ships with the
# chart, so it is not in the Kubernetes schema kubernetes-validate knows.
NAMESPACE_OFFLOADING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "offloading.liqo.io/v1beta1"},
        "kind": {"const": "NamespaceOffloading"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            # Liqo's webhook only accepts the name "offloading".
            "properties": {"name": {"const": "offloading"}, "namespace": {"type": "string"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "namespaceMappingStrategy": {
                    "enum": ["EnforceSameName", "DefaultName", "SelectedName"]
                },
                "remoteNamespaceName": {"type": "string"},
                "podOffloadingStrategy": {"enum": ["Local", "Remote", "LocalAndRemote"]},
                "clusterSelector": {
                    "type": "object",
                    "required": ["nodeSelectorTerms"],
                    "properties": {"nodeSelectorTerms": {"type": "array", "minItems": 1}},
                },
            },
        },
    },
}
# k3s's HelmChartConfig (helm.cattle.io/v1; k3s-io/helm-controller pkg/apis/helm.cattle.io/v1
# types.go HelmChartConfigSpec; https://docs.k3s.io/helm): the CRD is built into k3s.
HELM_CHART_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "helm.cattle.io/v1"},
        "kind": {"const": "HelmChartConfig"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {"name": {"type": "string"}, "namespace": {"const": "kube-system"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "valuesContent": {"type": "string"},
                "failurePolicy": {"enum": ["abort", "reinstall"]},
            },
        },
    },
}


def strict(schema: Any) -> Any:
    """A CRD's structural schema as JSON schema that rejects fields it does not define (the API
    server would silently prune them)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


@cache
def crd_schemas(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict schema of every CRD version in ``directory``."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"type": "object"}
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


CUSTOM_SCHEMAS = {
    ("offloading.liqo.io/v1beta1", "NamespaceOffloading"): NAMESPACE_OFFLOADING_SCHEMA,
    ("helm.cattle.io/v1", "HelmChartConfig"): HELM_CHART_CONFIG_SCHEMA,
}


def k8s_schema_version() -> str:
    """The Kubernetes minor of the pinned k3s release (v1.33.5+k3s1 -> 1.33.0)."""
    version = ProjectSettings.model_fields["k3s_version"].default
    match = re.match(r"^v(\d+)\.(\d+)\.", version)
    assert match, version
    return f"{match.group(1)}.{match.group(2)}.0"


def _ints(value: Any) -> Any:
    """The mock runtime turns every number into a float; the API schema wants integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def declared_objects(run: StackRun) -> list[tuple[str, dict[str, Any]]]:
    objects = []
    for reg in run.managed():
        if not reg.type.startswith("kubernetes:") or reg.type in NOT_OBJECTS:
            continue
        objects.append((reg.name, _ints(reg.plain_inputs)))
    return objects


def validate(name: str, obj: dict[str, Any]) -> None:
    kind = (obj.get("apiVersion", ""), obj.get("kind", ""))
    custom = CUSTOM_SCHEMAS.get(kind) or crd_schemas(METALLB_CRDS).get(kind)
    if custom is not None:
        jsonschema.validate(obj, custom)
        return
    kubernetes_validate.validate(obj, k8s_schema_version(), strict=True)


def test_every_declared_object_validates(aws_gpu_run: StackRun, homelab_run: StackRun) -> None:
    objects = declared_objects(aws_gpu_run) + declared_objects(homelab_run)
    assert objects, "no Kubernetes objects recorded"
    failures = []
    for name, obj in objects:
        try:
            validate(name, obj)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as err:
            failures.append(f"{name} ({obj.get('kind')}): {err}")
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{name}: no schema for {obj.get('apiVersion')} {obj.get('kind')}")
    assert not failures, "\n".join(failures)


def test_validation_rejects_a_broken_object() -> None:
    """The check can fail: an unknown field and a wrong type are both caught."""
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "one", "selector": {}, "template": {}, "replicaz": 1},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        validate("broken", broken)
    bad_offloading = {
        "apiVersion": "offloading.liqo.io/v1beta1",
        "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading", "namespace": "llm"},
        "spec": {"podOffloadingStrategy": "Elsewhere"},
    }
    with pytest.raises(jsonschema.ValidationError):
        validate("bad", bad_offloading)
    bad_pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "lan", "namespace": "metallb-system"},
        "spec": {"addresses": ["192.168.10.240-192.168.10.249"], "autoassign": True},
    }
    with pytest.raises(jsonschema.ValidationError):
        validate("bad-pool", bad_pool)


def test_schema_version_is_the_k3s_minor() -> None:
    assert k8s_schema_version() == "1.33.0"
