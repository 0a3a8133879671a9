"""The homelab's Proxmox side of ``hybridgpu:homelab``: the API and its nodes, the cloud image,
the LAN, GPU PCI mappings and the VMs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from pydantic import Field, field_validator

from stacks.config.fields import AddressOrHostName, DnsLabel, Model


def reject_duplicates(places: Iterable[tuple[str, object]], field: str) -> None:
    """Raise on the second (place, value) pair whose value was seen before, naming both places."""
    seen: dict[object, str] = {}
    for place, value in places:
        if value in seen:
            raise ValueError(
                f"{place}.{field}: '{value}' is already used by {seen[value]}; each must be unique"
            )
        seen[value] = place


class ProxmoxNode(Model):
    name: DnsLabel
    ssh_address: AddressOrHostName
    """Host name or IP the provider uses for SSH (snippet uploads)."""


class ProxmoxSettings(Model):
    endpoint: str = Field(pattern=r"^https://[^\s/]+(:\d+)?/?$")
    insecure: bool = False
    """Skip TLS verification of the API; only for a self-signed certificate you cannot replace."""
    ssh_username: str = "root"
    nodes: tuple[ProxmoxNode, ...] = Field(min_length=1)
    vm_datastore: str = "local-lvm"
    snippets_datastore: str = "local"
    image_datastore: str = "local"

    @field_validator("nodes")
    @classmethod
    def _unique_nodes(cls, value: tuple[ProxmoxNode, ...]) -> tuple[ProxmoxNode, ...]:
        reject_duplicates(((f"[{i}]", n.name) for i, n in enumerate(value)), "name")
        return value


class CloudImage(Model):
    url: str = Field(pattern=r"^https://\S+$")
    checksum: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the image: a pinned image, verified by Proxmox on download."""
    file_name: str = Field(pattern=r"^[A-Za-z0-9._-]+\.(qcow2|raw)$")
    """Name on the image datastore (``import`` content, Proxmox VE 8.4+): ``.qcow2`` or ``.raw``
    as the image's format is (Ubuntu's ``.img`` cloud images are qcow2)."""


class LanSettings(Model):
    gateway: ipaddress.IPv4Address
    dns_servers: tuple[ipaddress.IPv4Address, ...] = Field(min_length=1)
    bridge: str = "vmbr0"
    vlan_id: int | None = Field(default=None, ge=1, le=4094)
    search_domain: str | None = None


class PciMapping(Model):
    """One GPU as a Proxmox PCI resource mapping (usable with API tokens)."""

    name: DnsLabel
    proxmox_node: DnsLabel
    path: str = Field(pattern=r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
    device_id: str = Field(pattern=r"^[0-9a-f]{4}:[0-9a-f]{4}$")
    """vendor:device, e.g. 10de:20b0 (lspci -nn)."""
    subsystem_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{4}:[0-9a-f]{4}$")
    iommu_group: int | None = Field(default=None, ge=0)


class VmSpec(Model):
    name: DnsLabel
    vm_id: int = Field(ge=100, le=999_999_999)
    proxmox_node: DnsLabel
    ip: ipaddress.IPv4Address
    overlay_ip: ipaddress.IPv4Address
    cores: int = Field(default=4, ge=1, le=512)
    memory_mib: int = Field(default=16384, ge=1024)
    disk_gib: int = Field(default=100, ge=10)


class GpuWorkerVm(VmSpec):
    cores: int = Field(default=16, ge=1, le=512)
    memory_mib: int = Field(default=131072, ge=1024)
    disk_gib: int = Field(default=500, ge=10)
    scratch_disk_gib: int = Field(default=1000, ge=0)
    gpus: tuple[DnsLabel, ...] = Field(min_length=1)
    """Names of PCI mappings (``pciMappings[].name``) passed through to this VM."""
    gpu_model: str = "nvidia-a100"
