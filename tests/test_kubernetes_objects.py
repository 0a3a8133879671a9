"""Every Kubernetes object either stack declares validates against the Kubernetes API schema of
the pinned k3s minor version (kubernetes-validate, strict: unknown fields fail), and the Liqo
custom resources against the fields their CRD defines. The test walks all recorded
``kubernetes:*`` registrations, so a new object is covered without touching it."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from stacks.config import ProjectSettings
from tools.offline import StackRun

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
CUSTOM_SCHEMAS = {
    ("offloading.liqo.io/v1beta1", "NamespaceOffloading"): NAMESPACE_OFFLOADING_SCHEMA
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
    custom = CUSTOM_SCHEMAS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if custom is not None:
        jsonschema.validate(obj, custom)
        return
    kubernetes_validate.validate(obj, k8s_schema_version(), strict=True)


@pytest.mark.parametrize("stack", ["aws-gpu", "homelab"])
def test_every_declared_object_validates(
    stack: str, aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    run = aws_gpu_run if stack == "aws-gpu" else homelab_run
    objects = declared_objects(run)
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


def test_schema_version_is_the_k3s_minor() -> None:
    assert k8s_schema_version() == "1.33.0"
