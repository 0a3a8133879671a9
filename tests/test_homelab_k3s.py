"""The homelab k3s bootstrap: command graph, secrets, rendered configs, real shellcheck."""

from __future__ import annotations

import base64
import itertools
import json
import re
from pathlib import Path

import pytest
import yaml

from components.k3s import scripts
from components.k3s.config import (
    K3sClusterSettings,
    K3sNode,
    render_install_script,
    render_node_config,
    render_uninstall_script,
    server_taints,
)
from components.k3s.vip import VipSettings
from components.kube.labels import CONTROL_PLANE_TAINT
from tests.k3s_configs import script_parameters
from tests.real_tools import shellcheck
from tools import mocks, offline
from tools.mocks import redact
from tools.offline import StackRun

COMMAND = "command:remote:Command"
VM = "proxmoxve:index/vmLegacy:VmLegacy"
VIP = "192.168.10.20"
SETTINGS = K3sClusterSettings(
    version="v1.33.5+k3s1",
    api_endpoint=VIP,
    pod_cidr="10.42.0.0/16",
    service_cidr="10.43.0.0/16",
    cluster_dns="10.43.0.10",
    vip=VipSettings(VIP),
)
FIRST = K3sNode("cp-1", "192.168.10.21", "first-server", taints=server_taints())
JOINER = K3sNode("cp-2", "192.168.10.22", "server", taints=server_taints())
AGENT = K3sNode(
    "gpu-1",
    "192.168.10.31",
    "agent",
    labels=("node-type=gpu", "gpu-type=nvidia-a100"),
    scratch_mount="/mnt/scratch",
)


def _config() -> dict:
    return offline.stack_config_file("homelab")["hybridgpu:homelab"]


def commands(run: StackRun, kind: str) -> dict[str, mocks.Registration]:
    """``homelab-k3s-<node>-<kind>`` commands by node name."""
    prefix, suffix = "homelab-k3s-", f"-{kind}"
    return {
        r.name.removeprefix(prefix).removesuffix(suffix): r
        for r in run.by_type(COMMAND)
        if r.name.startswith(prefix) and r.name.endswith(suffix)
    }


def depends(run: StackRun, reg: mocks.Registration, target: mocks.Registration) -> bool:
    """Whether ``reg`` waits for ``target`` (directly or through other resources)."""
    by_urn, seen, todo = run.by_urn(), set(), [reg.urn]
    while todo:
        current = by_urn.get(todo.pop())
        if current is None:
            continue
        for dep in {
            *current.dependencies,
            *(u for us in current.property_dependencies.values() for u in us),
        }:
            if dep == target.urn:
                return True
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return False


def test_nodes_change_one_at_a_time_servers_first(homelab_run: StackRun) -> None:
    config = _config()
    servers = [vm["name"] for vm in config["controlPlanes"]]
    agents = [vm["name"] for vm in config["gpuWorkers"]]
    installs = commands(homelab_run, "install")
    memberships = commands(homelab_run, "membership")
    drains = commands(homelab_run, "drain")
    assert set(installs) == set(memberships) == {*servers, *agents}
    assert set(drains) == set(agents), "every agent, and only agents, is drained first"
    order = [*servers, *agents]
    for earlier, later in itertools.pairwise(order):
        # The next node changes only once the previous one is back, Ready and labelled.
        assert depends(homelab_run, installs[later], memberships[earlier]), (earlier, later)
    first = installs[servers[0]]
    assert not any(depends(homelab_run, first, installs[n]) for n in order[1:])
    for agent in agents:
        assert drains[agent].urn in installs[agent].dependencies
        assert depends(homelab_run, drains[agent], memberships[servers[-1]])
        assert depends(homelab_run, memberships[agent], installs[agent])
    for reg in installs.values():
        assert reg.delete_before_replace, "a replacement must not uninstall the new k3s"
        assert reg.plain_inputs["update"] == reg.plain_inputs["create"]


def test_every_command_on_a_vm_follows_its_vm(homelab_run: StackRun) -> None:
    vms = {r.plain_inputs["name"]: r.urn for r in homelab_run.by_type(VM)}
    for kind in ("install", "membership"):
        for node, reg in commands(homelab_run, kind).items():
            assert reg.replace_with == (vms[node],), f"{kind} of {node} is not replaced with its VM"
            assert reg.delete_before_replace
    for node, reg in commands(homelab_run, "install").items():
        assert reg.deleted_with == vms[node], "no uninstall over SSH on a VM that is deleted"
        assert vms[node] in reg.dependencies
    first = _config()["controlPlanes"][0]["name"]
    token = homelab_run.one(COMMAND, "homelab-k3s-join-token")
    fetch = homelab_run.one(COMMAND, "homelab-k3s-kubeconfig-read")
    for reg in (token, fetch):
        assert reg.deleted_with == vms[first]
        assert reg.replace_with == (vms[first],)


def test_membership_delete_removes_the_node_except_the_first_server(
    homelab_run: StackRun,
) -> None:
    memberships = commands(homelab_run, "membership")
    first = _config()["controlPlanes"][0]["name"]
    for node, reg in memberships.items():
        delete = reg.plain_inputs.get("delete") or ""
        if node == first:
            assert not delete, "the last server standing is never removed from its cluster"
        else:
            assert f"NODE_NAME={node}" in delete
            assert "kubectl delete node" in delete
        # Membership runs through the API VIP, on whichever server holds it.
        assert reg.plain_inputs["connection"]["host"] == VIP


def test_joining_nodes_get_the_ca_pinned_token_and_secrets_stay_secret(
    homelab_run: StackRun,
) -> None:
    installs = commands(homelab_run, "install")
    first = _config()["controlPlanes"][0]["name"]
    token = homelab_run.one(COMMAND, "homelab-k3s-join-token")
    assert token.plain_inputs["logging"] == "none"
    assert "stdout" in token.additional_secret_outputs
    assert token.plain_inputs["connection"]["host"] == _config()["controlPlanes"][0]["ip"]
    for node, reg in installs.items():
        assert "stdin" in reg.secret_inputs
        assert any(p.startswith("connection") for p in reg.secret_inputs)
        assert reg.plain_inputs["logging"] == "stderr"
        stdin = reg.plain_inputs["stdin"]
        if node == first:
            assert stdin.startswith("mock"), "the first server starts with the short token"
        else:
            assert re.fullmatch(r"K10[0-9a-f]{64}::server:\S+", stdin), stdin
            assert token.urn in reg.dependencies
    fetch = homelab_run.one(COMMAND, "homelab-k3s-kubeconfig-read")
    assert fetch.plain_inputs["logging"] == "none"
    assert "stdout" in fetch.additional_secret_outputs
    assert "service-account-token" in fetch.plain_inputs["create"], "a credential that lasts"
    assert "kubeconfig" in homelab_run.secret_exports
    providers = homelab_run.by_type("pulumi:providers:kubernetes")
    assert {p.name for p in providers} == {"homelab-k8s", "aws-gpu-k8s"}
    assert all("kubeconfig" in p.secret_inputs for p in providers)
    for reg in homelab_run.registrations:
        shown = json.dumps(redact(reg.inputs), default=str)
        assert "mock-secret-" not in shown
        assert "client-key-data" not in shown
        assert not re.search(r"K10[0-9a-f]{64}::server:", shown), "the join token leaked"


def test_the_kubernetes_provider_waits_for_every_node(homelab_run: StackRun) -> None:
    provider = homelab_run.one("pulumi:providers:kubernetes", "homelab-k8s")
    for node, membership in commands(homelab_run, "membership").items():
        assert membership.urn in provider.dependencies, node
    assert provider.plain_inputs["clusterIdentifier"] == _config()["federation"]["clusterId"]
    aws = homelab_run.one("pulumi:providers:kubernetes", "aws-gpu-k8s")
    assert (
        aws.plain_inputs["clusterIdentifier"]
        == "hybridgpu-" + homelab_run.referenced["aws-gpu"].values["liqoClusterId"]
    )


def test_kubeconfig_and_liqo_use_the_vip(homelab_run: StackRun) -> None:
    config = yaml.safe_load(homelab_run.exports["kubeconfig"])
    assert [c["cluster"]["server"] for c in config["clusters"]] == [f"https://{VIP}:6443"]
    assert homelab_run.exports["k3sApiEndpoint"] == f"https://{VIP}:6443"
    liqo = homelab_run.one("kubernetes:helm.sh/v3:Release", "liqo-release").plain_inputs
    assert liqo["values"]["apiServer"]["address"] == f"https://{VIP}:6443"


def test_the_vip_is_on_every_server_and_answers_before_anything_joins(
    homelab_run: StackRun,
) -> None:
    installs = commands(homelab_run, "install")
    config = _config()
    first = config["controlPlanes"][0]["name"]
    for node, reg in installs.items():
        params = script_parameters(reg.plain_inputs["create"])
        node_config = yaml.safe_load(base64.b64decode(params["CONFIG_B64"]))
        is_server = node in {vm["name"] for vm in config["controlPlanes"]}
        if is_server:
            assert VIP in node_config["tls-san"]
            manifests = list(yaml.safe_load_all(base64.b64decode(params["MANIFEST_B64"])))
            daemonset = next(m for m in manifests if m["kind"] == "DaemonSet")
            env = {
                e["name"]: e["value"]
                for e in daemonset["spec"]["template"]["spec"]["containers"][0]["env"]
            }
            assert env["vip_address"] == VIP
        else:
            assert params["MANIFEST_B64"] == ""
        if node == first:
            assert params["WAIT_FOR_URL"] == f"https://{VIP}:6443/cacerts"
            assert "server" not in node_config
        else:
            assert node_config["server"] == f"https://{VIP}:6443"
            assert params["WAIT_FOR_URL"] == ""


def test_rendered_configs_carry_the_right_keys_per_role() -> None:
    first = yaml.safe_load(render_node_config(FIRST, SETTINGS))
    joiner = yaml.safe_load(render_node_config(JOINER, SETTINGS))
    agent = yaml.safe_load(render_node_config(AGENT, SETTINGS))
    assert first["cluster-init"] is True
    assert "server" not in first
    assert joiner["server"] == agent["server"] == f"https://{VIP}:6443"
    assert "cluster-init" not in joiner
    for server in (first, joiner):
        assert VIP in server["tls-san"]
        assert server["cluster-cidr"] == "10.42.0.0/16"
        assert server["service-cidr"] == "10.43.0.0/16"
        assert server["node-taint"] == [CONTROL_PLANE_TAINT]
        assert server["write-kubeconfig-mode"] == "0600"
    for config in (first, joiner, agent):
        assert "node-label" not in config, "labels are kept by membership.sh, not at start"
        assert "token" not in config, "the token lives in token-file only"
        assert config["token-file"] == "/etc/rancher/k3s/cluster-token"
    assert "node-taint" not in agent
    assert "cluster-cidr" not in agent


def test_settings_refuse_an_endpoint_that_is_not_the_vip() -> None:
    with pytest.raises(ValueError, match="must be the VIP"):
        K3sClusterSettings(
            version="v1.33.5+k3s1",
            api_endpoint="192.168.10.21",
            pod_cidr="10.42.0.0/16",
            service_cidr="10.43.0.0/16",
            cluster_dns="10.43.0.10",
            vip=VipSettings(VIP),
        )


def test_templates_pass_shellcheck_as_written(tmp_path: Path) -> None:
    names = sorted(p.name for p in scripts.TEMPLATES_DIR.glob("*.sh"))
    assert names, "no script templates"
    for name in names:
        shellcheck(scripts.template(name), tmp_path, name)


def test_render_refuses_missing_or_unknown_parameters() -> None:
    assert scripts.parameters("drain.sh") == ("NODE_NAME", "DRAIN_TIMEOUT_SECONDS", "CHANGE")
    with pytest.raises(ValueError, match=r"missing values \['DRAIN_TIMEOUT_SECONDS'\]"):
        scripts.render("drain.sh", NODE_NAME="x", CHANGE="y")
    with pytest.raises(ValueError, match=r"unused values \['EXTRA'\]"):
        scripts.render("drain.sh", NODE_NAME="x", DRAIN_TIMEOUT_SECONDS=1, CHANGE="y", EXTRA=1)
    rendered = scripts.render("drain.sh", NODE_NAME="a b", DRAIN_TIMEOUT_SECONDS=5, CHANGE="c")
    assert "NODE_NAME='a b'" in rendered
    assert "@NODE_NAME@" not in rendered


@pytest.mark.parametrize("node", [FIRST, JOINER, AGENT], ids=lambda n: n.role)
def test_scripts_pass_shellcheck(node: K3sNode, tmp_path: Path) -> None:
    script = render_install_script(node, SETTINGS)
    shellcheck(script, tmp_path, "install.sh")
    shellcheck(render_uninstall_script(node), tmp_path, "uninstall.sh")
    params = script_parameters(script)
    assert params["K3S_VERSION"] == "v1.33.5+k3s1"
    assert params["INSTALLER_URL"] == (
        "https://raw.githubusercontent.com/k3s-io/k3s/v1.33.5%2Bk3s1/install.sh"
    )
    assert "set -x" not in script


def test_planned_scripts_pass_shellcheck(homelab_run: StackRun, tmp_path: Path) -> None:
    for kind in ("install", "drain", "membership"):
        for name, reg in commands(homelab_run, kind).items():
            shellcheck(reg.plain_inputs["create"], tmp_path, f"{name}-{kind}.sh")
            if reg.plain_inputs.get("delete"):
                shellcheck(reg.plain_inputs["delete"], tmp_path, f"{name}-{kind}-delete.sh")
