"""ProxmoxNodeAssets: what every VM on one Proxmox node shares: the cloud image (downloaded once
per node, verified by SHA-256), the cloud-init vendor snippet, and the node's GPU PCI mappings.

Both files have fixed names, and a change of url, checksum, file name or content replaces them
(bpg/terraform-provider-proxmox@v0.111.1: fwprovider/nodes/resource_download_file.go
RequiresReplace on url, checksum, file_name, content_type; proxmoxtf/resource/file.go ForceNew
on source_raw). Replacing create-first would download or upload the new file and then delete
it with the old one (same path), so both are deleted first. VMs keep running meanwhile: they
import the image only when they are created (components/proxmox/vm.py) and read the vendor
snippet only at first boot; its id does not change with its content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve
import yaml

VENDOR_SNIPPET_NAME = "hybridgpu-vendor.yaml"


def render_vendor_data() -> str:
    """cloud-init vendor data for every VM: the guest agent the provider waits for."""
    config = {
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
    snippets_datastore: str
    gpu_mappings: Sequence[GpuMapping] = ()


class ProxmoxNodeAssets(pulumi.ComponentResource):
    image_file_id: pulumi.Output[str]
    vendor_data_file_id: pulumi.Output[str]
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
        # Snippets are uploaded over SSH to the node (provider `ssh` block).
        vendor = proxmoxve.FileLegacy(
            f"{name}-vendor-data",
            node_name=args.node_name,
            datastore_id=args.snippets_datastore,
            content_type="snippets",
            source_raw=proxmoxve.FileLegacySourceRawArgs(
                data=render_vendor_data(), file_name=VENDOR_SNIPPET_NAME
            ),
            opts=replace_in_place,
        )
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
        self.vendor_data_file_id = vendor.id
        self.register_outputs(
            {"imageFileId": self.image_file_id, "vendorDataFileId": self.vendor_data_file_id}
        )
