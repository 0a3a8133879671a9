"""The homelab's way in: MetalLB hands LoadBalancer Services addresses from a LAN pool (layer 2:
the elected node answers ARP, another takes over when it fails), and k3s's Traefik gets a fixed
one of them, the address the web apps' DNS names point at.

k3s's own servicelb stays disabled (MetalLB's guide for k3s: two controllers would fight over
every LoadBalancer Service). Traefik is k3s's packaged chart; it is configured through the
``HelmChartConfig`` k3s merges into it
(https://docs.k3s.io/helm#customizing-packaged-components-with-helmchartconfig), here only its
Service annotation ``metallb.io/loadBalancerIPs`` (metallb.universe.tf/usage, "Requesting
specific IPs"; ``service.annotations`` in k3s's traefik-34.2.1+up34.2.0 values).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pulumi
import yaml

from components.kube.charts import METALLB, helm_release
from components.kube.objects import Manifest, declare

NAMESPACE = "metallb-system"
POOL = "lan"
TRAEFIK_CHART = "traefik"  # k3s's packaged HelmChart in kube-system
LOAD_BALANCER_IPS_ANNOTATION = "metallb.io/loadBalancerIPs"


def render_metallb_values() -> dict[str, Any]:
    """Chart values (charts/metallb/values.yaml of 0.16.1): layer 2 only, so no BGP backend
    (``frrk8s`` is on by default for BGP)."""
    return {
        "frrk8s": {"enabled": False},
        "speaker": {"frr": {"enabled": False}},
    }


def render_pool(first: str, last: str) -> Manifest:
    """IPAddressPool (metallb.io/v1beta1, config/crd/bases/metallb.io_ipaddresspools.yaml)."""
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": POOL, "namespace": NAMESPACE},
        "spec": {"addresses": [f"{first}-{last}"], "autoAssign": True},
    }


def render_l2_advertisement() -> Manifest:
    """L2Advertisement of the pool (config/crd/bases/metallb.io_l2advertisements.yaml)."""
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": POOL, "namespace": NAMESPACE},
        "spec": {"ipAddressPools": [POOL]},
    }


def render_traefik_config(ingress_address: str) -> Manifest:
    values = {"service": {"annotations": {LOAD_BALANCER_IPS_ANNOTATION: ingress_address}}}
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChartConfig",
        "metadata": {"name": TRAEFIK_CHART, "namespace": "kube-system"},
        "spec": {"valuesContent": yaml.safe_dump(values, sort_keys=False)},
    }


@dataclass(frozen=True)
class LanLoadBalancerArgs:
    first_address: str
    last_address: str
    ingress_address: str
    """Traefik's address; inside the pool."""

    def __post_init__(self) -> None:
        first, last, ingress = (
            ipaddress.IPv4Address(a)
            for a in (self.first_address, self.last_address, self.ingress_address)
        )
        if not first <= ingress <= last:
            raise ValueError(f"ingress address {ingress} is outside {first}-{last}")


class LanLoadBalancer(pulumi.ComponentResource):
    ingress_address: str

    def __init__(
        self, name: str, args: LanLoadBalancerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:LanLoadBalancer", name, None, opts)
        self.values = render_metallb_values()
        self.release = helm_release(
            f"{name}-metallb",
            release_name="metallb",
            chart=METALLB,
            namespace=NAMESPACE,
            values=self.values,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The custom resources need the chart's CRDs and its validating webhook up.
        after_chart = pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        pool = declare(
            f"{name}-pool", render_pool(args.first_address, args.last_address), after_chart
        )
        declare(f"{name}-l2", render_l2_advertisement(), after_chart)
        # After the pool: Traefik's Service asks for its address as soon as it is re-rendered.
        declare(
            f"{name}-traefik",
            render_traefik_config(args.ingress_address),
            pulumi.ResourceOptions(parent=self, depends_on=[pool]),
        )
        self.ingress_address = args.ingress_address
        self.register_outputs({"ingressAddress": self.ingress_address})
