"""Day 2: the program run for the example config (A) and for an ordinary change of it (B); what
a real ``pulumi up`` would do is predicted from both runs' registrations (tests/lifecycle.py)
and checked against what an operator expects of that change."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lifecycle import Plan, changed_paths, matches, plan
from tools import offline
from tools.offline import StackRun

VM = "proxmoxve:index/vmLegacy:VmLegacy"
COMMAND = "command:remote:Command"
PV = "kubernetes:core/v1:PersistentVolume"
RELEASE = "kubernetes:helm.sh/v3:Release"
HOMELAB = "hybridgpu:homelab"


def example() -> dict[str, Any]:
    return copy.deepcopy(offline.stack_config_file("homelab")[HOMELAB])


def homelab_after(
    edit: dict[str, Any] | None = None,
    *,
    project: dict[str, Any] | None = None,
    recreated: tuple[str, ...] = (),
) -> StackRun:
    """homelab (config B) after the default aws-gpu run (or one with the same project keys)."""
    overrides: dict[str, Any] = {f"hybridgpu:{k}": v for k, v in (project or {}).items()}
    offline.run_stack("aws-gpu", overrides)
    try:
        if edit is not None:
            overrides[HOMELAB] = edit
        return offline.run_stack("homelab", overrides, recreated=recreated)
    finally:
        if project:
            offline.run_stack("aws-gpu")  # later runs reference the example aws-gpu again


def node_commands(run_plan: Plan, node: str) -> dict[str, str]:
    """kind -> step of the homelab-k3s commands of ``node``."""
    steps = {}
    for kind in ("drain", "install", "membership"):
        try:
            steps[kind] = run_plan.step(COMMAND, f"homelab-k3s-{node}-{kind}")
        except KeyError:
            continue
    return steps


def nodes() -> list[str]:
    config = example()
    return [vm["name"] for vm in (*config["controlPlanes"], *config["gpuWorkers"])]


# -- the predictor itself ------------------------------------------------------------------------


def test_the_predictor_replaces_on_provider_and_option_rules() -> None:
    assert matches("disks[0].fileId", "disks[*].fileId")
    assert matches("clone.vmId", "clone")
    assert not matches("disks[0].importFrom", "disks[*].fileId")
    assert not matches("vmIdentifier", "vmId")


# -- image bump ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_bump(homelab_run: StackRun) -> Plan:
    config = example()
    config["image"] = {
        "url": "https://cloud-images.ubuntu.com/releases/noble/release-20251201/"
        "ubuntu-24.04-server-cloudimg-amd64.img",
        "checksum": "0" * 64,
        "fileName": "ubuntu-24.04-server-cloudimg-amd64-20251201.qcow2",
    }
    return plan(homelab_run, homelab_after(config))


def test_image_bump_touches_no_running_vm(image_bump: Plan) -> None:
    assert image_bump.step("proxmoxve:download/file:File", "pve1-assets-image") == "replace"
    for name in nodes():
        step = image_bump.step(VM, f"{name}-vm")
        assert step in ("same", "update"), f"{name}: {step}"
        # Only the recorded source of the first import, which the provider never re-imports.
        assert image_bump.changes(VM, f"{name}-vm") <= {"disks[0].importFrom"}
        assert set(node_commands(image_bump, name).values()) == {"same"}, name


def test_the_image_download_is_replaced_delete_first(image_bump: Plan) -> None:
    (image,) = (r for r in image_bump.new.values() if r.type == "proxmoxve:download/file:File")
    assert image.delete_before_replace, "a same-named file created first would be deleted after"
    snippets = [
        r for r in image_bump.new.values() if r.type == "proxmoxve:index/fileLegacy:FileLegacy"
    ]
    assert snippets  # one vendor snippet per VM
    assert all(snippet.delete_before_replace for snippet in snippets)


# -- VM replaced ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker_replaced(homelab_run: StackRun) -> Plan:
    config = example()
    config["gpuWorkers"][1]["vmId"] = 222  # vm_id forces a new VM (vm.go ForceNewIf(mkVMID))
    return plan(homelab_run, homelab_after(config))


def test_a_replaced_vm_is_bootstrapped_again(worker_replaced: Plan) -> None:
    assert worker_replaced.step(VM, "k3s-gpu-2-vm") == "replace"
    (vm,) = (r for r in worker_replaced.new.values() if r.name == "k3s-gpu-2-vm")
    assert vm.delete_before_replace, "the fixed VM id cannot exist twice"
    commands = node_commands(worker_replaced, "k3s-gpu-2")
    assert commands["install"] == "replace", "k3s is installed on the new VM"
    assert commands["membership"] == "replace", "the old Node is removed, the new one labelled"
    for other in nodes():
        if other != "k3s-gpu-2":
            assert worker_replaced.step(VM, f"{other}-vm") == "same"
            assert set(node_commands(worker_replaced, other).values()) == {"same"}, other


@pytest.fixture(scope="module")
def worker_moved(homelab_run: StackRun) -> StackRun:
    """A GPU worker moved to another Proxmox node with its GPUs: node_name forces a new VM
    (vm.go ForceNewIf(mkNodeName)) under the same VM id, so the VM's id does not change."""
    config = example()
    config["proxmox"]["nodes"].append({"name": "pve2", "sshAddress": "192.168.10.3"})
    config["gpuWorkers"][1]["proxmoxNode"] = "pve2"
    for mapping in config["pciMappings"]:
        if mapping["name"] in config["gpuWorkers"][1]["gpus"]:
            mapping["proxmoxNode"] = "pve2"
    return homelab_after(config)


@pytest.mark.parametrize("recent_cli", [True, False], ids=["cli-2026-07", "cli-2025-12"])
def test_a_vm_replaced_under_its_id_is_bootstrapped_again(
    homelab_run: StackRun, worker_moved: StackRun, recent_cli: bool
) -> None:
    moved = plan(homelab_run, worker_moved, deleted_with_replaces=recent_cli)
    assert moved.step(VM, "k3s-gpu-2-vm") == "replace"
    assert moved.changes(VM, "k3s-gpu-2-vm") >= {"nodeName"}
    (old_vm,) = (r for r in moved.old.values() if r.name == "k3s-gpu-2-vm")
    assert moved.new[old_vm.urn].plain_inputs["vmId"] == old_vm.plain_inputs["vmId"]
    commands = node_commands(moved, "k3s-gpu-2")
    assert commands["install"] == "replace"
    assert commands["membership"] == "replace"


def test_a_replaced_vm_gets_nebula_again(worker_replaced: Plan) -> None:
    assert worker_replaced.step(COMMAND, "k3s-gpu-2-nebula-install") == "replace"


@pytest.mark.parametrize("recent_cli", [True, False], ids=["cli-2026-07", "cli-2025-12"])
def test_a_vm_replaced_under_its_id_gets_nebula_again(
    homelab_run: StackRun, worker_moved: StackRun, recent_cli: bool
) -> None:
    moved = plan(homelab_run, worker_moved, deleted_with_replaces=recent_cli)
    assert moved.step(COMMAND, "k3s-gpu-2-nebula-install") == "replace"


@pytest.fixture(scope="module")
def control_plane_replaced(homelab_run: StackRun) -> Plan:
    config = example()
    config["controlPlanes"][1]["vmId"] = 209
    return plan(homelab_run, homelab_after(config))


def test_a_control_plane_is_never_replaced_by_an_up(control_plane_replaced: Plan) -> None:
    assert control_plane_replaced.step(VM, "k3s-cp-2-vm") == "refused"
    for name in nodes():
        if name.startswith("k3s-gpu"):
            assert control_plane_replaced.step(VM, f"{name}-vm") == "same"
    protected = {r.name for r in control_plane_replaced.new.values() if r.protect and r.type == VM}
    assert protected == {"k3s-cp-1-vm", "k3s-cp-2-vm", "k3s-cp-3-vm"}
    (token,) = (r for r in control_plane_replaced.new.values() if r.name == "k3s-token")
    assert token.protect, "k3s encrypts its datastore with the token: never regenerated"


# -- k3s upgrade ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k3s_upgrade(homelab_run: StackRun) -> tuple[Plan, StackRun]:
    after = homelab_after(project={"k3sVersion": "v1.33.6+k3s1"})
    return plan(homelab_run, after), after


def _waits_for(run: StackRun, urn: str, target: str) -> bool:
    by_urn, seen, todo = run.by_urn(), set(), [urn]
    while todo:
        current = by_urn.get(todo.pop())
        for dep in current.dependencies if current is not None else ():
            if dep == target:
                return True
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return False


def _urns(run: StackRun, kind: str) -> dict[str, str]:
    prefix = "homelab-k3s-"
    return {
        r.name.removeprefix(prefix).removesuffix(f"-{kind}"): r.urn
        for r in run.by_type(COMMAND)
        if r.name.startswith(prefix) and r.name.endswith(f"-{kind}")
    }


def test_k3s_upgrade_rolls_servers_then_agents_one_at_a_time(
    k3s_upgrade: tuple[Plan, StackRun],
) -> None:
    upgrade, after = k3s_upgrade
    config = example()
    servers = [vm["name"] for vm in config["controlPlanes"]]
    agents = [vm["name"] for vm in config["gpuWorkers"]]
    for name in nodes():
        steps = node_commands(upgrade, name)
        assert steps["install"] == "update", "upgraded in place, never reinstalled"
        assert steps["membership"] == "update", "waits for Ready again (and uncordons)"
        if name in agents:
            assert steps["drain"] == "update", f"{name} is drained before its k3s restarts"
        assert upgrade.step(VM, f"{name}-vm") == "same"
    installs, memberships, drains = (_urns(after, k) for k in ("install", "membership", "drain"))
    for earlier, later in itertools.pairwise([*servers, *agents]):
        assert _waits_for(after, installs[later], memberships[earlier]), (earlier, later)
    for agent in agents:
        assert _waits_for(after, drains[agent], memberships[servers[-1]]), "servers first"
        assert drains[agent] in after.by_urn()[installs[agent]].dependencies
    for name, urn in installs.items():
        create = after.by_urn()[urn].plain_inputs["create"]
        assert "K3S_VERSION=v1.33.6+k3s1" in create, name


# -- labels --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def relabel(homelab_run: StackRun) -> Plan:
    config = example()
    config["gpuWorkers"][0]["gpuModel"] = "nvidia-h100"
    return plan(homelab_run, homelab_after(config))


def test_a_label_edit_relabels_the_node_without_restarting_k3s(relabel: Plan) -> None:
    steps = node_commands(relabel, "k3s-gpu-1")
    assert steps == {"drain": "same", "install": "same", "membership": "update"}
    membership = next(
        r for r in relabel.new.values() if r.name == "homelab-k3s-k3s-gpu-1-membership"
    )
    assert "gpu-type=nvidia-h100" in membership.plain_inputs["create"]
    assert relabel.step(VM, "k3s-gpu-1-vm") == "same"
    for other in nodes():
        if other != "k3s-gpu-1":
            assert set(node_commands(relabel, other).values()) == {"same"}, other


# -- models volume -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def claim_recreated(homelab_run: StackRun) -> Plan:
    """The same config after the claims were deleted and created again (homelab destroy + up,
    unpeer + re-peer): they have new uids."""
    after = homelab_after(recreated=("ollama-remote-models-claim", "ollama-models-claim"))
    return plan(homelab_run, after)


def test_a_recreated_claim_gets_its_volume_back(claim_recreated: Plan) -> None:
    for volume in ("ollama-remote-models-volume", "ollama-models-twin"):
        assert claim_recreated.step(PV, volume) == "update", volume
        assert claim_recreated.changes(PV, volume) == {"spec.claimRef.uid"}, volume


# -- the other common changes the README's Day 2 section names -----------------------------------


@pytest.fixture(scope="module")
def resized(homelab_run: StackRun) -> Plan:
    config = example()
    config["gpuWorkers"][0]["cores"] = 24
    config["gpuWorkers"][0]["memoryMiB"] = 196608
    config["gpuWorkers"][0]["diskGiB"] = 600
    config["gpuWorkers"][3]["gpus"] = ["a100-6"]  # one GPU handed back
    return plan(homelab_run, homelab_after(config))


def test_vm_size_and_gpu_changes_update_vms_in_place(resized: Plan) -> None:
    assert resized.step(VM, "k3s-gpu-1-vm") == "update"
    assert resized.changes(VM, "k3s-gpu-1-vm") == {
        "cpu.cores",
        "memory.dedicated",
        "disks[0].size",
    }
    assert resized.step(VM, "k3s-gpu-4-vm") == "update"
    assert all(p.startswith("hostpcis[1]") for p in resized.changes(VM, "k3s-gpu-4-vm"))
    for name in nodes():
        assert set(node_commands(resized, name).values()) == {"same"}, name


@pytest.fixture(scope="module")
def liqo_upgrade(homelab_run: StackRun) -> Plan:
    return plan(homelab_run, homelab_after(project={"liqoVersion": "v1.2.1"}))


def test_a_liqo_upgrade_updates_the_release_and_repeers(liqo_upgrade: Plan) -> None:
    assert liqo_upgrade.step(RELEASE, "liqo-release") == "update"
    assert liqo_upgrade.changes(RELEASE, "liqo-release") == {"version"}
    assert liqo_upgrade.step("command:local:Command", "liqo-peering-liqoctl") == "update"
    assert liqo_upgrade.by_step("replace") == []


@pytest.fixture(scope="module")
def bucket_change(aws_gpu_run: StackRun) -> Iterator[Plan]:
    config = copy.deepcopy(offline.stack_config_file("aws-gpu")["hybridgpu:aws"])
    config["modelBucket"]["noncurrentVersionExpirationDays"] = 90
    yield plan(aws_gpu_run, offline.run_stack("aws-gpu", {"hybridgpu:aws": config}))
    offline.run_stack("aws-gpu")


def test_a_bucket_setting_updates_only_that_setting(bucket_change: Plan) -> None:
    assert bucket_change.by_step("update") == ["models-lifecycle"]
    assert bucket_change.by_step("replace") == []
    assert bucket_change.by_step("create") == bucket_change.by_step("delete") == []


def test_the_changed_paths_of_identical_runs_are_empty(homelab_run: StackRun) -> None:
    again = homelab_after()
    unchanged = plan(homelab_run, again)
    assert set(unchanged.steps.values()) == {"same"}, unchanged.by_step("update")
    assert all(not changed_paths(r, r) for r in again.managed())
