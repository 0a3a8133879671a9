"""The MTU plan: every encapsulation on the path from a homelab pod to Ollama on AWS, and the
check that each inner packet fits its outer path (pure).

Path of an Ollama request (Open WebUI pod -> Ollama pod offloaded to AWS), innermost last::

    homelab pod --Geneve--> Liqo gateway client --WireGuard--> (Nebula tun) --UDP--> internet
    --> AWS control node Nebula --> Liqo gateway server --Geneve (in flannel VXLAN)--> worker pod

k3s of each site runs on its own network (homelab LAN, AWS VPC): flannel's VXLAN wraps pod traffic
inside a site only, never inside Nebula. So the legs are independent and each is checked.
"""

from __future__ import annotations

from dataclasses import dataclass

# IPv4 20 + UDP 8 + Nebula header 16 (slackhq/nebula@v1.9.5 header/header.go, Len = 16) + AEAD tag
# 16 (AES-GCM and ChaCha20-Poly1305 both).
NEBULA_OVERHEAD = 60
# IPv4 20 + UDP 8 + WireGuard data header 16 + tag 16: what Liqo's --mtu leaves room for
# (https://docs.liqo.io/en/stable/advanced/peering/inter-cluster-network.html).
WIREGUARD_OVERHEAD = 60
# Outer IPv4 20 + UDP 8 + Geneve 8 + inner Ethernet 14: Liqo uses the same --mtu for its Geneve
# links between nodes and its gateway (liqotech/liqo@v1.2.0 internal-network/server-controller/
# server_controller.go: internalFabric.Spec.MTU = gwServer.Spec.MTU).
GENEVE_OVERHEAD = 50
# flannel's VXLAN backend: pods get the node's MTU minus 50 (flannel-io/flannel
# pkg/backend/vxlan/vxlan_network.go, encapOverhead = 50).
VXLAN_OVERHEAD = 50
INTERNET_PATH_MTU = 1460
"""The smallest common home uplink: DS-Lite (IPv4 inside IPv6) leaves 1460; PPPoE 1492."""
HOMELAB_LAN_MTU = 1500
AWS_VPC_MTU = 9001
"""EC2 instances in one VPC use jumbo frames
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/network_mtu.html)."""
LIQO_MIN_MTU = 1200
"""Floor for the nested Liqo tunnel: below it TCP segments shrink enough to hurt streaming
throughput and some UDP stacks (QUIC, RFC 9000 section 14) stop."""


@dataclass(frozen=True)
class Leg:
    name: str
    inner_mtu: int
    overhead: int
    outer_mtu: int
    why: str

    @property
    def fits(self) -> bool:
        return self.inner_mtu + self.overhead <= self.outer_mtu


def liqo_mtu(nebula_mtu: int) -> int:
    """Liqo's --mtu: its WireGuard tunnel rides inside Nebula's tun device."""
    return nebula_mtu - WIREGUARD_OVERHEAD


def mtu_plan(nebula_mtu: int) -> list[Leg]:
    inner = liqo_mtu(nebula_mtu)
    return [
        Leg(
            "nebula", nebula_mtu, NEBULA_OVERHEAD, INTERNET_PATH_MTU, "Nebula's UDP on the internet"
        ),
        Leg("liqo-wireguard", inner, WIREGUARD_OVERHEAD, nebula_mtu, "Liqo's WireGuard in Nebula"),
        Leg(
            "liqo-geneve-homelab",
            inner,
            GENEVE_OVERHEAD,
            HOMELAB_LAN_MTU - VXLAN_OVERHEAD,
            "Liqo's Geneve in the homelab pod network (flannel VXLAN on the LAN)",
        ),
        Leg(
            "liqo-geneve-aws",
            inner,
            GENEVE_OVERHEAD,
            AWS_VPC_MTU - VXLAN_OVERHEAD,
            "Liqo's Geneve in the AWS pod network (flannel VXLAN on the VPC)",
        ),
    ]


def mtu_problems(nebula_mtu: int) -> list[str]:
    problems = [
        f"{leg.why}: {leg.inner_mtu} + {leg.overhead} bytes of headers exceed {leg.outer_mtu}"
        for leg in mtu_plan(nebula_mtu)
        if not leg.fits
    ]
    if liqo_mtu(nebula_mtu) < LIQO_MIN_MTU:
        problems.append(
            f"it leaves {liqo_mtu(nebula_mtu)} bytes for the Liqo WireGuard tunnel inside Nebula "
            f"({WIREGUARD_OVERHEAD} bytes overhead), below its floor of {LIQO_MIN_MTU}"
        )
    return problems


ALLOWED_NEBULA_MTU = (LIQO_MIN_MTU + WIREGUARD_OVERHEAD, INTERNET_PATH_MTU - NEBULA_OVERHEAD)
"""The range every leg fits in: 1260..1400."""
