"""ProxmoxVm: one k3s node as a Proxmox VE VM, GPUs passed through as PCIe devices.

Built on ``proxmoxve.VmLegacy``, the provider's full VM resource (the newer ``Vm`` is marked
experimental and has no PCI devices, disks or cloud-init; pulumi_proxmoxve 8.x docstrings).

Passthrough needs q35 + OVMF (PCIe root ports, UEFI option ROMs), CPU type ``host`` and memory
that is never ballooned (a passed-through device DMAs into guest memory, so all of it is pinned).
The EFI disk has no pre-enrolled Secure Boot keys, so NVIDIA's unsigned kernel modules load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_proxmoxve as proxmoxve

from components.base.ssh_keys import HostKey
from components.proxmox.node_assets import render_vendor_data, vendor_snippet_name

MAX_HOSTPCI = 16  # hostpci0..hostpci15 (qm.conf)

# What a change of each VmLegacy input does, from bpg/terraform-provider-proxmox@v0.111.1 (the
# provider pulumi-proxmoxve 8.6 bridges). These inputs replace the VM (destroy + create):
REPLACING_INPUTS: tuple[str, ...] = (
    "vmId",  # proxmoxtf/resource/vm/vm.go: CustomizeDiff ForceNewIf(mkVMID)
    "nodeName",  # vm.go: ForceNewIf(mkNodeName) unless `migrate`, which we leave off
    "disks[*].fileId",  # vm/disk/schema.go: mkDiskFileID ForceNew
    "initialization.userDataFileId",  # vm.go: mkInitializationUserDataFileID ForceNew
    "initialization.vendorDataFileId",  # vm.go: mkInitializationVendorDataFileID ForceNew
    "initialization.networkDataFileId",  # vm.go: mkInitializationNetworkDataFileID ForceNew
    "initialization.metaDataFileId",  # vm.go: mkInitializationMetaDataFileID ForceNew
    "initialization.type",  # vm.go: mkInitializationType ForceNew
    "efiDisk.type",  # vm.go: forceNewOnEFIDiskTypeChange
    "tpmState.version",  # vm.go: forceNewOnTPMVersionChange
    "clone",  # vm.go: every mkClone* ForceNew
    "amdSev",  # vm.go: mkAMDSEV ForceNew
)
# Inputs this program changes on day 2 that the provider updates in place (vm.go vmUpdate):
# cpu, memory and hostpcis (mkHostPCI ForceNew: false) are applied by stopping and starting the
# VM (`reboot_after_update`, default true); disks[*].size grows the disk (vmUpdateDiskSize);
# disks[*].importFrom is "only used during initial creation; changes after creation are
# ignored" (vm/disk/schema.go, and disk.go: "Never re-import existing disks", bpg#2385).


@dataclass(frozen=True)
class ProxmoxVmArgs:
    node_name: str
    """Proxmox node the VM runs on."""
    vm_id: int
    name: str
    cores: int
    memory_mib: int
    os_disk_gib: int
    datastore_id: str
    image_file_id: pulumi.Input[str]
    """Cloud image (``download.File`` id, ``import`` content) the OS disk is imported from at
    creation; a later change never touches the running VM (``import_from``)."""
    bridge: str
    ip_cidr: str
    """Static address with prefix, e.g. ``192.168.10.21/24``."""
    gateway: str
    dns_servers: Sequence[str]
    ssh_user: str
    ssh_public_keys: Sequence[str]
    snippets_datastore: str
    """Where the VM's cloud-init vendor snippet is uploaded (over the provider's SSH)."""
    host_key: pulumi.Output[HostKey] | None
    """The VM's SSH host key (secret), installed by cloud-init at first boot from the VM's own
    vendor snippet. None only with ``existing_vendor_data_file_id``."""
    vlan_id: int | None = None
    search_domain: str | None = None
    scratch_disk_gib: int = 0
    """Second disk for fast scratch space (GPU workers); 0 for none."""
    gpu_mappings: Sequence[pulumi.Input[str]] = ()
    """Names of Proxmox PCI resource mappings to pass through (works with API tokens): the
    mapping resources' ``name`` outputs, so the VM depends on them (and is destroyed first)."""
    gpu_raw_ids: Sequence[str] = ()
    """Raw PCI addresses instead of mappings. Proxmox refuses these for API tokens ("only root
    can set 'hostpci0' config for non-mapped devices", bpg/terraform-provider-proxmox#495):
    only with root password auth."""
    role: str = "k3s"
    tags: Sequence[str] = field(default_factory=tuple)
    protect: bool = False
    """Refuse to delete or replace the VM (control planes: etcd members)."""
    existing_vendor_data_file_id: pulumi.Input[str] | None = None
    """A VM created before per-VM snippets keeps booting from this one (the node-wide snippet):
    a new vendor snippet id would replace the VM (REPLACING_INPUTS)."""

    def __post_init__(self) -> None:
        if (self.host_key is None) == (self.existing_vendor_data_file_id is None):
            raise ValueError(
                f"{self.name}: give a host_key or an existing_vendor_data_file_id, exactly one"
            )
        if self.gpu_mappings and self.gpu_raw_ids:
            raise ValueError(f"{self.name}: give gpu_mappings or gpu_raw_ids, not both")
        if len(self.gpu_mappings) + len(self.gpu_raw_ids) > MAX_HOSTPCI:
            raise ValueError(f"{self.name}: at most {MAX_HOSTPCI} PCI devices")


def hostpci_devices(args: ProxmoxVmArgs) -> list[proxmoxve.VmLegacyHostpciArgs]:
    """One hostpci entry per GPU, PCIe (q35 only), ROM BAR on for the GPU's option ROM."""
    if args.gpu_mappings:
        return [
            proxmoxve.VmLegacyHostpciArgs(device=f"hostpci{i}", mapping=m, pcie=True, rombar=True)
            for i, m in enumerate(args.gpu_mappings)
        ]
    return [
        proxmoxve.VmLegacyHostpciArgs(device=f"hostpci{i}", id=pci, pcie=True, rombar=True)
        for i, pci in enumerate(args.gpu_raw_ids)
    ]


class ProxmoxVm(pulumi.ComponentResource):
    vm: proxmoxve.VmLegacy
    vm_id: pulumi.Output[int]

    def __init__(self, name: str, args: ProxmoxVmArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hybridgpu:proxmox:ProxmoxVm", name, None, opts)
        # The VM's own vendor snippet: guest agent and its SSH host key. Uploaded over SSH to the
        # Proxmox node (provider `ssh` block). A content change replaces the file
        # (bpg/terraform-provider-proxmox@v0.111.1 proxmoxtf/resource/file.go: ForceNew on
        # source_raw) under the same id, so the VM is not replaced; cloud-init reads it only at
        # a VM's first boot. Deleted first: the new file has the same path.
        vendor_data_file_id = args.existing_vendor_data_file_id
        if args.host_key is not None:
            vendor = proxmoxve.FileLegacy(
                f"{name}-vendor-data",
                node_name=args.node_name,
                datastore_id=args.snippets_datastore,
                content_type="snippets",
                source_raw=proxmoxve.FileLegacySourceRawArgs(
                    data=pulumi.Output.secret(
                        args.host_key.apply(
                            lambda k: render_vendor_data(k.private_openssh, k.public_line)
                        )
                    ),
                    file_name=vendor_snippet_name(args.name),
                ),
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            )
            vendor_data_file_id = vendor.id
        disks = [
            proxmoxve.VmLegacyDiskArgs(
                interface="scsi0",
                datastore_id=args.datastore_id,
                # Not file_id, which forces a new VM whenever the image changes (REPLACING_INPUTS).
                import_from=args.image_file_id,
                size=args.os_disk_gib,
                iothread=True,
                discard="on",
                ssd=True,
            )
        ]
        if args.scratch_disk_gib:
            disks.append(
                proxmoxve.VmLegacyDiskArgs(
                    interface="scsi1",
                    datastore_id=args.datastore_id,
                    size=args.scratch_disk_gib,
                    iothread=True,
                    discard="on",
                    ssd=True,
                    # Scratch is scratch: keep it out of vzdump backups.
                    backup=False,
                )
            )
        self.vm = proxmoxve.VmLegacy(
            f"{name}-vm",
            node_name=args.node_name,
            vm_id=args.vm_id,
            name=args.name,
            description="Managed by Pulumi (hybridgpu); changes here are overwritten.",
            tags=sorted({"hybridgpu", args.role, *args.tags}),
            machine="q35",
            bios="ovmf",
            efi_disk=proxmoxve.VmLegacyEfiDiskArgs(
                datastore_id=args.datastore_id, type="4m", pre_enrolled_keys=False
            ),
            cpu=proxmoxve.VmLegacyCpuArgs(type="host", cores=args.cores, sockets=1),
            memory=proxmoxve.VmLegacyMemoryArgs(dedicated=args.memory_mib, floating=0),
            scsi_hardware="virtio-scsi-single",
            disks=disks,
            network_devices=[
                proxmoxve.VmLegacyNetworkDeviceArgs(
                    bridge=args.bridge, model="virtio", vlan_id=args.vlan_id
                )
            ],
            hostpcis=hostpci_devices(args),
            operating_system=proxmoxve.VmLegacyOperatingSystemArgs(type="l26"),
            serial_devices=[proxmoxve.VmLegacySerialDeviceArgs(device="socket")],
            # The vendor snippet installs qemu-guest-agent; without it the provider would wait
            # for the agent (15 min by default) on every create.
            agent=proxmoxve.VmLegacyAgentArgs(enabled=True, timeout="10m"),
            initialization=proxmoxve.VmLegacyInitializationArgs(
                datastore_id=args.datastore_id,
                ip_configs=[
                    proxmoxve.VmLegacyInitializationIpConfigArgs(
                        ipv4=proxmoxve.VmLegacyInitializationIpConfigIpv4Args(
                            address=args.ip_cidr, gateway=args.gateway
                        )
                    )
                ],
                dns=proxmoxve.VmLegacyInitializationDnsArgs(
                    servers=list(args.dns_servers), domain=args.search_domain
                ),
                user_account=proxmoxve.VmLegacyInitializationUserAccountArgs(
                    username=args.ssh_user, keys=list(args.ssh_public_keys)
                ),
                vendor_data_file_id=vendor_data_file_id,
            ),
            on_boot=True,
            started=True,
            # A passthrough GPU is only reset by a full stop (cps-gpu-cluster troubleshooting).
            stop_on_destroy=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                # The VM id is fixed: a replacement created first would fail ("VM already
                # exists"), and two VMs would claim the same IP and GPUs.
                delete_before_replace=True,
                protect=args.protect,
            ),
        )
        self.vm_id = self.vm.vm_id.apply(lambda v: int(v or args.vm_id))
        self.register_outputs({"vmId": self.vm_id})
