"""Every Helm release the program declares, checked against its chart's own definitions at the
pinned version (``../shared/upstream/charts``): the chart and version have data, every key path
the program passes exists upstream, the merged values pass ``values.schema.json``, and the values
that carry intent say what the operator means.

Releases are read from the recorded registrations of both example stacks and of every valid
fixture (tests/fixtures/valid/, which switch optional parts such as Rancher on), so a chart added
anywhere in the program is checked without touching this file; a pinned chart that no run
declares fails, asking for a fixture that turns it on.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.kube import charts
from stacks.config import ProjectSettings
from tests import upstream_checks, upstream_data
from tests.upstream_checks import coalesce, release_problems, unknown_value_keys
from tests.upstream_data import (
    K3S_BUNDLED_CHARTS,
    ChartData,
    DeclaredRelease,
    chart_data,
    chart_name,
    commented_keys,
    declared_releases,
    pinned_charts,
)
from tools import offline
from tools.offline import StackRun

pytestmark = pytest.mark.upstream

K3S_VERSION = ProjectSettings.model_fields["k3s_version"].default


def collect(runs: dict[str, StackRun]) -> tuple[list[DeclaredRelease], list[str]]:
    releases: list[DeclaredRelease] = []
    problems: list[str] = []
    for label, run in runs.items():
        found, trouble = declared_releases(label, run, K3S_VERSION)
        releases += found
        problems += trouble
    return releases, problems


@pytest.fixture(scope="module")
def collected(declared_runs: dict[str, StackRun]) -> tuple[list[DeclaredRelease], list[str]]:
    return collect(declared_runs)


@pytest.fixture(scope="module")
def releases(collected: tuple[list[DeclaredRelease], list[str]]) -> list[DeclaredRelease]:
    return collected[0]


def _unique(releases: list[DeclaredRelease]) -> Iterator[DeclaredRelease]:
    """One release per (chart, version, values): the fixtures repeat most releases verbatim."""
    seen: set[str] = set()
    for release in releases:
        key = json.dumps([release.chart, release.version, release.values], sort_keys=True)
        if key not in seen:
            seen.add(key)
            yield release


def test_every_release_has_data_known_keys_and_schema_valid_values(
    collected: tuple[list[DeclaredRelease], list[str]],
) -> None:
    releases, problems = collected
    problems = problems + [p for release in _unique(releases) for p in release_problems(release)]
    problems += upstream_checks.allow_list_problems(releases)
    assert not problems, "\n".join(dict.fromkeys(problems))
    # Both stacks and the optional charts were really read (a run declaring nothing is no pass).
    charts_seen = {r.chart for r in releases}
    assert {"liqo", "gpu-operator", "jupyterhub", "rancher", "cert-manager"} <= charts_seen


def test_every_pinned_chart_has_data_and_is_declared(releases: list[DeclaredRelease]) -> None:
    problems = upstream_checks.pin_problems(pinned_charts(), releases)
    assert not problems, "\n".join(problems)


def test_the_pinned_k3s_release_has_data_for_the_charts_it_installs() -> None:
    """k3s installs Traefik itself; a k3s bump needs its entry (and data) first, like a chart."""
    bundled = K3S_BUNDLED_CHARTS.get(K3S_VERSION)
    assert bundled, f"k3s {K3S_VERSION}: no entry in K3S_BUNDLED_CHARTS (tests/upstream_data.py)"
    for name, (packaged, upstream) in bundled.items():
        assert chart_data(name, packaged, k3s_packaged=True), f"k3s-packaged/{name}-{packaged}"
        assert chart_data(name, upstream), f"charts/{name}-{upstream}"


# ---------------------------------------------------------------------------------------------
# The values that carry intent
# ---------------------------------------------------------------------------------------------


def _release(run: StackRun, chart: str) -> DeclaredRelease:
    (found,) = [r for r in declared_releases(run.stack, run, K3S_VERSION)[0] if r.chart == chart]
    return found


def _data(release: DeclaredRelease) -> ChartData:
    data = chart_data(release.chart, release.version)
    assert data is not None, release.label
    return data


def test_gpu_operator_toolkit_targets_k3s_containerd(homelab_run: StackRun) -> None:
    """k3s's containerd keeps config and socket under its own paths
    (https://docs.k3s.io/advanced#nvidia-container-runtime); upstream's toolkit env is empty,
    so without ours the toolkit would configure /etc/containerd, which k3s never reads."""
    release = _release(homelab_run, "gpu-operator")
    upstream = _data(release).values["toolkit"]
    assert upstream["env"] == []
    env = {e["name"]: e["value"] for e in release.values["toolkit"]["env"]}
    assert env["CONTAINERD_CONFIG"] == "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
    assert env["CONTAINERD_SOCKET"] == "/run/k3s/containerd/containerd.sock"
    assert env["CONTAINERD_RUNTIME_CLASS"] == "nvidia"
    assert release.values["toolkit"]["enabled"] is True


def test_liqo_cluster_ids_and_reserved_networks(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    """Upstream defaults the cluster id to "" and reserves nothing; every range in use outside
    the clusters (LAN, VPC, overlay) must be reserved or Liqo may remap into it."""
    project = offline.project_defaults()
    outside = {
        project["hybridgpu:homelabLanCidr"],
        project["hybridgpu:awsVpcCidr"],
        project["hybridgpu:nebulaOverlayCidr"],
    }
    homelab_config = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    expected_ids = {"aws-gpu": "aws-gpu", "homelab": homelab_config["federation"]["clusterId"]}
    for run in (aws_gpu_run, homelab_run):
        release = _release(run, "liqo")
        upstream = _data(release).values
        assert upstream["discovery"]["config"]["clusterID"] == ""
        assert upstream["ipam"]["reservedSubnets"] == []
        values = release.values
        assert values["discovery"]["config"]["clusterID"] == expected_ids[run.stack]
        assert set(values["ipam"]["reservedSubnets"]) == outside


def test_jupyterhub_gpu_limits_and_culling(homelab_run: StackRun) -> None:
    config = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    hub = config["platform"]["jupyterhub"]
    gpus_per_worker = {len(worker["gpus"]) for worker in config["gpuWorkers"]}
    release = _release(homelab_run, "jupyterhub")
    merged = coalesce(_data(release).values, release.values)
    assert merged["cull"]["enabled"] is True
    assert merged["cull"]["timeout"] == hub["cullTimeoutSeconds"]
    assert merged["cull"]["every"] == hub["cullEverySeconds"]
    limits = {}
    for profile in merged["singleuser"]["profileList"]:
        override = profile["kubespawner_override"]
        gpus = override.get("extra_resource_limits", {}).get("nvidia.com/gpu")
        if gpus is None:
            assert override["environment"]["NVIDIA_VISIBLE_DEVICES"] == "none"
            continue
        # KubeSpawner's extra_resource_limits: whole GPUs as a Kubernetes quantity.
        assert override["extra_resource_guarantees"]["nvidia.com/gpu"] == gpus
        limits[profile["slug"]] = int(gpus)
    assert set(limits.values()) == set(range(1, max(gpus_per_worker) + 1))


IMDS_ONLY = re.compile(r"^# (\w+) .*Only used in IMDS mode", re.MULTILINE)
QUEUE_ONLY = re.compile(r"^# (\w+) .*Only used in Queue Processor mode", re.MULTILINE)


def test_node_termination_handler_runs_in_imds_mode(aws_gpu_run: StackRun) -> None:
    """Queue-processor mode is ``enableSqsTerminationDraining: true`` (upstream's values.yaml
    comment); IMDS mode is the DaemonSet reading the instance metadata on each node. The keys we
    turn on are the ones upstream documents as IMDS-mode keys."""
    release = _release(aws_gpu_run, "aws-node-termination-handler")
    data = _data(release)
    text = (data.path / "values.yaml").read_text()
    imds_keys, queue_keys = set(IMDS_ONLY.findall(text)), set(QUEUE_ONLY.findall(text))
    assert "enableSpotInterruptionDraining" in imds_keys
    values = release.values
    assert values["enableSqsTerminationDraining"] is False
    assert not values.get("queueURL")
    assert values["enableSpotInterruptionDraining"] is True
    assert values["enableScheduledEventDraining"] is True
    assert {k for k, v in values.items() if v is True and k.startswith("enable")} - {
        "enableRebalanceMonitoring",
        "enableSpotInterruptionDraining",
        "enableScheduledEventDraining",
        "emitKubernetesEvents",
    } == set()
    assert not {k for k in values if k in queue_keys}
    # IMDSv2 from a pod needs host networking or a hop limit of 2 (upstream's useHostNetwork note).
    assert values["useHostNetwork"] is True


# ---------------------------------------------------------------------------------------------
# The tier fails on broken inputs
# ---------------------------------------------------------------------------------------------


def _broken(release: DeclaredRelease, **changes: Any) -> DeclaredRelease:
    return dataclasses.replace(release, **changes)


def test_a_typod_values_key_fails(homelab_run: StackRun) -> None:
    release = _release(homelab_run, "liqo")
    values = copy.deepcopy(release.values)
    values["discovery"]["config"]["clusterId"] = values["discovery"]["config"].pop("clusterID")
    problems = release_problems(_broken(release, values=values))
    assert len(problems) == 1
    assert "discovery.config.clusterId: no such key in liqo v1.2.0" in problems[0]
    assert "did you mean 'clusterID'?" in problems[0]


def test_a_typod_subchart_key_fails(homelab_run: StackRun) -> None:
    release = _release(homelab_run, "gpu-operator")
    values = copy.deepcopy(release.values)
    worker = values["node-feature-discovery"]["worker"]
    worker["toleration"] = worker.pop("tolerations")
    (problem,) = release_problems(_broken(release, values=values))
    assert "node-feature-discovery.worker.toleration" in problem
    assert "subchart node-feature-discovery" in problem


def test_a_value_the_schema_rejects_fails(homelab_run: StackRun) -> None:
    release = _release(homelab_run, "jupyterhub")
    values = copy.deepcopy(release.values)
    values["cull"]["timeout"] = "1h"
    (problem,) = release_problems(_broken(release, values=values))
    assert "cull.timeout: '1h' is not of type 'integer'" in problem
    assert "jupyterhub 4.4.0 values.schema.json" in problem


def test_a_chart_version_without_data_fails_naming_chart_and_version(
    homelab_run: StackRun,
) -> None:
    release = _release(homelab_run, "jupyterhub")
    (problem,) = release_problems(_broken(release, version="4.4.1"))
    assert "no upstream data for chart jupyterhub version 4.4.1" in problem


def test_a_pin_bumped_without_data_fails_naming_chart_and_version() -> None:
    """The Liqo pin is a config key: bumping it runs the program with a version upstream data
    does not have, and the tier names it."""
    run = offline.run_stack("aws-gpu", {"hybridgpu:liqoVersion": "v1.2.1"})
    releases, _ = collect({"aws-gpu liqo v1.2.1": run})
    problems = [p for r in releases for p in release_problems(r)]
    assert problems == [
        "aws-gpu liqo v1.2.1: liqo-release (liqo v1.2.1): no upstream data for chart liqo version "
        "v1.2.1 in shared/upstream/charts/ (add liqo-v1.2.1/ there first, or list it with its "
        "reason in CHARTS_WITHOUT_DATA)"
    ]


def test_a_pinned_chart_constant_without_data_or_release_fails(
    releases: list[DeclaredRelease],
) -> None:
    bumped = dataclasses.replace(charts.GPU_OPERATOR, version="v26.7.1")
    pins = {"components.kube.charts.GPU_OPERATOR": bumped}
    problems = upstream_checks.pin_problems(pins, releases)
    assert any("gpu-operator v26.7.1" in p and "no upstream data" in p for p in problems)
    assert any("gpu-operator v26.7.1" in p and "no recorded run declares it" in p for p in problems)


def test_the_allow_list_admits_a_chart_and_goes_stale(
    homelab_run: StackRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = _broken(_release(homelab_run, "jupyterhub"), version="4.4.1")
    monkeypatch.setattr(
        upstream_checks, "CHARTS_WITHOUT_DATA", {("jupyterhub", "4.4.1"): "example reason"}
    )
    assert release_problems(release) == []
    assert upstream_checks.allow_list_problems([release]) == []
    (stale,) = upstream_checks.allow_list_problems([])
    assert "jupyterhub 4.4.1 (example reason) is listed but no release declares it" in stale


def test_unhandled_helm_resource_types_fail(aws_gpu_run: StackRun) -> None:
    """A Helm resource this tier cannot read would otherwise escape it silently."""
    liqo = aws_gpu_run.one("kubernetes:helm.sh/v3:Release", "liqo-release")
    odd = dataclasses.replace(liqo, type="kubernetes:helm.sh/v3:Chart")
    run = StackRun("aws-gpu", registrations=[odd], exports={}, secret_exports=[])
    _, problems = declared_releases("aws-gpu", run, K3S_VERSION)
    assert problems
    assert "kubernetes:helm.sh/v3:Chart" in problems[0]


REDIRECT = "ports:\n  web:\n    {key}:\n      entryPoint: {{to: websecure, scheme: https}}\n"


def test_a_helm_chart_config_is_checked_against_the_chart_k3s_installs(
    homelab_run: StackRun,
) -> None:
    """k3s installs Traefik itself; a HelmChartConfig's valuesContent configures that packaged
    chart (k3s-packaged/traefik-34.2.1+up34.2.0), so its keys are checked against it."""
    template = homelab_run.by_type("kubernetes:core/v1:ConfigMap")[0]

    def chart_config(values: str, name: str = "traefik") -> StackRun:
        inputs = {
            "apiVersion": "helm.cattle.io/v1",
            "kind": "HelmChartConfig",
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"valuesContent": values},
        }
        reg = dataclasses.replace(
            template,
            type="kubernetes:helm.cattle.io/v1:HelmChartConfig",
            name="traefik-config",
            inputs=inputs,
        )
        return StackRun("homelab", registrations=[reg], exports={}, secret_exports=[])

    (release,), problems = declared_releases(
        "homelab", chart_config(REDIRECT.format(key="redirections")), K3S_VERSION
    )
    assert problems == []
    assert (release.chart, release.version, release.k3s_packaged) == (
        "traefik",
        "34.2.1+up34.2.0",
        True,
    )
    assert release_problems(release) == []
    # Traefik chart v34 renamed ports.web.redirectTo to redirections.entryPoint.
    (old,), _ = declared_releases(
        "homelab", chart_config(REDIRECT.format(key="redirectTo")), K3S_VERSION
    )
    (problem,) = release_problems(old)
    assert "ports.web.redirectTo: no such key in traefik 34.2.1+up34.2.0 values.yaml" in problem
    _, unknown = declared_releases("homelab", chart_config("{}", name="coredns"), K3S_VERSION)
    assert "configures 'coredns', which k3s v1.33.5+k3s1 does not install" in unknown[0]


# ---------------------------------------------------------------------------------------------
# The rules, on small inputs
# ---------------------------------------------------------------------------------------------


def _chart(values_text: str, schema: dict[str, Any] | None = None) -> ChartData:
    from tests.upstream_data import load_yaml

    return ChartData(
        name="demo",
        version="1.0.0",
        path=offline.REPO_ROOT,
        values=load_yaml(values_text),
        schema=schema,
        commented=commented_keys(values_text),
    )


def test_open_maps_lists_and_schema_open_maps_take_any_key() -> None:
    chart = _chart(
        "labels: {}\n"
        "tolerations: []\n"
        "resources:\n"
        "image:\n  repository: x\n  tag: y\n"
        "config:\n  known: 1\n",
        schema={
            "type": "object",
            "properties": {"config": {"type": "object", "additionalProperties": True}},
        },
    )
    ours = {
        "labels": {"any": "x"},
        "tolerations": [{"anything": 1}],
        "resources": {"limits": {"cpu": 1}},
        "config": {"other": 2},
        "image": {"tag": "z", "digest": "sha256:0"},
    }
    assert unknown_value_keys(ours, chart) == [
        "image.digest: no such key in demo 1.0.0 values.yaml or values.schema.json"
    ]


def test_a_schema_closed_map_rejects_unknown_keys_even_when_empty_upstream() -> None:
    chart = _chart(
        "extra: {}\n",
        schema={
            "type": "object",
            "properties": {
                "extra": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"a": {"type": "string"}},
                }
            },
        },
    )
    assert unknown_value_keys({"extra": {"a": "x"}}, chart) == []
    (problem,) = unknown_value_keys({"extra": {"b": "x"}}, chart)
    assert problem.startswith("extra.b: no such key")


def test_commented_examples_count_as_upstream_keys() -> None:
    text = (
        "# hostname: rancher.my.org\n"
        "ingress:\n"
        "  enabled: true\n"
        "  # className: nginx\n"
        "  extraAnnotations: {}\n"
        "  # Note: prose is not a key\n"
        "# podSecurityContext:\n"
        "#   fsGroup: 2000\n"
        "# extraObjects:\n"
        "#   - kind: ConfigMap\n"
        "script: |\n"
        "  # notakey: inside a block scalar\n"
    )
    assert commented_keys(text) == {
        ("hostname",),
        ("ingress", "className"),
        ("podSecurityContext",),
        ("podSecurityContext", "fsGroup"),
        ("extraObjects",),
    }
    chart = _chart(text)
    assert unknown_value_keys({"hostname": "h", "ingress": {"className": "c"}}, chart) == []
    assert unknown_value_keys({"ingress": {"Note": "x"}}, chart) != []


def test_helm_merge_semantics() -> None:
    defaults = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert coalesce(defaults, {"a": {"c": [3]}, "d": None}) == {"a": {"b": 1, "c": [3]}}
    assert defaults == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_chart_names_from_references() -> None:
    assert chart_name(charts.NODE_TERMINATION_HANDLER.chart) == "aws-node-termination-handler"
    assert chart_name("jetstack/cert-manager") == "cert-manager"


def test_missing_upstream_data_fails_and_never_skips(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(upstream_data, "UPSTREAM", tmp_path / "shared" / "upstream")
    with pytest.raises(pytest.fail.Exception, match="upstream data not found at"):
        upstream_data.upstream_dir()
