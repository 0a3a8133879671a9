"""Every Nebula inbound rule opens a port something listens on, on the hosts the rule applies
to: a rule nothing answers is either dead (the 11434 and homelab 30840 rules the network review
found) or a port waiting for whatever starts listening next. Listeners are derived from what the
program itself configures on each node (k3s config, gpu-waker's environment, the Liqo peering,
sshd), never from the firewall policy."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import yaml

from tools.offline import StackRun

CONTROL_FILES = "/hybridgpu/aws-gpu/control-node/files/"
Listener = tuple[int, str]


def _control_file(run: StackRun, name: str) -> str:
    (reg,) = [
        r
        for r in run.by_type("aws:ssm/parameter:Parameter")
        if r.plain_inputs["name"] == CONTROL_FILES + name
    ]
    return str(reg.plain_inputs["value"])


def _k3s_server_listeners(config: dict[str, Any]) -> set[Listener]:
    """A k3s server serves its API on all addresses unless ``bind-address`` narrows it
    (https://docs.k3s.io/cli/server: --bind-address "k3s bind address (default: 0.0.0.0)");
    ``https-listen-port`` moves it."""
    assert "bind-address" not in config, "narrowed API address: check it is the overlay IP"
    return {(int(config.get("https-listen-port", 6443)), "tcp")}


def control_node_listeners(aws_gpu_run: StackRun, homelab_run: StackRun) -> set[Listener]:
    listeners: set[Listener] = set()
    k3s = yaml.safe_load(_control_file(aws_gpu_run, "k3s/config.yaml"))
    listeners |= _k3s_server_listeners(k3s)
    # sshd on its default port: the node's host key is one of its files and nothing sets Port.
    assert _control_file(aws_gpu_run, "ssh/host-key").strip()
    listeners.add((22, "tcp"))
    # gpu-waker binds the address and port of its environment file.
    (waker,) = [
        r for r in aws_gpu_run.by_type("command:remote:Command") if r.name == "gpu-waker-install"
    ]
    env = dict(
        re.findall(r"^GPU_WAKER_LISTEN_(HOST|PORT)=(\S+)$", waker.plain_inputs["create"], re.M)
    )
    if env["HOST"] in ("0.0.0.0", str(aws_gpu_run.exports["controlNodeOverlayIp"])):  # noqa: S104
        listeners.add((int(env["PORT"]), "tcp"))
    # Liqo's gateway server on the provider is a UDP NodePort (the homelab's liqoctl peer sets
    # it); kube-proxy serves a NodePort on every address of every node of the cluster
    # (nodePortAddresses is unset in k3s).
    peering = homelab_run.one("command:local:Command", "liqo-peering-liqoctl")
    script = str(peering.plain_inputs["create"])
    assert "--gw-server-service-type NodePort" in script
    (nodeport,) = re.findall(r"--gw-server-service-nodeport (\d+)", script)
    listeners.add((int(nodeport), "udp"))
    # Every NodePort Service the aws-gpu stack declares (the DCGM exporter's), served the same way.
    for service in aws_gpu_run.by_type("kubernetes:core/v1:Service"):
        spec = service.plain_inputs.get("spec", {})
        if spec.get("type") == "NodePort":
            for port in spec["ports"]:
                listeners.add((int(port["nodePort"]), str(port.get("protocol", "TCP")).lower()))
    # And every chart release whose own Service is a NodePort (the node exporters: the chart's
    # service.type/nodePort, TCP; prometheus-community/helm-charts
    # charts/prometheus-node-exporter/templates/service.yaml@prometheus-node-exporter-4.56.1).
    for release in aws_gpu_run.by_type("kubernetes:helm.sh/v3:Release"):
        service = release.plain_inputs.get("values", {}).get("service", {})
        if service.get("type") == "NodePort":
            listeners.add((int(service["nodePort"]), "tcp"))
    return listeners


def _homelab_nebula_configs(homelab_run: StackRun) -> dict[str, dict[str, Any]]:
    configs = {}
    for install in homelab_run.by_type("command:remote:Command"):
        if not install.name.endswith("-nebula-install"):
            continue
        for line in install.plain_inputs["stdin"].splitlines():
            name, _mode, content = line.split(" ")
            if name == "config.yml":
                configs[install.name.removesuffix("-nebula-install")] = yaml.safe_load(
                    base64.b64decode(content).decode()
                )
    return configs


def port_rules(config: dict[str, Any]) -> list[Listener]:
    """The (port, proto) of each inbound rule that opens a port (ICMP and 'any' excluded)."""
    rules = []
    for rule in config["firewall"]["inbound"]:
        if rule["proto"] == "icmp":
            continue
        assert rule["port"] != "any", f"rule opens every port: {rule}"
        assert rule["proto"] != "any", f"rule opens every protocol: {rule}"
        rules.append((int(rule["port"]), rule["proto"]))
    return rules


def test_every_control_node_rule_has_a_listener(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    config = yaml.safe_load(_control_file(aws_gpu_run, "nebula/config.yml"))
    listeners = control_node_listeners(aws_gpu_run, homelab_run)
    rules = port_rules(config)
    assert rules, "the control node opens ports on the mesh"
    dead = [rule for rule in rules if rule not in listeners]
    assert not dead, f"Nebula rules nothing listens on (control node): {dead}"
    # The ports the review found without a listener stay closed.
    assert (11434, "tcp") not in rules


def test_homelab_nodes_open_no_port(homelab_run: StackRun) -> None:
    """Homelab nodes only dial out (Liqo's gateway client, k3s of their own LAN); Nebula is
    stateful, so replies need no inbound rule, and nothing on the mesh calls a homelab node."""
    configs = _homelab_nebula_configs(homelab_run)
    assert configs
    for node, config in configs.items():
        assert port_rules(config) == [], node


def test_a_rule_without_listener_is_caught(aws_gpu_run: StackRun, homelab_run: StackRun) -> None:
    listeners = control_node_listeners(aws_gpu_run, homelab_run)
    config = yaml.safe_load(_control_file(aws_gpu_run, "nebula/config.yml"))
    config["firewall"]["inbound"].append({"port": 11434, "proto": "tcp", "group": "homelab"})
    with pytest.raises(AssertionError):
        assert all(rule in listeners for rule in port_rules(config))
