"""ProxmoxNodeAssets: what every VM on one Proxmox node shares: the cloud image (downloaded once
per node, verified by SHA-256) and the node's GPU PCI mappings. Each VM's own cloud-init vendor
snippet (guest agent, SSH host key) is rendered here and uploaded by its ProxmoxVm.

The image has a fixed name, and a change of url, checksum or file name replaces it
(bpg/terraform-provider-proxmox@v0.111.1: fwprovider/nodes/resource_download_file.go
RequiresReplace on url, checksum, file_name, content_type). Replacing create-first would
download the new file and then delete it with the old one (same path), so it is deleted first.
VMs keep running meanwhile: they import the image only when they are created
(components/proxmox/vm.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve
import yaml

SHARED_SNIPPET_NAME = "hybridgpu-vendor.yaml"
"""The vendor snippet VMs created before per-VM host keys boot with (guest agent only)."""


def render_shared_vendor_data() -> str:
    """The node-wide vendor data of VMs that predate per-VM host keys: the guest agent only.
    Kept, unchanged, while such a VM exists: Proxmox rebuilds a VM's cloud-init drive from this
    file when the VM starts."""
    config = {
        "packages": ["qemu-guest-agent"],
        "runcmd": [["systemctl", "enable", "--now", "qemu-guest-agent"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False)


def vendor_snippet_name(vm_name: str) -> str:
    """One snippet per VM: it carries that VM's SSH host key and nothing of any other VM's."""
    return f"hybridgpu-vendor-{vm_name}.yaml"


def render_vendor_data(host_key_private: str, host_key_public: str) -> str:
    """cloud-init vendor data of one VM: the guest agent the provider waits for, and the SSH host
    key the program generated (components/base/ssh_keys.py), so every SSH client of the program
    pins it from the first connection on. The image's keys are deleted, and with ``ssh_keys``
    given cloud-init generates none (canonical/cloud-init cloudinit/config/cc_ssh.py: "if there
    are keys and/or certificates in cloud-config, use them", else generate), so sshd offers only
    this key. cloud-init runs this once per instance: a replaced VM boots with the same key (its
    seed is in state)."""
    config = {
        "ssh_deletekeys": True,
        "ssh_keys": {
            "ed25519_private": host_key_private,
            "ed25519_public": host_key_public.strip(),
        },
        "packages": ["qemu-guest-agent"],
        "runcmd": [["systemctl", "enable", "--now", "qemu-guest-agent"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class GpuMapping:
    name: str
    path: str
    device_id: str
    subsystem_id: str | None = None
    iommu_group: int | None = None


@dataclass(frozen=True)
class ProxmoxNodeAssetsArgs:
    node_name: str
    image_url: str
    image_checksum: str
    image_file_name: str
    image_datastore: str
    gpu_mappings: Sequence[GpuMapping] = ()
    shared_snippet_datastore: str | None = None
    """Keep the node-wide vendor snippet here (VMs with ``existingHostKeys`` boot from it);
    None when no VM on the node needs it."""


class ProxmoxNodeAssets(pulumi.ComponentResource):
    image_file_id: pulumi.Output[str]
    shared_vendor_data_file_id: pulumi.Output[str] | None
    mappings: dict[str, proxmoxve.hardware.mapping.Pci]

    def __init__(
        self, name: str, args: ProxmoxNodeAssetsArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("hybridgpu:proxmox:ProxmoxNodeAssets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        replace_in_place = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        image = proxmoxve.download.File(
            f"{name}-image",
            node_name=args.node_name,
            datastore_id=args.image_datastore,
            # The "import" content type (Proxmox VE 8.4+, enabled on the datastore) is what a
            # VM disk's import_from takes (bpg docs/resources/virtual_environment_vm.md).
            content_type="import",
            url=args.image_url,
            file_name=args.image_file_name,
            checksum=args.image_checksum,
            checksum_algorithm="sha256",
            overwrite=False,
            # A same-named file left by an earlier manual download is replaced instead of
            # failing the first `up` (VMs hold copies of the image, never the file itself).
            overwrite_unmanaged=True,
            opts=replace_in_place,
        )
        self.shared_vendor_data_file_id = None
        if args.shared_snippet_datastore is not None:
            # Same name, file and content as before per-VM snippets: its id does not change, so
            # the VMs booting from it are not replaced (initialization.vendorDataFileId).
            shared = proxmoxve.FileLegacy(
                f"{name}-vendor-data",
                node_name=args.node_name,
                datastore_id=args.shared_snippet_datastore,
                content_type="snippets",
                source_raw=proxmoxve.FileLegacySourceRawArgs(
                    data=render_shared_vendor_data(), file_name=SHARED_SNIPPET_NAME
                ),
                opts=replace_in_place,
            )
            self.shared_vendor_data_file_id = shared.id
        self.mappings = {
            m.name: proxmoxve.hardware.mapping.Pci(
                f"{name}-pci-{m.name}",
                name=m.name,
                comment="GPU for passthrough, managed by Pulumi (hybridgpu)",
                maps=[
                    proxmoxve.hardware.mapping.PciMapArgs(
                        id=m.device_id,
                        node=args.node_name,
                        path=m.path,
                        subsystem_id=m.subsystem_id,
                        iommu_group=m.iommu_group,
                    )
                ],
                opts=child,
            )
            for m in args.gpu_mappings
        }
        self.image_file_id = image.id
        self.register_outputs({"imageFileId": self.image_file_id})
