"""Nebula mesh model, validation and per-node config rendering (pure, no Pulumi).

Groups carried in host certificates (the firewall speaks only in these):

``lighthouse``    the AWS control node: lighthouse and relay for everyone
``aws``           nodes of the AWS k3s cluster
``homelab``       nodes of the homelab k3s cluster
``kubernetes``    every k3s node of either cluster
``gpu``           GPU workers
``liqo-gateway``  nodes that may carry the Liqo WireGuard tunnel between the clusters

Rendered configs use only keys Nebula 1.6 already knows (Debian's nebula, used in the tests) and
that current releases still read (https://github.com/slackhq/nebula/blob/v1.9.5/examples/config.yml).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import yaml

KNOWN_GROUPS = ("lighthouse", "aws", "homelab", "liqo-gateway", "admin")
"""Groups by site and purpose: ``aws`` (the AWS control node), ``homelab`` (every homelab VM),
``liqo-gateway`` (homelab nodes that may run Liqo's gateway client), ``admin`` (an operator's
machine on the mesh). Flannel masquerades a node's pods to the node's address, so a group is
what every pod on that node may do: rules stay narrow."""
K3S_API_PORT = 6443
KUBELET_PORT = 10250
# Prometheus's node exporter on the host network of each AWS node (prometheus-community/
# helm-charts charts/prometheus-node-exporter/values.yaml@prometheus-node-exporter-4.56.1
# service.port); not on the mesh itself: NodePorts (NODE_EXPORTER_NODEPORTS) lead to it.
NODE_EXPORTER_PORT = 9100
# k3s' default flannel backend is VXLAN on UDP 8472 (https://docs.k3s.io/installation/requirements).
FLANNEL_VXLAN_PORT = 8472
# Liqo gateway server, exposed as a NodePort over the overlay (issue: federation); any fixed port
# in the NodePort range works, it only has to match the Liqo peering.
LIQO_GATEWAY_NODEPORT = 30840
OLLAMA_PORT = 11434
SSH_PORT = 22
# gpu-waker, the token-checked proxy in front of Ollama on the AWS control node (issue #15): the
# only way into Ollama from the homelab. Ollama's own port is never opened on the mesh: its pod
# is reached through Liqo's tunnel, and only the proxy may call it (AWS-side NetworkPolicy).
GPU_WAKER_PORT = 11435
# The AWS GPU worker's DCGM exporter as a NodePort of the AWS cluster, scraped by the homelab
# Prometheus on the control node's overlay address (components/platform/dcgm_exporter.py).
DCGM_EXPORTER_NODEPORT = 30940
# Node exporters of the AWS control node and GPU worker, one NodePort each, scraped the same way
# (components/platform/node_exporter.py).
NODE_EXPORTER_NODEPORTS = {"control-node": 30941, "gpu-worker": 30942}
# Liqo's default pod-network CIDRs for remapping (liqotech/liqo@v1.2.0 deployments/liqo/values.yaml:
# ipam.externalCIDR 10.70.0.0/16, ipam.internalCIDR 10.80.0.0/16): routes Liqo installs on every
# node, never a path Nebula may dial a peer on.
LIQO_EXTERNAL_CIDR = "10.70.0.0/16"
LIQO_INTERNAL_CIDR = "10.80.0.0/16"
LIGHTHOUSE_INTERVAL_SECONDS = 15
"""How often hosts report their addresses (Nebula's default is 10, slackhq/nebula@v1.9.5
lighthouse.go); 60 let a changed home address reach the lighthouse up to a minute late."""
TUN_DEVICE = "nebula1"
PKI_DIR = "/etc/nebula"

Role = Literal["lighthouse", "relay", "host"]
Proto = Literal["tcp", "udp", "icmp", "any"]


@dataclass(frozen=True)
class FirewallRule:
    """Inbound allow rule. ``from_groups`` must ALL be on the peer's cert (Nebula's ``groups:``
    is an AND); empty means any mesh member. The rule is rendered only on nodes carrying ALL of
    ``applies_to`` (empty: every node)."""

    port: int | str
    proto: Proto
    from_groups: tuple[str, ...] = ()
    applies_to: tuple[str, ...] = ()
    why: str = ""


@dataclass(frozen=True)
class MeshNode:
    name: str
    overlay_ip: ipaddress.IPv4Address
    groups: tuple[str, ...]
    role: Role = "host"
    config_key: str = ""
    """Where the operator configured this node (e.g. ``hybridgpu:homelab.gpuWorkers[0]``)."""
    unsafe_networks: tuple[ipaddress.IPv4Network, ...] = ()
    local_cidr: ipaddress.IPv4Network | None = None
    """The node's own network (LAN or VPC subnet): the only local addresses it advertises to the
    lighthouse and the peers' addresses it prefers when they share it."""


@dataclass(frozen=True)
class UnsafeRoute:
    route: ipaddress.IPv4Network
    via: ipaddress.IPv4Address


@dataclass(frozen=True)
class MeshSettings:
    overlay_cidr: ipaddress.IPv4Network
    mtu: int = 1300
    listen_port: int = 4242
    tun_device: str = TUN_DEVICE
    pki_dir: str = PKI_DIR
    unsafe_routes: tuple[UnsafeRoute, ...] = ()
    other_ranges: Mapping[str, ipaddress.IPv4Network] = field(default_factory=dict)
    """Every other range of the system (config key -> CIDR); the overlay must miss them all."""
    never_dial: tuple[ipaddress.IPv4Network, ...] = ()
    """Ranges a peer's address may never be in (pod, service and Liqo ranges): with Liqo's
    routes in place a handshake there would run Nebula inside Liqo inside Nebula."""


def default_policy(liqo_gateway_port: int = LIQO_GATEWAY_NODEPORT) -> tuple[FirewallRule, ...]:
    """Least-privilege inbound rules: each opens exactly the traffic that uses the mesh.

    k3s of each cluster runs on its own LAN/VPC, so no kubelet, flannel or API traffic of a
    cluster crosses the mesh; what does: the homelab's Liqo control plane to the AWS API, Liqo's
    WireGuard tunnel to the gateway on the AWS control node, and an operator's admin access."""
    return (
        FirewallRule("any", "icmp", why="ping from any mesh member, for diagnosis"),
        FirewallRule(
            K3S_API_PORT, "tcp", ("homelab",), ("aws",), "AWS k3s API for the homelab's Liqo"
        ),
        FirewallRule(
            liqo_gateway_port, "udp", ("liqo-gateway",), ("aws",), "Liqo WireGuard gateway"
        ),
        FirewallRule(
            GPU_WAKER_PORT,
            "tcp",
            ("homelab",),
            ("aws",),
            "gpu-waker (Ollama behind a token, wakes the GPU worker), for the homelab only",
        ),
        FirewallRule(
            DCGM_EXPORTER_NODEPORT,
            "tcp",
            ("homelab",),
            ("aws",),
            "AWS GPU worker's DCGM exporter (NodePort), scraped by the homelab Prometheus",
        ),
        *(
            FirewallRule(
                port,
                "tcp",
                ("homelab",),
                ("aws",),
                f"node exporter of the AWS {node} (NodePort), scraped by the homelab Prometheus",
            )
            for node, port in NODE_EXPORTER_NODEPORTS.items()
        ),
        FirewallRule(K3S_API_PORT, "tcp", ("admin",), ("aws",), "AWS k3s API for the operator"),
        FirewallRule(SSH_PORT, "tcp", ("admin",), ("aws",), "SSH for the operator"),
    )


def _fail(where: str, message: str) -> None:
    raise ValueError(f"{where}: {message}" if where else message)


def validate_mesh(  # noqa: PLR0912 - one flat list of independent checks reads best
    settings: MeshSettings,
    nodes: Sequence[MeshNode],
    policy: Sequence[FirewallRule],
    *,
    lighthouse_elsewhere: bool = False,
) -> None:
    """Reject a mesh Nebula would run badly or not at all; messages name the config key.

    ``lighthouse_elsewhere``: the nodes are one stack's part of a mesh whose lighthouse another
    stack declares (the homelab joins aws-gpu's lighthouse)."""
    overlay = settings.overlay_cidr
    for name, other in settings.other_ranges.items():
        if overlay.overlaps(other):
            _fail("nebulaOverlayCidr", f"{overlay} overlaps {name} ({other})")
    if not 1200 <= settings.mtu <= 9001:
        _fail("nebulaMtu", f"{settings.mtu} is outside 1200..9001")
    by_ip: dict[ipaddress.IPv4Address, MeshNode] = {}
    by_name: dict[str, MeshNode] = {}
    for node in nodes:
        where = f"{node.config_key}.overlayIp" if node.config_key else node.name
        if node.overlay_ip not in overlay or node.overlay_ip in (
            overlay.network_address,
            overlay.broadcast_address,
        ):
            _fail(where, f"{node.overlay_ip} is not a host address of the overlay {overlay}")
        if node.overlay_ip in by_ip:
            _fail(
                where,
                f"{node.overlay_ip} is already the overlay IP of '{by_ip[node.overlay_ip].name}'",
            )
        if node.name in by_name:
            _fail(node.config_key or node.name, f"node name '{node.name}' is used twice")
        unknown = sorted(set(node.groups) - set(KNOWN_GROUPS))
        if unknown:
            _fail(
                node.config_key or node.name,
                f"unknown groups {unknown}; known: {list(KNOWN_GROUPS)}",
            )
        by_ip[node.overlay_ip] = node
        by_name[node.name] = node
    if nodes and not lighthouse_elsewhere and not any(n.role == "lighthouse" for n in nodes):
        _fail("", "the mesh has hosts but no lighthouse")
    for i, rule in enumerate(policy):
        unknown = sorted(set(rule.from_groups + rule.applies_to) - set(KNOWN_GROUPS))
        if unknown:
            _fail(f"firewall rule [{i}] ({rule.why or rule.port})", f"unknown groups {unknown}")
    for route in settings.unsafe_routes:
        if route.via not in by_ip:
            _fail(
                "unsafeRoutes", f"route {route.route} goes via {route.via}, which is no mesh node"
            )


def inbound_rules(node: MeshNode, policy: Sequence[FirewallRule]) -> list[dict[str, object]]:
    """The Nebula ``firewall.inbound`` list of ``node``."""
    rules: list[dict[str, object]] = []
    for rule in policy:
        if not set(rule.applies_to) <= set(node.groups):
            continue
        entry: dict[str, object] = {"port": rule.port, "proto": rule.proto}
        if not rule.from_groups:
            entry["host"] = "any"
        elif len(rule.from_groups) == 1:
            entry["group"] = rule.from_groups[0]
        else:
            entry["groups"] = list(rule.from_groups)
        rules.append(entry)
    return rules


def render_node_config(
    node: MeshNode,
    settings: MeshSettings,
    lighthouses: Mapping[str, Sequence[str]],
    policy: Sequence[FirewallRule],
) -> str:
    """config.yml of one node. ``lighthouses``: lighthouse overlay IP -> public ``host:port``s."""
    own_ip = str(node.overlay_ip)
    others = {ip: list(endpoints) for ip, endpoints in sorted(lighthouses.items()) if ip != own_ip}
    is_lighthouse = node.role == "lighthouse"
    config: dict[str, object] = {
        "pki": {
            "ca": f"{settings.pki_dir}/ca.crt",
            "cert": f"{settings.pki_dir}/host.crt",
            "key": f"{settings.pki_dir}/host.key",
        },
        "static_host_map": others,
        "lighthouse": {
            "am_lighthouse": is_lighthouse,
            "interval": LIGHTHOUSE_INTERVAL_SECONDS,
            "hosts": [] if is_lighthouse else list(others),
            # Advertise only the node's LAN/VPC address (an all-allow list denies the rest:
            # cni0, flannel, Liqo's interfaces); public addresses the lighthouse learns itself.
            **(
                {"local_allow_list": {str(node.local_cidr): True}}
                if node.local_cidr is not None
                else {}
            ),
            # Never dial a peer on a pod, service or Liqo address (all-deny list: the rest,
            # incl. 0.0.0.0/0 for roaming, stays allowed).
            **(
                {"remote_allow_list": {str(r): False for r in settings.never_dial}}
                if settings.never_dial
                else {}
            ),
        },
        "listen": {"host": "0.0.0.0", "port": settings.listen_port},  # noqa: S104 - UDP on all NICs
        # Peers on the same LAN/VPC talk directly rather than through public addresses.
        **({"preferred_ranges": [str(node.local_cidr)]} if node.local_cidr is not None else {}),
        # Keep NAT mappings open and answer punches (https://nebula.defined.net/docs/config/punchy/).
        "punchy": {"punch": True, "respond": True},
        # Some home routers (and CGNAT) defeat hole punching: everyone may fall back to relaying
        # through the lighthouse; a relay must be listed by the hosts, not only set am_relay
        # (slackhq/nebula#1192).
        "relay": {
            "am_relay": node.role in ("lighthouse", "relay"),
            "use_relays": True,
            "relays": [] if node.role != "host" else list(others),
        },
        "tun": {
            "disabled": False,
            "dev": settings.tun_device,
            "drop_local_broadcast": False,
            "drop_multicast": False,
            "tx_queue": 500,
            "mtu": settings.mtu,
            "routes": [],
            "unsafe_routes": [
                {"route": str(r.route), "via": str(r.via)}
                for r in settings.unsafe_routes
                if r.via != node.overlay_ip
            ],
        },
        "logging": {"level": "info", "format": "text"},
        "firewall": {
            "outbound_action": "drop",
            "inbound_action": "drop",
            "conntrack": {"tcp_timeout": "12m", "udp_timeout": "3m", "default_timeout": "10m"},
            "outbound": [{"port": "any", "proto": "any", "host": "any"}],
            "inbound": inbound_rules(node, policy),
        },
    }
    header = f"# Nebula config of {node.name} ({node.role}), rendered by hybridgpu; do not edit.\n"
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


OPERATOR_TUN_DEVICE = "hybridgpu0"
"""The operator machine's tun device: distinct from a node's, so it never clashes with another
Nebula the machine runs."""


def render_operator_config(
    node: MeshNode,
    settings: MeshSettings,
    lighthouses: Mapping[str, Sequence[str]],
    policy: Sequence[FirewallRule],
    pki_dir: str,
) -> str:
    """config.yml of an operator's machine: the node config with the machine's own PKI folder,
    a random UDP port (a laptop behind NAT or roaming needs no fixed one; Nebula picks one for
    port 0, "recommended for roaming nodes": slackhq/nebula examples/config.yml@v1.9.5) and no
    advertised LAN."""
    machine = replace(
        settings, pki_dir=pki_dir, listen_port=0, tun_device=OPERATOR_TUN_DEVICE, unsafe_routes=()
    )
    return render_node_config(replace(node, local_cidr=None), machine, lighthouses, policy)
