"""Homelab isolation as the run records it: every app namespace the program declares denies
ingress by default with only the allows it needs (evaluated here with NetworkPolicy semantics on
the recorded objects), and pods offloaded to AWS get no homelab API access."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from components.kube.network_policies import TRAEFIK_NAMESPACE, TRAEFIK_PODS
from components.platform import monitoring_network
from tests.upstream_data import UPSTREAM, chart_data, kubernetes_objects, plain_object
from tools.offline import StackRun

NAME_LABEL = "kubernetes.io/metadata.name"
# Namespaces the homelab declares that hold no app: none today (every one is an app's).
NOT_APPS: dict[str, str] = {}


def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    assert not selector.get("matchExpressions"), "not needed here"
    return True


def allowed(
    policies: list[dict[str, Any]],
    *,
    src: tuple[str, Mapping[str, str]],
    dst: tuple[str, Mapping[str, str]],
    port: int,
) -> bool:
    """NetworkPolicy ingress semantics (https://kubernetes.io/docs/concepts/services-networking/
    network-policies/): a pod no Ingress policy selects accepts everything; otherwise the union
    of the selecting policies' rules decides."""
    src_ns, src_labels = src
    dst_ns, dst_labels = dst
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == dst_ns
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and _matches(p["spec"]["podSelector"], dst_labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port for p in ports):
                continue
            peers = rule.get("from")
            if peers is None:
                return True
            for peer in peers:
                if "ipBlock" in peer:
                    continue
                ns_ok = (
                    _matches(peer["namespaceSelector"], {NAME_LABEL: src_ns})
                    if "namespaceSelector" in peer
                    else src_ns == dst_ns
                )
                if ns_ok and _matches(peer.get("podSelector"), src_labels):
                    return True
    return False


@pytest.fixture(scope="module")
def homelab_objects(homelab_run: StackRun) -> list[dict[str, Any]]:
    return [obj for _, obj in kubernetes_objects(homelab_run)]


def _homelab_policies(homelab_run: StackRun) -> list[dict[str, Any]]:
    # Only objects of the homelab cluster (the Ollama remote policy goes to AWS).
    return [
        plain_object(r)
        for r in homelab_run.by_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if "remote" not in r.name
    ]


def test_every_app_namespace_denies_ingress_by_default(
    homelab_run: StackRun, homelab_objects: list[dict[str, Any]]
) -> None:
    policies = _homelab_policies(homelab_run)
    declared = {o["metadata"]["name"] for o in homelab_objects if o["kind"] == "Namespace"}
    assert {"open-webui", "llm", "gpu-validation", "fast-scratch", "monitoring"} <= declared
    for namespace in declared - set(NOT_APPS):
        deny = [
            p
            for p in policies
            if p["metadata"]["namespace"] == namespace
            and p["spec"]["podSelector"] == {}
            and p["spec"]["policyTypes"] == ["Ingress"]
            and not p["spec"].get("ingress")
        ]
        assert deny, f"namespace {namespace} has no default-deny ingress policy"
        stranger = ("default", {"app": "x"})
        assert not allowed(policies, src=stranger, dst=(namespace, {"any": "pod"}), port=80)
        # Pods of one namespace still talk to each other.
        assert allowed(policies, src=(namespace, {}), dst=(namespace, {"any": "pod"}), port=80)


def test_open_webui_is_reached_only_through_the_ingress_controller(
    homelab_run: StackRun,
) -> None:
    policies = _homelab_policies(homelab_run)
    deployment = homelab_run.one("kubernetes:apps/v1:Deployment", "open-webui-deployment")
    template = plain_object(deployment)["spec"]["template"]
    labels = template["metadata"]["labels"]
    (port,) = [p["containerPort"] for p in template["spec"]["containers"][0]["ports"]]
    webui = ("open-webui", labels)
    traefik = (TRAEFIK_NAMESPACE, dict(TRAEFIK_PODS))
    assert allowed(policies, src=traefik, dst=webui, port=port)
    assert not allowed(policies, src=traefik, dst=webui, port=port + 1)
    assert not allowed(
        policies, src=("jupyterhub", {"component": "singleuser-server"}), dst=webui, port=port
    )
    assert not allowed(
        policies, src=(TRAEFIK_NAMESPACE, {"k8s-app": "kube-dns"}), dst=webui, port=port
    )


def test_traefik_labels_are_the_packaged_charts() -> None:
    """The selector names the pods k3s's Traefik runs: its chart is named traefik and sets no
    nameOverride/instanceLabelOverride (k3s's packaged chart data)."""
    chart = UPSTREAM / "charts" / "k3s-packaged" / "traefik-34.2.1+up34.2.0"
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["name"] == "traefik"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert not values.get("nameOverride")
    assert not values.get("instanceLabelOverride")
    assert TRAEFIK_PODS["app.kubernetes.io/instance"] == f"traefik-{TRAEFIK_NAMESPACE}"


def test_offloaded_pods_get_no_homelab_api(homelab_run: StackRun) -> None:
    (liqo,) = [
        plain_object(r)
        for r in homelab_run.by_type("kubernetes:helm.sh/v3:Release")
        if r.name == "liqo-release"
    ]
    assert "--enable-apiserver-support=false" in liqo["values"]["virtualKubelet"]["extra"]["args"]
    deployment = plain_object(homelab_run.one("kubernetes:apps/v1:Deployment", "ollama-deployment"))
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["liqo.io/api-server-support"] == "disabled"
    assert template["spec"]["automountServiceAccountToken"] is False


def test_monitoring_admits_grafana_via_traefik_and_the_api_servers_calls_only(
    homelab_run: StackRun,
) -> None:
    policies = _homelab_policies(homelab_run)
    traefik = (TRAEFIK_NAMESPACE, dict(TRAEFIK_PODS))
    stranger = ("default", {"app": "x"})
    grafana = ("monitoring", monitoring_network.GRAFANA_PODS)
    operator = ("monitoring", monitoring_network.OPERATOR_PODS)
    prometheus = ("monitoring", {**monitoring_network.PROMETHEUS_PODS, "prometheus": "p"})
    alertmanager = ("monitoring", {"app.kubernetes.io/name": "alertmanager"})
    state_metrics = ("monitoring", {"app.kubernetes.io/name": "kube-state-metrics"})
    assert allowed(policies, src=traefik, dst=grafana, port=3000)
    assert not allowed(policies, src=traefik, dst=grafana, port=3001)
    assert not allowed(policies, src=stranger, dst=grafana, port=3000)
    # Inside the namespace: Grafana queries Prometheus, Prometheus scrapes and alerts.
    assert allowed(policies, src=grafana, dst=prometheus, port=9090)
    assert allowed(policies, src=prometheus, dst=state_metrics, port=8080)
    assert allowed(policies, src=prometheus, dst=alertmanager, port=9093)
    # The API server's calls (webhook, service proxy) come from a node address: admitted from
    # any source, on those ports of those pods only (network_policies.from_api_server).
    assert allowed(policies, src=stranger, dst=operator, port=10250)
    assert allowed(policies, src=stranger, dst=prometheus, port=9090)
    for dst, port in ((operator, 8080), (prometheus, 9091), (alertmanager, 9093)):
        assert not allowed(policies, src=stranger, dst=dst, port=port), (dst, port)
    assert not allowed(policies, src=traefik, dst=state_metrics, port=8080)


def test_monitoring_allows_name_the_charts_ports() -> None:
    chart = chart_data("kube-prometheus-stack", "88.5.3")
    assert chart is not None
    values = chart.values
    assert values["prometheusOperator"]["tls"]["internalPort"] == (
        monitoring_network.OPERATOR_WEBHOOK_PORT
    )
    assert values["prometheusOperator"]["admissionWebhooks"]["deployment"]["enabled"] is False
    assert values["prometheus"]["service"]["targetPort"] == monitoring_network.PROMETHEUS_PORT
    grafana = yaml.safe_load((chart.path / "charts" / "grafana" / "values.yaml").read_text())
    assert grafana["service"]["targetPort"] == monitoring_network.GRAFANA_PORT
