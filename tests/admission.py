"""Offline ValidatingAdmissionPolicy evaluation with a real CEL implementation (cel-python,
module ``celpy``), the way the API server applies a policy
(https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/):

1. the request must match ``spec.matchConstraints``: a resource rule (group, version, resource,
   operation) and the namespace selector (on the namespace's labels);
2. ``spec.matchConditions`` (CEL, all true) decide whether the policy applies;
3. ``spec.variables`` are evaluated in order, each visible to the later ones as
   ``variables.<name>``;
4. every ``spec.validations[].expression`` must be true; a false one rejects with its message,
   an evaluation error rejects too under ``failurePolicy: Fail``.

Not emulated: the API server's static type check of the expressions against the OpenAPI schema
(it reports problems in the policy's status as warnings), the cost limits, and the Kubernetes
CEL libraries beyond standard CEL (the policies here use none)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

# Kind -> (group, version, resource) of what the tests send.
RESOURCES: Mapping[str, tuple[str, str, str]] = {
    "Pod": ("", "v1", "pods"),
    "ShadowPod": ("offloading.liqo.io", "v1beta1", "shadowpods"),
    "ResourceSlice": ("authentication.liqo.io", "v1beta1", "resourceslices"),
}

_ENV = celpy.Environment()


@dataclass(frozen=True)
class Request:
    object: Mapping[str, Any]
    namespace_labels: Mapping[str, str]
    operation: str = "CREATE"
    subresource: str = ""


@dataclass(frozen=True)
class Verdict:
    matched: bool
    rejections: tuple[str, ...] = ()

    @property
    def admitted(self) -> bool:
        return not self.rejections


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
        }[op]
        if not ok:
            return False
    return True


def _rule_matches(rules: list[dict[str, Any]], request: Request) -> bool:
    group, version, resource = RESOURCES[request.object["kind"]]
    if request.subresource:
        resource = f"{resource}/{request.subresource}"
    return any(
        group in rule["apiGroups"]
        and version in rule["apiVersions"]
        and resource in rule["resources"]
        and (request.operation in rule["operations"] or "*" in rule["operations"])
        for rule in rules
    )


def _evaluate(expression: str, activation: dict[str, Any]) -> Any:
    return _ENV.program(_ENV.compile(expression)).evaluate(activation)


def evaluate(policy: Mapping[str, Any], request: Request) -> Verdict:
    """The policy's verdict on ``request``, ``matched=False`` when it does not apply."""
    spec = policy["spec"]
    constraints = spec["matchConstraints"]
    if not _rule_matches(constraints["resourceRules"], request):
        return Verdict(matched=False)
    if not _selector_matches(constraints.get("namespaceSelector") or {}, request.namespace_labels):
        return Verdict(matched=False)
    activation: dict[str, Any] = {
        "object": json_to_cel(dict(request.object)),
        "oldObject": None,
        "request": json_to_cel(
            {"operation": request.operation, "subResource": request.subresource}
        ),
    }
    fail = spec.get("failurePolicy", "Fail") == "Fail"
    try:
        for condition in spec.get("matchConditions") or []:
            if not _evaluate(condition["expression"], activation):
                return Verdict(matched=False)
        variables: dict[celtypes.StringType, Any] = {}
        for variable in spec.get("variables") or []:
            activation["variables"] = celtypes.MapType(variables)
            variables[celtypes.StringType(variable["name"])] = _evaluate(
                variable["expression"], activation
            )
        activation["variables"] = celtypes.MapType(variables)
    except CELEvalError as err:
        return Verdict(matched=True, rejections=(f"error: {err}",) if fail else ())
    rejections = []
    for validation in spec["validations"]:
        try:
            result = _evaluate(validation["expression"], activation)
        except CELEvalError as err:
            if fail:
                rejections.append(f"error in {validation['expression']!r}: {err}")
            continue
        if not isinstance(result, celtypes.BoolType):
            rejections.append(f"not a bool: {validation['expression']!r} gave {result!r}")
        elif not result:
            rejections.append(validation["message"])
    return Verdict(matched=True, rejections=tuple(rejections))


def evaluate_all(policies: Sequence[Mapping[str, Any]], request: Request) -> Verdict:
    """What the API server decides with all of ``policies`` bound (Deny): every matching one
    must admit."""
    verdicts = [evaluate(policy, request) for policy in policies]
    return Verdict(
        matched=any(v.matched for v in verdicts),
        rejections=tuple(r for v in verdicts for r in v.rejections),
    )
