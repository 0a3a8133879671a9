"""The homelab stack's settings (``hybridgpu:homelab``): Proxmox, cloud image, LAN, VMs and GPU
mappings, k3s, federation client side, Ollama/Open WebUI and the GPU platform."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from components.kube.charts import (
    JUPYTER_GPU_IMAGE,
    OLLAMA_IMAGE,
    OPEN_WEBUI_IMAGE,
)
from stacks.config.errors import ConfigError, validate
from stacks.config.fields import (
    KEEP_ALIVE_PATTERN,
    AddressOrHostName,
    DnsLabel,
    HostName,
    Model,
    PinnedImage,
    Quantity,
    SshPublicKey,
    key,
)
from stacks.config.project import ProjectSettings


class ProxmoxNode(Model):
    name: DnsLabel
    ssh_address: str
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
        _reject_duplicates(((f"[{i}]", n.name) for i, n in enumerate(value)), "name")
        return value


class CloudImage(Model):
    url: str = Field(pattern=r"^https://\S+$")
    checksum: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the image: a pinned image, verified by Proxmox on download."""
    file_name: str = Field(pattern=r"^[A-Za-z0-9._-]+\.(img|qcow2|raw)$")


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


class HomelabK3sSettings(Model):
    api_endpoint: str | None = None
    """Address clients use for the API (a VIP or DNS name); defaults to the first server's IP.
    Added to every server's ``tls-san``."""
    disable: tuple[str, ...] = ("servicelb",)
    """Packaged k3s components to disable. Traefik stays: Open WebUI is exposed through it."""


class OffloadResources(Model):
    """What the AWS cluster is advertised as on the homelab's virtual node. Fixed, so the node
    keeps its GPU while the EC2 worker is stopped and a GPU pod can wait for it to start."""

    cpu: Quantity = "4"
    memory_gib: int = Field(default=16, ge=1)
    pods: int = Field(default=110, ge=1)
    gpus: int = Field(default=1, ge=1)


class HomelabFederationSettings(Model):
    cluster_id: DnsLabel = "homelab"
    offload: OffloadResources = OffloadResources()


class OllamaSettings(Model):
    image: PinnedImage = OLLAMA_IMAGE
    keep_alive: str = Field(default="30m", pattern=KEEP_ALIVE_PATTERN.pattern)
    """How long a model stays loaded after the last request (OLLAMA_KEEP_ALIVE)."""
    max_loaded_models: int = Field(default=1, ge=1)
    memory_gib: int = Field(default=12, ge=1)
    """Memory request and limit of the Ollama pod (host RAM for model loading)."""
    client_namespaces: tuple[DnsLabel, ...] = ()
    """Namespaces besides Open WebUI's whose pods may call Ollama (network policy)."""


class OpenWebUiSettings(Model):
    image: PinnedImage = OPEN_WEBUI_IMAGE
    hostname: HostName
    """Host name of the Traefik ingress (point DNS at the homelab nodes)."""
    admin_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    """The admin account created at first start (password: output ``openWebuiAdminPassword``)."""
    storage_gib: int = Field(default=10, ge=1)
    tls_secret: DnsLabel | None = None
    """TLS secret for the host name in the LLM namespace; without it Traefik serves its default
    certificate on the websecure entry point."""


class GpuOperatorSettings(Model):
    driver: Literal["operator", "preinstalled"] = "operator"
    """``operator``: the GPU Operator builds and loads the NVIDIA driver in a container;
    ``preinstalled``: the VMs already have it (driver.enabled=false)."""


class NfsSettings(Model):
    server: AddressOrHostName
    path: str = Field(pattern=r"^/[^\s]*$")
    mount_options: tuple[str, ...] = ("nfsvers=4.1", "hard")


class AuthenticatorSettings(Model):
    """JupyterHub login through an OAuth provider; the client secret is the stack secret
    ``jupyterhubClientSecret``."""

    kind: Literal["github", "generic-oauth"]
    client_id: str = Field(min_length=1)
    admin_users: tuple[str, ...] = Field(min_length=1)
    allowed_users: tuple[str, ...] = ()
    allowed_organizations: tuple[str, ...] = ()
    """GitHub only: members of these organizations may log in."""
    authorize_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    token_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    userdata_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    username_claim: str = "preferred_username"

    @model_validator(mode="after")
    def _complete(self) -> AuthenticatorSettings:
        if self.kind == "generic-oauth":
            missing = [
                name
                for name, value in (
                    ("authorizeUrl", self.authorize_url),
                    ("tokenUrl", self.token_url),
                    ("userdataUrl", self.userdata_url),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"kind 'generic-oauth' needs {', '.join(missing)}")
        if self.allowed_organizations and self.kind != "github":
            raise ValueError("allowedOrganizations works with kind 'github' only")
        return self


class JupyterHubSettings(Model):
    hostname: HostName
    authenticator: AuthenticatorSettings
    image: PinnedImage = JUPYTER_GPU_IMAGE
    gpu_profiles: tuple[Annotated[int, Field(ge=1)], ...] | None = None
    """GPU counts offered as profiles (besides CPU-only); default 1 up to the GPUs per worker."""
    cull_timeout_seconds: int = Field(default=3600, gt=0)
    """Idle servers are stopped after this long."""
    cull_every_seconds: int = Field(default=600, gt=0)
    user_storage_gib: int = Field(default=10, ge=1)
    scratch_gib: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _cull_check_fits(self) -> JupyterHubSettings:
        if self.cull_every_seconds > self.cull_timeout_seconds:
            raise ValueError(
                f"cullEverySeconds: {self.cull_every_seconds} is longer than "
                f"cullTimeoutSeconds ({self.cull_timeout_seconds}); idle servers would outlive "
                "the timeout"
            )
        if self.gpu_profiles is not None and list(self.gpu_profiles) != sorted(
            set(self.gpu_profiles)
        ):
            raise ValueError(f"gpuProfiles: {list(self.gpu_profiles)} must be distinct, ascending")
        return self


class RancherSettings(Model):
    enabled: bool = False
    hostname: HostName | None = None

    @model_validator(mode="after")
    def _hostname_when_enabled(self) -> RancherSettings:
        if self.enabled and self.hostname is None:
            raise ValueError("hostname: required when enabled is true")
        return self


class PlatformSettings(Model):
    gpu_operator: GpuOperatorSettings = GpuOperatorSettings()
    nfs: NfsSettings
    scratch_path: str = Field(default="/mnt/scratch", pattern=r"^/[A-Za-z0-9/_.-]+$")
    """Where each GPU worker mounts its scratch disk (the ``fast-scratch`` class)."""
    jupyterhub: JupyterHubSettings
    rancher: RancherSettings = RancherSettings()


class HomelabSettings(Model):
    aws_stack: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    """Full name of the aws-gpu stack (``organization/hybridgpu/aws-gpu`` on a local backend)."""
    proxmox: ProxmoxSettings
    image: CloudImage
    lan: LanSettings
    ssh_user: str = "ubuntu"
    ssh_public_keys: tuple[SshPublicKey, ...] = Field(min_length=1)
    k3s: HomelabK3sSettings = HomelabK3sSettings()
    pci_mappings: tuple[PciMapping, ...] = ()
    allow_raw_pci_ids: bool = False
    """Pass GPUs by raw PCI id instead of mappings. Needs root password auth on Proxmox (raw ids
    are refused for API tokens, bpg/terraform-provider-proxmox#495); off by default."""
    control_planes: tuple[VmSpec, ...] = Field(min_length=1)
    gpu_workers: tuple[GpuWorkerVm, ...] = ()
    federation: HomelabFederationSettings = HomelabFederationSettings()
    ollama: OllamaSettings = OllamaSettings()
    open_webui: OpenWebUiSettings
    platform: PlatformSettings

    @field_validator("control_planes")
    @classmethod
    def _odd_quorum(cls, value: tuple[VmSpec, ...]) -> tuple[VmSpec, ...]:
        # etcd needs a majority; an even count adds a failure point without adding tolerance
        # (https://etcd.io/docs/v3.5/faq/#why-an-odd-number-of-cluster-members).
        if len(value) % 2 == 0 or len(value) > 7:
            raise ValueError(f"{len(value)} control planes; allowed: 1, 3, 5 or 7 (odd, for etcd)")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> HomelabSettings:
        placed = [(f"{group}[{i}]", vm) for group, i, vm in self.vms_with_place()]
        _reject_duplicates(((where, vm.name) for where, vm in placed), "name")
        _reject_duplicates(((where, vm.vm_id) for where, vm in placed), "vmId")
        _reject_duplicates(((where, vm.ip) for where, vm in placed), "ip")
        _reject_duplicates(
            ((f"pciMappings[{i}]", m.name) for i, m in enumerate(self.pci_mappings)), "name"
        )
        known_nodes = {n.name for n in self.proxmox.nodes}
        mappings = {m.name: m for m in self.pci_mappings}
        for group, i, vm in self.vms_with_place():
            if vm.proxmox_node not in known_nodes:
                raise ValueError(
                    f"{group}[{i}].proxmoxNode: '{vm.proxmox_node}' is not a configured "
                    f"Proxmox node; known: {sorted(known_nodes)} (proxmox.nodes)"
                )
        used: dict[str, str] = {}
        for i, worker in enumerate(self.gpu_workers):
            for gpu in worker.gpus:
                if gpu in used:
                    raise ValueError(
                        f"gpuWorkers[{i}].gpus: mapping '{gpu}' is already passed to "
                        f"'{used[gpu]}'; a GPU can be given to one VM only"
                    )
                used[gpu] = worker.name
                mapping = mappings.get(gpu)
                if mapping is None:
                    raise ValueError(
                        f"gpuWorkers[{i}].gpus: '{gpu}' is not in pciMappings; known: "
                        f"{sorted(mappings)}"
                    )
                if mapping.proxmox_node != worker.proxmox_node:
                    raise ValueError(
                        f"gpuWorkers[{i}].gpus: mapping '{gpu}' is on Proxmox node "
                        f"'{mapping.proxmox_node}' but the VM runs on '{worker.proxmox_node}'"
                    )
        largest = self.max_gpus_per_worker
        for count in self.platform.jupyterhub.gpu_profiles or ():
            if count > largest:
                raise ValueError(
                    f"platform.jupyterhub.gpuProfiles: a {count}-GPU profile cannot be "
                    f"scheduled; the largest GPU worker has {largest} GPU(s) (gpuWorkers[].gpus)"
                )
        return self

    @property
    def max_gpus_per_worker(self) -> int:
        return max((len(w.gpus) for w in self.gpu_workers), default=0)

    @property
    def jupyter_gpu_profiles(self) -> tuple[int, ...]:
        """GPU counts offered by JupyterHub: configured, else 1 up to the largest worker's."""
        configured = self.platform.jupyterhub.gpu_profiles
        if configured is not None:
            return configured
        return tuple(range(1, self.max_gpus_per_worker + 1))

    @property
    def all_vms(self) -> tuple[VmSpec, ...]:
        return (*self.control_planes, *self.gpu_workers)

    def vms_with_place(self) -> list[tuple[str, int, VmSpec]]:
        """(config list name, index, vm) for every VM, for error messages that name the key."""
        return [
            *(("controlPlanes", i, vm) for i, vm in enumerate(self.control_planes)),
            *(("gpuWorkers", i, vm) for i, vm in enumerate(self.gpu_workers)),
        ]


def _reject_duplicates(places: Iterable[tuple[str, object]], field: str) -> None:
    """Raise on the second (place, value) pair whose value was seen before, naming both places."""
    seen: dict[object, str] = {}
    for place, value in places:
        if value in seen:
            raise ValueError(
                f"{place}.{field}: '{value}' is already used by {seen[value]}; each must be unique"
            )
        seen[value] = place


def parse_homelab(project: ProjectSettings, raw: Any) -> HomelabSettings:
    """Validate ``hybridgpu:homelab`` and its links to the project-wide plan."""
    homelab = validate(HomelabSettings, raw, "homelab")
    lan = project.network.homelab_lan_cidr
    overlay = project.network.nebula_overlay_cidr
    if homelab.lan.gateway not in lan:
        raise ConfigError(
            f"{key('homelab')}.lan.gateway: {homelab.lan.gateway} is outside "
            f"{key('homelabLanCidr')} {lan}"
        )
    seen_overlay: dict[ipaddress.IPv4Address, str] = {}
    for group, i, vm in homelab.vms_with_place():
        where = f"{key('homelab')}.{group}[{i}]"
        if vm.ip not in lan or vm.ip in (lan.network_address, lan.broadcast_address):
            raise ConfigError(
                f"{where}.ip: {vm.ip} is not a host address of {key('homelabLanCidr')} {lan}"
            )
        if vm.ip == homelab.lan.gateway:
            raise ConfigError(f"{where}.ip: {vm.ip} is the LAN gateway")
        if vm.overlay_ip not in overlay:
            raise ConfigError(
                f"{where}.overlayIp: {vm.overlay_ip} is outside "
                f"{key('nebulaOverlayCidr')} {overlay}"
            )
        if vm.overlay_ip in project.nebula.operator_cidr:
            raise ConfigError(
                f"{where}.overlayIp: {vm.overlay_ip} is inside {key('nebulaOperatorCidr')} "
                f"{project.nebula.operator_cidr}, which is kept for operators"
            )
        if vm.overlay_ip in seen_overlay:
            raise ConfigError(
                f"{where}.overlayIp: {vm.overlay_ip} is already used by "
                f"'{seen_overlay[vm.overlay_ip]}'"
            )
        seen_overlay[vm.overlay_ip] = vm.name
    return homelab
