"""Upstream's own definitions at the versions the program pins, read from ``../shared/upstream``.

The folder sits beside the repository (``<repo root>/../shared/upstream``; CI clones the repo next
to it) and is never copied in. What it holds is described in its README: per chart and version
``charts/<chart>-<version>/`` with ``Chart.yaml``, ``values.yaml``, ``values.schema.json``, bundled
subcharts under ``charts/`` and plain CRDs; ``liqoctl/flags-<version>.json``;
``pulumi/project-<version>.json``.

This module finds and loads that data and says what the program declares (Helm releases, custom
resources) in a recorded stack run. The checks themselves are in ``tests/upstream_checks.py``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import pytest
import yaml

import components
from components.kube.charts import Chart, liqo_chart
from stacks.config import ProjectSettings
from tools.mocks import Registration
from tools.offline import REPO_ROOT, StackRun

UPSTREAM = REPO_ROOT.parent / "shared" / "upstream"

CHARTS_WITHOUT_DATA: Mapping[tuple[str, str], str] = {}
"""The one explicit list of (chart, version) the program may declare although
``../shared/upstream/charts`` has no data for them, each with its reason. The tier prints it on
every run and fails on any chart neither covered by data nor listed here (and on a stale entry).
Empty: every chart the program installs has its data."""

K3S_BUNDLED_CHARTS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    # k3s-io/k3s@v1.33.5+k3s1 manifests/traefik.yaml installs the repackaged chart
    # traefik-34.2.1+up34.2.0 and its CRD chart, whose CRDs are traefik/traefik-helm-chart@v34.2.0's
    # (shared/upstream README: k3s-packaged/ and traefik-34.2.0).
    "v1.33.5+k3s1": {"traefik": ("34.2.1+up34.2.0", "34.2.0")},
}
"""k3s release -> {chart it installs itself: (packaged chart version, upstream chart version)}.
A ``HelmChartConfig`` configures the packaged chart; the upstream chart carries the CRDs."""

HELM_RELEASE_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
HELM_CHART_CONFIG = ("helm.cattle.io/v1", "HelmChartConfig")


def upstream_dir() -> Path:
    """The data folder; a missing one fails (never skips) with where it is expected."""
    if not (UPSTREAM / "README.md").is_file():
        pytest.fail(
            f"upstream data not found at {UPSTREAM}: the tests read it from <repo root>/../shared/"
            "upstream (CI clones the repository beside shared/); it is never copied into the repo"
        )
    return UPSTREAM


# ---------------------------------------------------------------------------------------------
# YAML as Helm and the API server read it
# ---------------------------------------------------------------------------------------------


class _YamlLoader(yaml.CSafeLoader):
    """PyYAML's safe loader without YAML 1.1's ``=`` "value" tag, which Go's YAML libraries
    (helm, kubectl) do not have: kube-prometheus-stack's crd-alertmanagerconfigs.yaml has ``=``
    as an enum item, a plain string to them (shared/upstream README)."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a safe loader minus one tag


def load_yaml_documents(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=_YamlLoader) if doc is not None]


# ---------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------

_COMMENTED_KEY = re.compile(r"^(\s*)# ?(\s*)(- )?([a-z_][\w.\-/]*):(\s|$)")
_COMMENTED_ITEM = re.compile(r"^(\s*)# ?(\s*)- ")
_KEY = re.compile(r"^(\s*)(- )?([A-Za-z_\"'][^:#]*?)\s*:(\s|$)")
_ITEM = re.compile(r"^(\s*)- ")
_BLOCK_SCALAR = re.compile(r":\s*[|>][-+0-9]*\s*(#.*)?$")


def commented_keys(values_text: str) -> frozenset[tuple[str, ...]]:
    """Key paths upstream documents only as commented-out examples in values.yaml, e.g.
    rancher's ``# hostname: rancher.my.org`` at the top level is ``("hostname",)``.

    A commented key's depth is its column with ``# `` removed; its parent is the nearest key above
    with less depth. Keys inside list items (real or commented) are not collected (lists are
    open anyway), nor capitalised words (prose such as ``# Note: ...``)."""
    found: set[tuple[str, ...]] = set()
    stack: list[tuple[int, str, bool]] = []  # (depth, key, is a list item)
    block_indent: int | None = None
    for line in values_text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if indent > block_indent:
                continue
            block_indent = None
        comment = line.lstrip().startswith("#")
        key_match = (_COMMENTED_KEY if comment else _KEY).match(line)
        item_match = (_COMMENTED_ITEM if comment else _ITEM).match(line)
        if key_match is None and item_match is None:
            continue
        match = key_match or item_match
        assert match is not None
        depth = len(match.group(1)) + (len(match.group(2)) if comment else 0)
        is_item = item_match is not None
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if is_item:
            stack.append((depth, "-", True))
            depth += 2
        if key_match is None:
            continue
        key = key_match.group(4) if comment else key_match.group(3).strip("\"'")
        if not comment and _BLOCK_SCALAR.search(line):
            block_indent = indent
        if comment and not any(item for _, _, item in stack):
            found.add((*[k for _, k, _ in stack], key))
        stack.append((depth, key, False))
    return frozenset(found)


@dataclass(frozen=True)
class ChartData:
    """One chart at one version, as upstream published it."""

    name: str
    version: str
    path: Path
    values: dict[str, Any]
    schema: dict[str, Any] | None
    commented: frozenset[tuple[str, ...]]
    subcharts: dict[str, ChartData] = field(default_factory=dict)
    """Bundled subcharts by the key their values sit under (alias or name)."""
    conditions: dict[str, str] = field(default_factory=dict)
    """Subchart key -> the values path that enables it (Chart.yaml ``condition``)."""

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    @cached_property
    def crd_files(self) -> tuple[Path, ...]:
        """Files that may hold CRDs: every YAML file of the chart and its subcharts except
        Chart.yaml and values.yaml (``crds/``, ``charts/*/crds/``, ``config/crd/bases/``)."""
        return tuple(
            path
            for path in sorted(self.path.rglob("*.yaml"))
            if path.name not in ("values.yaml", "Chart.yaml")
        )


def _read_chart(path: Path) -> ChartData:
    meta = load_yaml((path / "Chart.yaml").read_text())
    values_path = path / "values.yaml"
    values_text = values_path.read_text() if values_path.is_file() else ""
    schema_path = path / "values.schema.json"
    subcharts: dict[str, ChartData] = {}
    conditions: dict[str, str] = {}
    for dependency in meta.get("dependencies") or []:
        sub_path = path / "charts" / dependency["name"]
        if not (sub_path / "Chart.yaml").is_file():
            continue
        key = dependency.get("alias") or dependency["name"]
        subcharts[key] = _read_chart(sub_path)
        if dependency.get("condition"):
            conditions[key] = dependency["condition"]
    return ChartData(
        name=str(meta["name"]),
        version=str(meta["version"]),
        path=path,
        values=load_yaml(values_text) or {},
        schema=json.loads(schema_path.read_text()) if schema_path.is_file() else None,
        commented=commented_keys(values_text),
        subcharts=subcharts,
        conditions=conditions,
    )


@cache
def chart_data(chart: str, version: str, *, k3s_packaged: bool = False) -> ChartData | None:
    """The data of ``chart`` at ``version``, or None when upstream data has none. The folder's
    Chart.yaml must say the same name and version (a mislabelled folder is no evidence)."""
    base = upstream_dir() / "charts" / ("k3s-packaged" if k3s_packaged else "")
    path = base / f"{chart}-{version}"
    if not (path / "Chart.yaml").is_file():
        # A chart bundled at exactly this version as another chart's subchart (the node
        # exporter inside kube-prometheus-stack) is the same published data.
        bundled = [
            sub
            for sub in sorted(base.glob(f"*/charts/{chart}"))
            if (sub / "Chart.yaml").is_file()
            and yaml.safe_load((sub / "Chart.yaml").read_text()).get("version") == version
        ]
        if not bundled:
            return None
        path = bundled[0]
    data = _read_chart(path)
    if (data.name, data.version) != (chart, version):
        raise AssertionError(f"{path}: Chart.yaml says {data.label}, not {chart} {version}")
    return data


def chart_name(reference: str) -> str:
    """``oci://public.ecr.aws/aws-ec2/helm/aws-node-termination-handler`` or ``repo/name`` ->
    the chart's name."""
    return reference.rstrip("/").rsplit("/", 1)[-1]


def pinned_charts() -> dict[str, Chart]:
    """Every chart pin in the program: each module-level :class:`Chart` of a ``components``
    module, and Liqo's chart at the default of ``hybridgpu:liqoVersion``."""
    pins: dict[str, Chart] = {}
    for module_info in pkgutil.walk_packages(components.__path__, "components."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if isinstance(value, Chart) and getattr(module, "__name__", "") == module_info.name:
                pins.setdefault(f"{module_info.name}.{name}", value)
    liqo_default = ProjectSettings.model_fields["liqo_version"].default
    pins["hybridgpu:liqoVersion (default)"] = liqo_chart(liqo_default)
    return pins


# ---------------------------------------------------------------------------------------------
# What a stack run declares
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeclaredRelease:
    """A Helm chart the program installs (or configures, for a chart k3s installs itself)."""

    run: str
    resource: str
    chart: str
    version: str
    values: dict[str, Any]
    k3s_packaged: bool = False

    @property
    def label(self) -> str:
        return f"{self.run}: {self.resource} ({self.chart} {self.version})"


def _ints(value: Any) -> Any:
    """The mock runtime turns every number into a float (protobuf numbers are doubles); Helm
    and the API server see JSON numbers, where 3600.0 is the integer 3600."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def plain_object(registration: Registration) -> dict[str, Any]:
    """A registration's inputs as the cluster would receive them."""
    return _ints(registration.plain_inputs)


def is_helm_chart_config(obj: Mapping[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) == HELM_CHART_CONFIG


def declared_releases(
    run_label: str, run: StackRun, k3s_version: str
) -> tuple[list[DeclaredRelease], list[str]]:
    """Every Helm release of the run (Pulumi Helm resources, and k3s HelmChartConfigs), plus
    problems: a Helm resource type this tier does not know, a chart k3s does not bundle."""
    releases: list[DeclaredRelease] = []
    problems: list[str] = []
    for reg in run.managed():
        if reg.type in HELM_RELEASE_TYPES:
            inputs = plain_object(reg)
            releases.append(
                DeclaredRelease(
                    run=run_label,
                    resource=reg.name,
                    chart=chart_name(str(inputs["chart"])),
                    version=str(inputs.get("version") or ""),
                    values=dict(inputs.get("values") or {}),
                )
            )
        elif reg.type.startswith("kubernetes:") and is_helm_chart_config(plain_object(reg)):
            obj = plain_object(reg)
            name = obj["metadata"]["name"]
            bundled = K3S_BUNDLED_CHARTS.get(k3s_version, {}).get(name)
            if bundled is None:
                problems.append(
                    f"{run_label}: {reg.name} configures '{name}', which k3s {k3s_version} does "
                    "not install as far as K3S_BUNDLED_CHARTS knows (tests/upstream_data.py)"
                )
                continue
            values = load_yaml(obj.get("spec", {}).get("valuesContent") or "") or {}
            releases.append(
                DeclaredRelease(run_label, reg.name, name, bundled[0], values, k3s_packaged=True)
            )
        elif "helm" in reg.type.lower() and reg.type.startswith("kubernetes:"):
            problems.append(
                f"{run_label}: {reg.name} is a {reg.type}, a Helm resource this tier does not "
                "read; teach tests/upstream_data.py:declared_releases its inputs"
            )
    return releases, problems


def crd_sources(releases: list[DeclaredRelease], k3s_version: str) -> list[ChartData]:
    """Charts whose CRDs exist on a cluster: the ones the run installs plus k3s's own."""
    charts: dict[tuple[str, str], ChartData] = {}
    for release in releases:
        if release.k3s_packaged:
            continue
        data = chart_data(release.chart, release.version)
        if data is not None:
            charts[(data.name, data.version)] = data
    for name, (_, upstream_version) in K3S_BUNDLED_CHARTS.get(k3s_version, {}).items():
        data = chart_data(name, upstream_version)
        if data is not None:
            charts[(data.name, data.version)] = data
    return list(charts.values())


@dataclass(frozen=True)
class CrdVersion:
    """One version of a CustomResourceDefinition, from one chart's data."""

    chart: str
    crd: str
    api_version: str
    kind: str
    served: bool
    scope: str
    schema: dict[str, Any]


_NAME_LINE = re.compile(r"^\s*(group|kind):\s*['\"]?([\w.-]+)['\"]?\s*$", re.MULTILINE)


@cache
def _names_in(path: Path) -> frozenset[tuple[str, str]]:
    """Every ``group: x`` and ``kind: x`` line of a file, as (field, name)."""
    return frozenset(_NAME_LINE.findall(path.read_text()))


@cache
def _crd_versions_in(path: Path, group: str, kind: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """(CRD name, version entry) of every CRD in the file defining ``group``/``kind``. Only
    files that name both are parsed: CRD files are large and most are never needed."""
    if not {("group", group), ("kind", kind)} <= _names_in(path):
        return ()
    text = path.read_text()
    found = []
    for doc in load_yaml_documents(text):
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        if spec.get("group") == group and spec.get("names", {}).get("kind") == kind:
            found += [
                (doc["metadata"]["name"], {**version, "scope": spec.get("scope")})
                for version in spec.get("versions") or []
            ]
    return tuple(found)


def find_crd(charts: list[ChartData], api_version: str, kind: str) -> list[CrdVersion]:
    """The CRD versions among the charts' CRDs that define ``api_version``/``kind``."""
    group, _, version = api_version.rpartition("/")
    if not group:
        return []  # the core API group ("v1") is never a CRD's
    found = []
    for chart in charts:
        for path in chart.crd_files:
            for crd_name, entry in _crd_versions_in(path, group, kind):
                if entry["name"] != version:
                    continue
                found.append(
                    CrdVersion(
                        chart=chart.label,
                        crd=crd_name,
                        api_version=api_version,
                        kind=kind,
                        served=bool(entry.get("served", True)),
                        scope=entry.get("scope") or "Namespaced",
                        schema=(entry.get("schema") or {}).get("openAPIV3Schema") or {},
                    )
                )
    return found


def kubernetes_objects(run: StackRun) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource name, object) of every Kubernetes object the run declares: custom resources of
    the kubernetes provider other than Helm releases (components such as a yaml/v2 ConfigGroup
    are not objects; their children are)."""
    for reg in run.managed():
        if reg.type.startswith("kubernetes:") and reg.custom and reg.type not in HELM_RELEASE_TYPES:
            obj = plain_object(reg)
            # A HelmChartConfig is checked as the release it configures (declared_releases); its
            # CRD is built into k3s's helm-controller, not shipped in a chart.
            if not is_helm_chart_config(obj):
                yield reg.name, obj
