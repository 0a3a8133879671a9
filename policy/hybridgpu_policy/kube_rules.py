"""Kubernetes rules: every Helm chart pinned to one version, every container image pinned.

Images are checked where the program states them: containers of any Kubernetes object (a pod
template at any depth: Deployment, Job, CronJob, DaemonSet, ...), and image tags in Helm values.
In Helm values an absent tag is the chart's own default, pinned by the chart version; only an
explicit ``latest`` is a violation there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from hybridgpu_policy.resources import Resource
from hybridgpu_policy.values import (
    Unknown,
    chart_version_problem,
    get,
    image_pin_problem,
    is_unknown,
    known,
    plain,
)

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART_V4 = "kubernetes:helm.sh/v4:Chart"
K3S_HELM_CHART = "kubernetes:helm.cattle.io/v1:HelmChart"  # k3s's Helm controller CRD
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
VALUES_TAG_KEYS = ("tag", "imageTag")


def _chart_reference(resource: Resource) -> tuple[Any, Any, Any]:
    """(chart, version, repository) as the resource states them."""
    if resource.type == K3S_HELM_CHART:
        spec = get(resource.props, "spec") or {}
        return get(spec, "chart"), get(spec, "version"), get(spec, "repo")
    return (
        get(resource.props, "chart"),
        get(resource.props, "version"),
        get(resource.props, "repositoryOpts.repo"),
    )


def pinned_helm_charts(resource: Resource, _config: Mapping[str, Any]) -> Iterator[str]:
    if resource.type not in (HELM_RELEASE, HELM_CHART_V4, K3S_HELM_CHART):
        return
    try:
        chart, version, repo = (known(v) for v in _chart_reference(resource))
    except Unknown:
        return
    problem = chart_version_problem(str(chart or ""), str(version) if version else None)
    if problem:
        source = f"{repo}/{chart}" if repo else chart
        yield (
            f"{resource.label}: chart {source} has {problem}, so the next up may install a "
            "different release than the one reviewed. Fix: version='<exact release>' (pins live "
            "in components/kube/charts.py)."
        )


def _containers(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, container) for every container of every pod spec below ``value``."""
    value = plain(value)
    if isinstance(value, Mapping):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else str(key)
            if key in CONTAINER_LISTS and isinstance(child, list):
                for index, container in enumerate(child):
                    yield f"{child_path}[{index}]", container
            else:
                yield from _containers(child, child_path)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _containers(child, f"{path}[{index}]")


def _latest_in_values(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, value) of every explicit ``latest`` image tag in Helm values."""
    value = plain(value)
    if isinstance(value, Mapping):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else str(key)
            if isinstance(child, str):
                explicit_latest = key in VALUES_TAG_KEYS and child.strip().lower() == "latest"
                if explicit_latest or (
                    key == "image" and image_pin_problem(child) == "tag 'latest'"
                ):
                    yield child_path, child
            else:
                yield from _latest_in_values(child, child_path)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _latest_in_values(child, f"{path}[{index}]")


def pinned_images(resource: Resource, _config: Mapping[str, Any]) -> Iterator[str]:
    if not resource.type.startswith("kubernetes:"):
        return
    fix = "Fix: name:tag@sha256:<digest> (at least an exact tag)."
    if resource.type in (HELM_RELEASE, HELM_CHART_V4):
        for path, tag in _latest_in_values(get(resource.props, "values")):
            yield f"{resource.label}: Helm value {path} = '{tag}' is not a pinned image. {fix}"
        return
    for path, container in _containers(resource.props):
        image = container.get("image") if isinstance(container, Mapping) else None
        if is_unknown(image):
            continue
        problem = "no image" if not image else image_pin_problem(str(image))
        if problem:
            yield (
                f"{resource.label}: container {path} image '{image or ''}' has {problem}; a "
                f"restart may run different code than the one reviewed. {fix}"
            )
