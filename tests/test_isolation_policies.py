"""Homelab isolation as the run records it: every app namespace the program declares denies
ingress by default with only the allows it needs (evaluated here with NetworkPolicy semantics on
the recorded objects), and pods offloaded to AWS get no homelab API access."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from components.kube.network_policies import TRAEFIK_NAMESPACE, TRAEFIK_PODS
from tests.upstream_data import UPSTREAM, kubernetes_objects, plain_object
from tools.offline import StackRun

NAME_LABEL = "kubernetes.io/metadata.name"
# Namespaces the homelab declares that hold no app: none today (every one is an app's).
NOT_APPS: dict[str, str] = {
    # Not default-deny yet: the API server calls the Prometheus Operator's admission webhook and
    # Grafana is served through Traefik; the allows for both are not built (README, Monitoring).
    "monitoring": "kube-prometheus-stack's webhook and Grafana's ingress need allows first",
}


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
    assert {"open-webui", "llm", "gpu-validation", "fast-scratch"} <= declared
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
