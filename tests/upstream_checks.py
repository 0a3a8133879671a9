"""Checks of what the program declares against upstream's own definitions (``tests/upstream_data``).

Each check is a pure function returning a list of problems (empty: all good), each naming the
release, path or flag and what upstream allows, so a failing test says what to fix.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from components.kube.charts import Chart
from tests.upstream_data import (
    CHARTS_WITHOUT_DATA,
    ChartData,
    CrdVersion,
    DeclaredRelease,
    chart_data,
    chart_name,
)

# ---------------------------------------------------------------------------------------------
# Helm values
# ---------------------------------------------------------------------------------------------


def _dotted(path: Sequence[str]) -> str:
    return ".".join(path)


def _resolve(schema: Any, root: Mapping[str, Any] | None) -> Any:
    """Follow local ``$ref``s (``#/definitions/x``) to the schema they name."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and root is not None and seen < 20:
        reference = schema["$ref"]
        if not reference.startswith("#/"):
            return None
        target: Any = root
        for part in reference[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        schema, seen = target, seen + 1
    return schema if isinstance(schema, dict) else None


def _schema_child(schema: Any, key: str, root: Mapping[str, Any] | None) -> tuple[Any, bool]:
    """(schema of ``key``, whether the schema declares the key: a property, a matching
    patternProperties entry, or additionalProperties that admit any key)."""
    schema = _resolve(schema, root)
    if schema is None:
        return None, False
    properties = schema.get("properties") or {}
    if key in properties:
        return properties[key], True
    for pattern, sub in (schema.get("patternProperties") or {}).items():
        if re.search(pattern, key):
            return sub, True
    additional = schema.get("additionalProperties")
    if additional is True or isinstance(additional, dict):
        return (additional if isinstance(additional, dict) else None), True
    return None, False


def _schema_is_open(schema: Any, root: Mapping[str, Any] | None) -> bool:
    """additionalProperties (true or a schema) lets any key in."""
    schema = _resolve(schema, root)
    if schema is None:
        return False
    additional = schema.get("additionalProperties")
    return additional is True or isinstance(additional, dict)


def _schema_is_closed(schema: Any, root: Mapping[str, Any] | None) -> bool:
    schema = _resolve(schema, root)
    return schema is not None and schema.get("additionalProperties") is False


@dataclass(frozen=True)
class _Chart:
    """What the key walk needs of the chart (or bundled subchart) whose values it checks."""

    label: str
    schema: Mapping[str, Any] | None
    commented: frozenset[tuple[str, ...]]
    """Commented-out example keys, as paths from the top of the release's values."""


def _walk(
    ours: Mapping[str, Any],
    upstream: Any,
    schema: Any,
    *,
    chart: _Chart,
    path: tuple[str, ...],
    problems: list[str],
) -> None:
    """Check every key of ``ours`` against the values.yaml node ``upstream`` and its schema.

    A key is known when values.yaml has it, the schema declares it (properties,
    patternProperties), or values.yaml documents it as a commented-out example. A node whose
    values.yaml entry is an empty map or null is open (upstream gives no structure) unless the
    schema closes it (additionalProperties: false); a node the schema opens
    (additionalProperties) is open even when values.yaml shows a few keys (hub.config.JupyterHub).
    Lists are not descended into: their items are the program's own structures."""
    known_here = isinstance(upstream, dict) and bool(upstream)
    is_open = _schema_is_open(schema, chart.schema) or (
        not known_here and not _schema_is_closed(schema, chart.schema)
    )
    for key, value in ours.items():
        here = (*path, key)
        in_values = isinstance(upstream, dict) and key in upstream
        child_schema, in_schema = _schema_child(schema, key, chart.schema)
        if not (in_values or in_schema or here in chart.commented or is_open):
            known = list(upstream) if isinstance(upstream, dict) else []
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(
                f"{_dotted(here)}: no such key in {chart.label} values.yaml"
                f"{' or values.schema.json' if chart.schema else ''}{hint}"
            )
            continue
        if not isinstance(value, dict):
            continue
        child = upstream.get(key) if in_values else None
        if child is not None and not isinstance(child, dict):
            if _resolve(child_schema, chart.schema) is None:
                kind = "a list" if isinstance(child, list) else f"the scalar {child!r}"
                problems.append(
                    f"{_dotted(here)}: {chart.label} values.yaml has {kind} here, the program "
                    "passes a map"
                )
            continue  # the schema, where there is one, judges the value
        _walk(value, child, child_schema, chart=chart, path=here, problems=problems)


def unknown_value_keys(values: Mapping[str, Any], chart: ChartData) -> list[str]:
    """Key paths of ``values`` the chart does not define (see :func:`_walk` for open maps).
    A top-level key naming a bundled subchart is checked against that subchart's values (with the
    parent's values.yaml under that key over them); Helm's ``global`` is open unless the chart
    defines it."""
    problems: list[str] = []
    for key, value in values.items():
        sub = chart.subcharts.get(key)
        if sub is not None and isinstance(value, dict):
            defaults = coalesce(sub.values, chart.values.get(key) or {})
            commented = chart.commented | {(key, *p) for p in sub.commented}
            context = _Chart(f"{chart.label} (subchart {sub.label})", sub.schema, commented)
            _walk(value, defaults, sub.schema, chart=context, path=(key,), problems=problems)
        elif key == "global" and "global" not in chart.values:
            continue
        else:
            context = _Chart(chart.label, chart.schema, chart.commented)
            _walk(
                {key: value}, chart.values, chart.schema, chart=context, path=(), problems=problems
            )
    return problems


def coalesce(defaults: Any, overrides: Any) -> Any:
    """Helm's merge of user values over chart defaults: maps merge key by key, anything else
    replaces, and a null deletes the default
    (https://helm.sh/docs/chart_template_guide/values_files/#deleting-a-default-key)."""
    if not isinstance(defaults, dict) or not isinstance(overrides, dict):
        return copy.deepcopy(overrides)
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _lookup(values: Mapping[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _error_text(error: jsonschema.ValidationError) -> str:
    """The error's path and message; for a failed oneOf/anyOf, the closest alternative's error
    (where it names the offending key) instead of the whole value."""
    if error.context:
        # Alternatives whose type fits the value say what is wrong inside it.
        relevant = [e for e in error.context if not (e.validator == "type" and not e.path)]
        best = jsonschema.exceptions.best_match(relevant or error.context)
        if best is not None:
            return _error_text(best)
    path = _dotted([str(p) for p in error.absolute_path]) or "(top level)"
    return f"{path}: {error.message}"


def schema_errors(instance: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    """Every way ``instance`` breaks ``schema`` (its ``$schema`` draft; draft 7 without one)."""
    validator_class = jsonschema.validators.validator_for(schema, jsonschema.Draft7Validator)
    validator = validator_class(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    return list(dict.fromkeys(f"{_error_text(error)} (rejected by {where})" for error in errors))


def schema_problems(values: Mapping[str, Any], chart: ChartData) -> list[str]:
    """Helm validates the merged values against values.schema.json of the chart and of every
    enabled subchart that has one, the subchart seeing its own section plus ``global``
    (https://helm.sh/docs/topics/charts/#schema-files); so do we."""
    merged = coalesce(chart.values, values)
    problems: list[str] = []
    if chart.schema is not None:
        problems += schema_errors(merged, chart.schema, f"{chart.label} values.schema.json")
    for key, sub in chart.subcharts.items():
        condition = chart.conditions.get(key)
        if condition and _lookup(merged, condition) is False:
            continue
        if sub.schema is None:
            continue
        sub_values = coalesce(sub.values, merged.get(key) or {})
        if "global" in merged:
            sub_values["global"] = coalesce(sub_values.get("global") or {}, merged["global"])
        problems += [
            f"{key}.{problem}"
            for problem in schema_errors(sub_values, sub.schema, f"{sub.label} values.schema.json")
        ]
    return problems


def release_problems(release: DeclaredRelease) -> list[str]:
    """Everything wrong with one release: no data for its chart version (unless allow-listed),
    keys the chart does not have, values its schema rejects."""
    data = chart_data(release.chart, release.version, k3s_packaged=release.k3s_packaged)
    if data is None:
        if (release.chart, release.version) in CHARTS_WITHOUT_DATA:
            return []
        where = "charts/k3s-packaged" if release.k3s_packaged else "charts"
        return [
            f"{release.label}: no upstream data for chart {release.chart} version "
            f"{release.version} in shared/upstream/{where}/ (add "
            f"{release.chart}-{release.version}/ there first, or list it with its reason in "
            "CHARTS_WITHOUT_DATA)"
        ]
    found = unknown_value_keys(release.values, data) + schema_problems(release.values, data)
    return [f"{release.label}: {problem}" for problem in found]


def pin_problems(pins: Mapping[str, Chart], releases: Iterable[DeclaredRelease]) -> list[str]:
    """Every chart pin must have upstream data (or be allow-listed) and be declared by some
    recorded run, so an optional chart is checked too and a bumped pin fails naming itself."""
    declared = {(r.chart, r.version) for r in releases}
    problems = []
    for where, pin in sorted(pins.items()):
        name = chart_name(pin.chart)
        listed = (name, pin.version) in CHARTS_WITHOUT_DATA
        if chart_data(name, pin.version) is None and not listed:
            problems.append(
                f"{where}: chart {name} {pin.version} has no upstream data in "
                f"shared/upstream/charts/ (add {name}-{pin.version}/ there first)"
            )
        if (name, pin.version) not in declared:
            problems.append(
                f"{where}: {name} {pin.version} is pinned but no recorded run declares it; add a "
                "valid fixture (tests/fixtures/valid/) that turns it on"
            )
    return problems


def allow_list_problems(releases: Iterable[DeclaredRelease]) -> list[str]:
    """Allow-list entries that are stale: the chart now has data, or nothing declares it."""
    declared = {(r.chart, r.version) for r in releases}
    problems = []
    for (chart, version), reason in CHARTS_WITHOUT_DATA.items():
        if chart_data(chart, version) is not None:
            problems.append(f"{chart} {version} has upstream data now; drop it from the list")
        elif (chart, version) not in declared:
            problems.append(f"{chart} {version} ({reason}) is listed but no release declares it")
    return problems


# ---------------------------------------------------------------------------------------------
# Custom resources against their CRD's structural schema
# ---------------------------------------------------------------------------------------------

_OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_KEPT = (
    "type",
    "enum",
    "pattern",
    "required",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
    "minProperties",
    "maxProperties",
)


def structural_to_jsonschema(node: Mapping[str, Any], *, root: bool = False) -> dict[str, Any]:
    """A CRD's OpenAPI v3 structural schema as JSON Schema (draft 4, which OpenAPI 3.0 follows),
    with the API server's rules: ``nullable``, ``x-kubernetes-int-or-string``, and pruning made
    an error (a field the schema does not know is dropped by the server, so the program's intent
    is lost) unless ``x-kubernetes-preserve-unknown-fields`` keeps it. ``x-kubernetes-validations``
    (CEL) is not evaluated."""
    out: dict[str, Any] = {k: copy.deepcopy(node[k]) for k in _KEPT if k in node}
    if "properties" in node:
        out["properties"] = {k: structural_to_jsonschema(v) for k, v in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        out["items"] = structural_to_jsonschema(node["items"])
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in node:
            out[combinator] = [structural_to_jsonschema(n) for n in node[combinator]]
    if "not" in node:
        out["not"] = structural_to_jsonschema(node["not"])
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = structural_to_jsonschema(additional)
    elif additional is not None:
        out["additionalProperties"] = additional
    return _kubernetes_extensions(node, out, root=root)


def _kubernetes_extensions(
    node: Mapping[str, Any], out: dict[str, Any], *, root: bool
) -> dict[str, Any]:
    """Apply the API server's meaning of the ``x-kubernetes-*`` and ``nullable`` keywords."""
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("x-kubernetes-embedded-resource") or root:
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties["metadata"] = copy.deepcopy(_OBJECT_META)
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if out.get("type") == "object" and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def custom_resource_problems(obj: Mapping[str, Any], crds: Sequence[CrdVersion]) -> list[str]:
    """Validate a custom resource against the one CRD version that defines it."""
    where = f"{obj.get('apiVersion')} {obj.get('kind')}"
    if len(crds) != 1:
        charts = sorted({c.chart for c in crds})
        return [f"{where}: {len(crds)} CRDs define it ({', '.join(charts) or 'none'})"]
    (crd,) = crds
    if not crd.served:
        return [f"{where}: version not served by {crd.crd} in {crd.chart}"]
    problems = []
    if crd.scope == "Cluster" and obj.get("metadata", {}).get("namespace"):
        problems.append(f"{where}: cluster-scoped ({crd.crd}) but declared with a namespace")
    schema = structural_to_jsonschema(crd.schema, root=True)
    validator = jsonschema.Draft4Validator(schema)
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
        path = _dotted([str(p) for p in error.absolute_path]) or "(top level)"
        problems.append(f"{where}: {path}: {error.message} (CRD {crd.crd} of {crd.chart})")
    return problems
