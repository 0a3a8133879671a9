"""Verified hosts: every SSH connection the program makes pins the host key the program generated
for that machine, and the machine is given exactly that key at first boot.

pulumi-command ignores host keys unless ``hostKey`` is set (pulumi/pulumi-command
provider/pkg/provider/remote/connection.go@v1.2.1: ``ssh.FixedHostKey`` and
``HostKeyAlgorithms = [key type]`` when set, ``ssh.InsecureIgnoreHostKey()`` otherwise), so the
checks below read the recorded registrations of both stacks: each connection's ``hostKey`` must
equal the public key installed on the machine its ``host`` names (homelab: the VM's cloud-init
vendor snippet; AWS: the node's ``ssh/host-key.pub`` file in SSM).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from components.base.ssh_keys import host_key_from_seed
from components.proxmox.node_assets import (
    SHARED_SNIPPET_NAME,
    render_vendor_data,
    vendor_snippet_name,
)
from stacks.access import CONTROL_PLANE_HOST_KEY
from tests.real_tools import cloud_init_schema
from tools import offline
from tools.mocks import Registration
from tools.offline import StackRun

FIXTURES = Path(__file__).parent / "fixtures" / "valid"
SSH_TYPES = ("command:remote:Command", "command:remote:CopyToRemote")
VM = "proxmoxve:index/vmLegacy:VmLegacy"
SNIPPET = "proxmoxve:index/fileLegacy:FileLegacy"
PARAMETER = "aws:ssm/parameter:Parameter"
SEED = "random:index/randomBytes:RandomBytes"


def ssh_connections(run: StackRun) -> list[tuple[str, str, str]]:
    """(resource name, host, hostKey) of every SSH connection the run declares."""
    found = []
    for r in run.registrations:
        if r.type in SSH_TYPES:
            connection = r.plain_inputs["connection"]
            found.append((r.name, str(connection["host"]), connection.get("hostKey") or ""))
    return found


def existing_keys(fixture: str | None) -> dict[str, str]:
    """``existingHostKeys`` a valid fixture sets (the example config sets none)."""
    if fixture is None:
        return {}
    document = yaml.safe_load((FIXTURES / f"{fixture}.yaml").read_text())
    return dict((document.get("set") or {}).get("hybridgpu:homelab.existingHostKeys") or {})


def homelab_installed_keys(run: StackRun, existing: dict[str, str]) -> dict[str, str]:
    """VM name -> the public host key the VM has: the one its own vendor snippet installs, or
    for a VM that boots from the node-wide snippet (it predates generated keys) the one
    configured in ``existingHostKeys``."""
    snippets = {r.urn: r for r in run.by_type(SNIPPET)}
    keys = {}
    for vm in run.by_type(VM):
        name = vm.plain_inputs["name"]
        (urn,) = vm.property_dependencies["initialization"]
        snippet = snippets[urn]
        raw = snippet.plain_inputs["sourceRaw"]
        if name in existing:
            assert raw["fileName"] == SHARED_SNIPPET_NAME, f"{name} must keep its boot snippet"
            assert "ssh_keys" not in raw["data"]
            keys[name] = " ".join(existing[name].split()[:2])
            continue
        assert raw["fileName"] == vendor_snippet_name(name)
        data = yaml.safe_load(raw["data"])
        assert data["ssh_deletekeys"] is True
        assert set(data["ssh_keys"]) == {
            "ed25519_private",
            "ed25519_public",
        }
        # What a client compares: type and key, without the comment.
        keys[name] = " ".join(data["ssh_keys"]["ed25519_public"].split()[:2])
    return keys


def homelab_hosts(run: StackRun) -> dict[str, list[str]]:
    """Address -> the VMs that may answer on it: each VM's own IP; the API endpoint (the VIP or
    the first control plane) any control plane."""

    hosts: dict[str, list[str]] = {}
    for name, ip in run.exports["controlPlaneIps"].items():
        hosts.setdefault(ip, []).append(name)
    for name, worker in run.exports["gpuWorkers"].items():
        hosts.setdefault(worker["ip"], []).append(name)
    endpoint = urlparse(run.exports["k3sApiEndpoint"]).hostname
    assert endpoint is not None
    hosts.setdefault(endpoint, [])
    hosts[endpoint] = sorted({*hosts[endpoint], *run.exports["controlPlaneIps"]})
    return hosts


def assert_homelab_pinned(run: StackRun, fixture: str | None = None) -> int:
    installed = homelab_installed_keys(run, existing_keys(fixture))
    hosts = homelab_hosts(run)
    connections = ssh_connections(run)
    assert connections, "the homelab reaches its VMs over SSH"
    for name, host, pinned in connections:
        assert pinned.startswith("ssh-ed25519 "), f"{name}: SSH to {host} pins no host key"
        machines = hosts.get(host)
        assert machines, f"{name}: {host} is no VM of the stack"
        for machine in machines:
            assert installed[machine] == pinned, (
                f"{name}: pins {pinned[:40]}..., but {machine} ({host}) is given "
                f"{installed[machine][:40]}..."
            )
    return len(connections)


def test_every_homelab_ssh_connection_pins_the_vm_generated_key(homelab_run: StackRun) -> None:
    count = assert_homelab_pinned(homelab_run)
    # 7 VMs: per node install + membership (+ drain per agent), join token, Nebula, kubeconfig.
    assert count >= 2 * 7


def test_every_homelab_fixture_pins_too(valid_fixture_runs: dict[str, StackRun]) -> None:
    """Single control plane without a VIP, Rancher, ...: the same rule in every valid shape."""
    homelab = {n: r for n, r in valid_fixture_runs.items() if r.stack == "homelab"}
    assert homelab
    for name, run in homelab.items():
        assert_homelab_pinned(run, name)
    assert "homelab-existing-host-keys" in homelab


def test_every_aws_ssh_connection_pins_the_node_generated_key(
    aws_gpu_run: StackRun, valid_fixture_runs: dict[str, StackRun]
) -> None:
    runs = [aws_gpu_run, *(r for r in valid_fixture_runs.values() if r.stack == "aws-gpu")]
    for run in runs:
        installed = {
            r.plain_inputs["name"].split("/")[3]: r.plain_inputs["value"].rsplit(" ", 1)[0]
            for r in run.by_type(PARAMETER)
            if r.plain_inputs["name"].endswith("/files/ssh/host-key.pub")
        }
        assert set(installed) == {"control-node", "gpu-worker"}
        control_addresses = {
            run.exports["controlNodeOverlayIp"],
            run.exports["controlNodePublicIp"],
        }
        connections = ssh_connections(run)
        assert connections
        for name, host, pinned in connections:
            assert host in control_addresses, f"{name}: SSH to {host}, not the control node"
            assert pinned == installed["control-node"], f"{name}: pins {pinned[:40]}..."
        assert run.exports["controlNodeSshHostKey"] == installed["control-node"]


def test_control_planes_share_one_key_workers_each_their_own(homelab_run: StackRun) -> None:
    installed = homelab_installed_keys(homelab_run, {})
    cps = set(homelab_run.exports["controlPlaneIps"])
    workers = set(homelab_run.exports["gpuWorkers"])
    assert len({installed[n] for n in cps}) == 1
    assert len({installed[n] for n in workers}) == len(workers)
    assert not {installed[n] for n in workers} & {installed[n] for n in cps}
    seeds = {r.name for r in homelab_run.by_type(SEED)}
    assert f"{CONTROL_PLANE_HOST_KEY}-ssh-host-key-seed" in seeds
    assert {f"{w}-ssh-host-key-seed" for w in workers} <= seeds


def test_keys_are_stable_and_survive_a_vm_replacement(homelab_run: StackRun) -> None:
    """Keys derive from RandomBytes seeds (created once, kept in state), never from the VM: a
    replaced VM (same name) keeps its seed, so its new snippet carries the same key. Seeds are
    top-level resources, so no VM replacement replaces them."""
    for seed in homelab_run.by_type(SEED):
        if seed.name.endswith("-ssh-host-key-seed"):
            assert "$" not in seed.urn.split("::")[2], f"{seed.urn}: not top-level"
            assert not seed.replace_with
            assert not seed.deleted_with
    # Same seed, same bytes (the OpenSSH check int is derived from the seed too).
    seed = bytes(range(32))
    assert host_key_from_seed(seed, "x") == host_key_from_seed(seed, "x")


@pytest.mark.parametrize("comment", ["k3s-gpu-1", CONTROL_PLANE_HOST_KEY])
def test_vendor_snippet_with_a_host_key_is_valid_cloud_init(tmp_path: Path, comment: str) -> None:
    key = host_key_from_seed(bytes(32), comment)
    document = render_vendor_data(key.private_openssh, key.public_line)
    cloud_init_schema(document, tmp_path)
    data = yaml.safe_load(document)
    assert data["ssh_keys"]["ed25519_private"] == key.private_openssh
    assert data["ssh_keys"]["ed25519_public"] == key.public_line.strip()


def test_the_snippet_holding_a_private_key_is_secret(homelab_run: StackRun) -> None:
    for snippet in homelab_run.by_type(SNIPPET):
        assert "sourceRaw.data" in snippet.secret_inputs or "sourceRaw" in (
            snippet.secret_inputs
        ), f"{snippet.name}: host key in plain state ({snippet.secret_inputs})"


def test_vms_that_predate_generated_keys_keep_their_snippet_and_cluster_commands_skip_the_vip(
    valid_fixture_runs: dict[str, StackRun],
) -> None:
    """Day 2 for a stack created before generated host keys: the VMs listed in
    ``existingHostKeys`` keep the node-wide snippet (same id, so no replacement) and are pinned
    to their configured key; with a control plane among them, cluster-level commands SSH to the
    first control plane itself (the VIP's holder could answer with another key)."""
    run = valid_fixture_runs["homelab-existing-host-keys"]
    (shared,) = [
        s
        for s in run.by_type(SNIPPET)
        if s.plain_inputs["sourceRaw"]["fileName"] == SHARED_SNIPPET_NAME
    ]
    assert shared.name == "pve1-assets-vendor-data"  # the name the snippet always had
    first_ip = run.exports["controlPlaneIps"]["k3s-cp-1"]
    drains = [r for r in run.by_type("command:remote:Command") if r.name.endswith("-drain")]
    assert drains
    for drain in drains:
        assert drain.plain_inputs["connection"]["host"] == first_ip
    seeds = {r.name for r in run.by_type(SEED)}
    assert "k3s-gpu-1-ssh-host-key-seed" not in seeds
    assert "k3s-gpu-2-ssh-host-key-seed" in seeds


# --------------------------------------------------------------------------------------------
# Separate SSH keys: Proxmox, the homelab VMs, the AWS nodes
# --------------------------------------------------------------------------------------------


def test_homelab_refuses_the_vms_key_as_the_proxmox_key() -> None:
    from stacks.config import ConfigError

    offline.run_stack("aws-gpu")
    same = {"hybridgpu:sshPrivateKey": "one-key", "hybridgpu:proxmoxSshPrivateKey": "one-key"}
    with pytest.raises(ConfigError) as caught:
        offline.run_stack("homelab", same)
    assert "hybridgpu:proxmoxSshPrivateKey: the same key as hybridgpu:sshPrivateKey" in str(
        caught.value
    )


def test_homelab_refuses_the_aws_nodes_key_for_its_vms() -> None:
    from stacks.config import ConfigError

    homelab_key = offline.stack_config_file("homelab")["hybridgpu:homelab"]["sshPublicKeys"][0]
    offline.run_stack("aws-gpu", {"hybridgpu:aws.sshPublicKey": homelab_key})
    with pytest.raises(ConfigError) as caught:
        offline.run_stack("homelab")
    assert "hybridgpu:homelab.sshPublicKeys: holds the aws-gpu stack's aws.sshPublicKey" in str(
        caught.value
    )


def test_the_proxmox_provider_takes_its_own_key(homelab_run: StackRun) -> None:
    """Unset (the example), the VMs' key is used with a warning; set, the provider gets it."""
    offline.run_stack("aws-gpu")
    run = offline.run_stack("homelab", {"hybridgpu:proxmoxSshPrivateKey": "proxmox-only-key"})
    (provider,) = [r for r in run.registrations if r.type == "pulumi:providers:proxmoxve"]
    assert provider_ssh(provider)["privateKey"] == "proxmox-only-key"
    assert provider.secret_inputs, "the provider's SSH key is secret"
    (example,) = [r for r in homelab_run.registrations if r.type == "pulumi:providers:proxmoxve"]
    assert provider_ssh(example)["privateKey"] == "mock-secret-sshPrivateKey"


def provider_ssh(provider: Registration) -> dict[str, Any]:
    """Providers take nested inputs as JSON text."""
    ssh = provider.plain_inputs["ssh"]
    return json.loads(ssh) if isinstance(ssh, str) else ssh


def test_admin_created_pci_mappings_are_used_by_name_only(
    valid_fixture_runs: dict[str, StackRun],
) -> None:
    """With mappings an administrator created, the program declares none (so the token needs no
    Mapping.Modify) and passes GPUs by mapping name."""
    run = valid_fixture_runs["homelab-admin-created-pci-mappings"]
    assert run.by_type("proxmoxve:hardware/mapping/pci:Pci") == []
    config = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    for worker in config["gpuWorkers"]:
        vm = run.one(VM, f"{worker['name']}-vm")
        assert [d["mapping"] for d in vm.plain_inputs["hostpcis"]] == worker["gpus"]
