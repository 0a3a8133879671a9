"""The homelab k3s bootstrap: command graph, secrets, rendered configs, real shellcheck."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.k3s.config import (
    K3sClusterSettings,
    K3sNode,
    render_install_script,
    render_node_config,
    render_uninstall_script,
)
from components.kube.labels import CONTROL_PLANE_TAINT
from tests.real_tools import shellcheck
from tools import mocks, offline
from tools.mocks import redact
from tools.offline import StackRun

COMMAND = "command:remote:Command"
SETTINGS = K3sClusterSettings(
    version="v1.33.5+k3s1",
    api_endpoint="k3s.lab.example",
    first_server_ip="192.168.10.21",
    pod_cidr="10.42.0.0/16",
    service_cidr="10.43.0.0/16",
    cluster_dns="10.43.0.10",
)
FIRST = K3sNode("cp-1", "192.168.10.21", "first-server")
JOINER = K3sNode("cp-2", "192.168.10.22", "server")
AGENT = K3sNode("gpu-1", "192.168.10.31", "agent", ("node-type=gpu", "gpu-type=nvidia-a100"))


def _installs(run: StackRun) -> dict[str, mocks.Registration]:
    prefix, suffix = "homelab-k3s-", "-install"
    return {
        r.name.removeprefix(prefix).removesuffix(suffix): r
        for r in run.by_type(COMMAND)
        if r.name.startswith(prefix) and r.name.endswith(suffix)
    }


def _depends(run: StackRun, reg: mocks.Registration, target: mocks.Registration) -> bool:
    by_urn, seen, todo = run.by_urn(), set(), [reg.urn]
    while todo:
        current = by_urn.get(todo.pop())
        if current is None:
            continue
        for dep in current.dependencies:
            if dep == target.urn:
                return True
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return False


def test_command_graph(homelab_run: StackRun) -> None:
    config = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    servers = [vm["name"] for vm in config["controlPlanes"]]
    agents = [vm["name"] for vm in config["gpuWorkers"]]
    installs = _installs(homelab_run)
    assert set(installs) == {*servers, *agents}
    first = installs[servers[0]]
    assert not any(_depends(homelab_run, first, installs[n]) for n in [*servers[1:], *agents])
    for name in servers[1:]:
        assert _depends(homelab_run, installs[name], first), f"{name} must join after the first"
    for name in agents:
        assert first.urn in installs[name].dependencies
        for other in agents:
            if other != name:
                assert not _depends(homelab_run, installs[name], installs[other])
    for reg in installs.values():
        assert reg.delete_before_replace, "a replacement must not uninstall the new k3s"
        assert reg.plain_inputs["update"] == reg.plain_inputs["create"]


def test_token_ssh_key_and_kubeconfig_stay_secret(homelab_run: StackRun) -> None:
    password = homelab_run.one("random:index/randomPassword:RandomPassword", "k3s-token")
    installs = _installs(homelab_run)
    for reg in installs.values():
        assert "stdin" in reg.secret_inputs
        assert any(p.startswith("connection") for p in reg.secret_inputs)
        assert reg.plain_inputs["logging"] == "stderr"
    fetch = next(r for r in homelab_run.by_type(COMMAND) if r.name.endswith("kubeconfig-read"))
    assert fetch.plain_inputs["logging"] == "none"
    assert "stdout" in fetch.additional_secret_outputs
    assert "kubeconfig" in homelab_run.secret_exports
    providers = homelab_run.by_type("pulumi:providers:kubernetes")
    assert {p.name for p in providers} == {"homelab-k8s", "aws-gpu-k8s"}
    assert all("kubeconfig" in p.secret_inputs for p in providers)
    for reg in homelab_run.registrations:
        shown = json.dumps(redact(reg.inputs), default=str)
        assert "mock-secret-" not in shown
        assert "client-key-data" not in shown
    assert password.name == "k3s-token"


def test_kubeconfig_points_at_the_api_endpoint(homelab_run: StackRun) -> None:
    config = yaml.safe_load(homelab_run.exports["kubeconfig"])
    endpoint = homelab_run.exports["k3sApiEndpoint"]
    assert [c["cluster"]["server"] for c in config["clusters"]] == [endpoint]


def test_rendered_configs_carry_the_right_keys_per_role() -> None:
    first = yaml.safe_load(render_node_config(FIRST, SETTINGS))
    joiner = yaml.safe_load(render_node_config(JOINER, SETTINGS))
    agent = yaml.safe_load(render_node_config(AGENT, SETTINGS))
    assert first["cluster-init"] is True
    assert "server" not in first
    assert joiner["server"] == agent["server"] == "https://192.168.10.21:6443"
    assert "cluster-init" not in joiner
    for server in (first, joiner):
        assert "k3s.lab.example" in server["tls-san"]
        assert server["cluster-cidr"] == "10.42.0.0/16"
        assert server["service-cidr"] == "10.43.0.0/16"
        assert server["node-taint"] == [CONTROL_PLANE_TAINT]
        assert server["write-kubeconfig-mode"] == "0600"
    assert agent["node-label"] == ["node-type=gpu", "gpu-type=nvidia-a100"]
    assert "node-taint" not in agent
    assert "cluster-cidr" not in agent
    for config in (first, joiner, agent):
        assert "token" not in config, "the token lives in token-file only"
        assert config["token-file"] == "/etc/rancher/k3s/cluster-token"


@pytest.mark.parametrize("node", [FIRST, JOINER, AGENT], ids=lambda n: n.role)
def test_scripts_pass_shellcheck(node: K3sNode, tmp_path: Path) -> None:
    script = render_install_script(node, SETTINGS)
    shellcheck(script, tmp_path, "install.sh")
    shellcheck(render_uninstall_script(node), tmp_path, "uninstall.sh")
    assert "INSTALL_K3S_VERSION=v1.33.5+k3s1" in script
    assert "raw.githubusercontent.com/k3s-io/k3s/v1.33.5+k3s1/install.sh" in script
    assert "set -x" not in script


def test_planned_scripts_pass_shellcheck(homelab_run: StackRun, tmp_path: Path) -> None:
    for name, reg in _installs(homelab_run).items():
        shellcheck(reg.plain_inputs["create"], tmp_path, f"{name}.sh")
        shellcheck(reg.plain_inputs["delete"], tmp_path, f"{name}-delete.sh")
