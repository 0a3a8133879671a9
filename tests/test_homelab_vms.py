"""homelab VMs under the mocks: passthrough-ready VMs from the example config."""

from __future__ import annotations

from pathlib import Path

from components.proxmox.node_assets import render_vendor_data
from tests.real_tools import cloud_init_schema
from tools import offline
from tools.offline import StackRun

VM = "proxmoxve:index/vmLegacy:VmLegacy"
PCI = "proxmoxve:hardware/mapping/pci:Pci"


def _example() -> dict:
    return offline.stack_config_file("homelab")["hybridgpu:homelab"]


def test_seven_passthrough_ready_vms(homelab_run: StackRun) -> None:
    vms = homelab_run.by_type(VM)
    config = _example()
    assert len(vms) == len(config["controlPlanes"]) + len(config["gpuWorkers"]) == 7
    for vm in vms:
        inputs = vm.plain_inputs
        assert inputs["machine"] == "q35"
        assert inputs["bios"] == "ovmf"
        assert inputs["efiDisk"]["type"] == "4m"
        assert inputs["efiDisk"]["preEnrolledKeys"] is False
        assert inputs["cpu"]["type"] == "host"
        assert inputs["memory"]["floating"] == 0, "no ballooning with passthrough"
        assert inputs["agent"]["enabled"] is True
        assert inputs["initialization"]["vendorDataFileId"]
        assert "pulumi:providers:proxmoxve::proxmox::" in vm.provider, vm.provider


def test_vms_import_the_image_and_are_replaced_delete_first(homelab_run: StackRun) -> None:
    (image,) = homelab_run.by_type("proxmoxve:download/file:File")
    assert image.plain_inputs["contentType"] == "import"
    for vm in homelab_run.by_type(VM):
        (os_disk, *_) = vm.plain_inputs["disks"]
        assert os_disk["importFrom"] == "local:import/" + _example()["image"]["fileName"]
        assert "fileId" not in os_disk, "file_id forces a new VM whenever the image changes"
        assert vm.delete_before_replace


def test_a_gpu_vm_depends_on_its_pci_mappings(homelab_run: StackRun) -> None:
    """So Proxmox never deletes a mapping a VM still uses (destroy runs in reverse)."""
    mappings = {r.plain_inputs["name"]: r.urn for r in homelab_run.by_type(PCI)}
    for worker in _example()["gpuWorkers"]:
        vm = homelab_run.one(VM, f"{worker['name']}-vm")
        assert set(vm.property_dependencies["hostpcis"]) == {mappings[g] for g in worker["gpus"]}


def test_gpu_workers_get_exactly_their_two_gpus_as_pcie(homelab_run: StackRun) -> None:
    config = _example()
    sizes = {vm["name"]: vm for vm in config["gpuWorkers"]}
    for vm in homelab_run.by_type(VM):
        inputs = vm.plain_inputs
        devices = inputs.get("hostpcis") or []
        if inputs["name"] in sizes:
            expected = sizes[inputs["name"]]
            assert [d["mapping"] for d in devices] == expected["gpus"]
            assert len(devices) == 2
            assert all(d["pcie"] is True for d in devices)
            assert [d["device"] for d in devices] == ["hostpci0", "hostpci1"]
            assert inputs["cpu"]["cores"] == expected["cores"]
            assert inputs["memory"]["dedicated"] == expected["memoryMiB"]
            assert [d["size"] for d in inputs["disks"]] == [
                expected["diskGiB"],
                expected["scratchDiskGiB"],
            ]
        else:
            assert devices == [], f"control plane {inputs['name']} must get no PCI device"
    mappings = {r.plain_inputs["name"]: r.plain_inputs for r in homelab_run.by_type(PCI)}
    assert set(mappings) == {m["name"] for m in config["pciMappings"]}


def _ancestors(run: StackRun, urn: str) -> set[str]:
    by_urn = run.by_urn()
    seen: set[str] = set()
    stack = [urn]
    while stack:
        reg = by_urn.get(stack.pop())
        if reg is None:
            continue
        for dep in {
            *reg.dependencies,
            *(u for us in reg.property_dependencies.values() for u in us),
        }:
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen


def test_vms_do_not_depend_on_each_other(homelab_run: StackRun) -> None:
    vm_urns = {r.urn for r in homelab_run.by_type(VM)}
    component_urns = {r.urn for r in homelab_run.by_type("hybridgpu:proxmox:ProxmoxVm")}
    for urn in vm_urns:
        assert not (_ancestors(homelab_run, urn) & (vm_urns | component_urns) - {urn})


def test_nebula_is_installed_after_its_vm(homelab_run: StackRun) -> None:
    vms = {r.plain_inputs["name"]: r.urn for r in homelab_run.by_type(VM)}
    for install in homelab_run.by_type("command:remote:Command"):
        if not install.name.endswith("-nebula-install"):
            continue
        node = install.name.removesuffix("-nebula-install")
        assert vms[node] in install.dependencies


def test_proxmox_credentials_are_secret(homelab_run: StackRun) -> None:
    (provider,) = homelab_run.by_type("pulumi:providers:proxmoxve")
    assert "apiToken" in provider.secret_inputs
    assert any(p.startswith("ssh") for p in provider.secret_inputs)


def test_raw_pci_ids_only_when_allowed(aws_gpu_served: offline.StackRun) -> None:
    config = _example()
    config["allowRawPciIds"] = True
    run = offline.run_stack("homelab", {"hybridgpu:homelab": config})
    paths = {m["name"]: m["path"] for m in config["pciMappings"]}
    assert run.by_type(PCI) == []
    for vm in run.by_type(VM):
        for device in vm.plain_inputs.get("hostpcis") or []:
            assert "mapping" not in device
            assert device["id"] in paths.values()


def test_vendor_snippet_is_valid_cloud_init(tmp_path: Path) -> None:
    cloud_init_schema(render_vendor_data(), tmp_path)
