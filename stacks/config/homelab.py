"""The homelab stack's settings (``hybridgpu:homelab``): Proxmox, cloud image, LAN and its
addresses (API VIP, load-balancer pool), VMs and GPU mappings, k3s, the federation client side;
the apps' and platform's sections live in ``homelab_apps``."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from stacks.config.errors import ConfigError, validate
from stacks.config.fields import (
    DnsLabel,
    Ed25519HostKey,
    Model,
    Quantity,
    SshPublicKey,
    key,
)
from stacks.config.homelab_apps import (
    ImageDigests,
    MonitoringSettings,
    OllamaSettings,
    OpenWebUiSettings,
    PlatformSettings,
)
from stacks.config.operations import BackupSettings, TeamSettings, check_teams
from stacks.config.project import ProjectSettings
from stacks.config.proxmox import (
    CloudImage,
    GpuWorkerVm,
    LanSettings,
    PciMapping,
    ProxmoxSettings,
    VmSpec,
    reject_duplicates,
)
from stacks.config.tls import TlsSettings

# What the program relies on from k3s's packaged components (https://docs.k3s.io/installation/
# packaged-components): Traefik serves every web app, local-storage the SQLite volumes, and
# servicelb must be off because MetalLB answers LoadBalancer Services.
K3S_COMPONENTS_KEPT = ("traefik", "local-storage")
K3S_COMPONENTS_DISABLED = ("servicelb",)


class HomelabK3sSettings(Model):
    api_vip: ipaddress.IPv4Address | None = None
    """The API's address on the LAN, held by kube-vip on whichever server leads (required with
    more than one control plane). Pulumi, joining nodes and Liqo use it; on every certificate."""
    vip_interface: str = Field(default="eth0", pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    """The servers' LAN interface the VIP is added to (Proxmox cloud-init names it eth0)."""
    disable: tuple[str, ...] = Field(
        default=K3S_COMPONENTS_DISABLED,
        json_schema_extra={
            "allowed": "must include "
            + ", ".join(K3S_COMPONENTS_DISABLED)
            + "; never "
            + " or ".join(K3S_COMPONENTS_KEPT)
        },
    )
    """Packaged k3s components to disable."""

    @field_validator("disable")
    @classmethod
    def _components_the_program_needs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        kept = sorted(set(value) & set(K3S_COMPONENTS_KEPT))
        if kept:
            raise ValueError(
                f"{kept} must stay enabled (Traefik serves the web apps, local-storage the "
                "SQLite volumes of JupyterHub and Open WebUI)"
            )
        missing = sorted(set(K3S_COMPONENTS_DISABLED) - set(value))
        if missing:
            raise ValueError(
                f"{missing} must be disabled: MetalLB (homelab.loadBalancer) answers "
                "LoadBalancer Services, and two controllers would fight over them"
            )
        return value


class LoadBalancerSettings(Model):
    """LAN addresses MetalLB hands to LoadBalancer Services (layer 2: the address moves to a
    healthy node). Keep them outside your DHCP range."""

    first_address: ipaddress.IPv4Address
    last_address: ipaddress.IPv4Address
    ingress_address: ipaddress.IPv4Address | None = None
    """Traefik's address, where DNS for the web apps' host names points; default: the first."""

    @model_validator(mode="after")
    def _ordered(self) -> LoadBalancerSettings:
        if self.last_address < self.first_address:
            raise ValueError(
                f"lastAddress: {self.last_address} is before firstAddress {self.first_address}"
            )
        if not self.first_address <= self.ingress <= self.last_address:
            raise ValueError(
                f"ingressAddress: {self.ingress} is outside the pool "
                f"{self.first_address}-{self.last_address}"
            )
        return self

    @property
    def ingress(self) -> ipaddress.IPv4Address:
        return self.ingress_address or self.first_address

    def contains(self, address: ipaddress.IPv4Address) -> bool:
        return self.first_address <= address <= self.last_address


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


class HomelabSettings(Model):
    aws_stack: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    """Full name of the aws-gpu stack (``organization/hybridgpu/aws-gpu`` on a local backend)."""
    proxmox: ProxmoxSettings
    image: CloudImage
    lan: LanSettings
    ssh_user: str = "ubuntu"
    ssh_public_keys: tuple[SshPublicKey, ...] = Field(min_length=1)
    k3s: HomelabK3sSettings = HomelabK3sSettings()
    load_balancer: LoadBalancerSettings
    pci_mappings: tuple[PciMapping, ...] = ()
    pci_mappings_created_by: Literal["pulumi", "admin"] = "pulumi"
    """``admin``: the ``pciMappings`` exist on Proxmox already (created once by an administrator)
    and VMs only use them by name, so the API token needs ``Mapping.Use`` on those mappings and
    no ``Mapping.Modify`` (README "Proxmox least privilege"). ``pulumi``: the program creates
    them (the token then needs ``Mapping.Modify``)."""
    allow_raw_pci_ids: bool = False
    """Pass GPUs by raw PCI id instead of mappings. Needs root password auth on Proxmox (raw ids
    are refused for API tokens, bpg/terraform-provider-proxmox#495); off by default."""
    control_planes: tuple[VmSpec, ...] = Field(
        min_length=1, json_schema_extra={"allowed": "1, 3, 5 or 7 entries (an etcd quorum)"}
    )
    """The k3s servers (etcd members); the first initialises the cluster."""
    gpu_workers: tuple[GpuWorkerVm, ...] = ()
    existing_host_keys: dict[str, Ed25519HostKey] = Field(default_factory=dict)
    """VMs created before the program generated SSH host keys: VM name -> the ``ssh-ed25519``
    host key the VM already has (read over a trusted path, e.g. the Proxmox guest agent). Such a
    VM keeps its boot snippet (no replacement) and every connection pins this key."""
    federation: HomelabFederationSettings = HomelabFederationSettings()
    ollama: OllamaSettings = OllamaSettings()
    open_webui: OpenWebUiSettings
    platform: PlatformSettings
    teams: tuple[TeamSettings, ...] = ()
    """Namespaces with quotas and edit rights for their members (README "Day-N operations")."""
    backups: BackupSettings = BackupSettings()
    image_digests: ImageDigests = ImageDigests()
    monitoring: MonitoringSettings | None = None
    """Prometheus, Alertmanager and Grafana; absent: no monitoring stack."""
    tls: TlsSettings = TlsSettings()
    """cert-manager and the issuer of every ingress certificate (README "TLS certificates")."""

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
        reject_duplicates(((where, vm.name) for where, vm in placed), "name")
        reject_duplicates(((where, vm.vm_id) for where, vm in placed), "vmId")
        reject_duplicates(((where, vm.ip) for where, vm in placed), "ip")
        reject_duplicates(
            ((f"pciMappings[{i}]", m.name) for i, m in enumerate(self.pci_mappings)), "name"
        )
        known_nodes = {n.name for n in self.proxmox.nodes}
        mappings = {m.name: m for m in self.pci_mappings}
        for i, mapping in enumerate(self.pci_mappings):
            # Mappings are created per Proxmox node: one on a node the program does not manage
            # would be silently dropped.
            if mapping.proxmox_node not in known_nodes:
                raise ValueError(
                    f"pciMappings[{i}].proxmoxNode: '{mapping.proxmox_node}' is not a configured "
                    f"Proxmox node; known: {sorted(known_nodes)} (proxmox.nodes)"
                )
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
        self._check_existing_host_keys()
        if len(self.control_planes) > 1 and self.k3s.api_vip is None:
            raise ValueError(
                f"k3s.apiVip: required with {len(self.control_planes)} control planes: the API "
                "must not depend on the first one (a free LAN address, held by kube-vip)"
            )
        largest = self.max_gpus_per_worker
        for count in self.platform.jupyterhub.gpu_profiles or ():
            if count > largest:
                raise ValueError(
                    f"platform.jupyterhub.gpuProfiles: a {count}-GPU profile cannot be "
                    f"scheduled; the largest GPU worker has {largest} GPU(s) (gpuWorkers[].gpus)"
                )
        check_teams(self.teams, self.cluster_gpus)
        return self

    def _check_existing_host_keys(self) -> None:
        names = {vm.name for vm in self.all_vms}
        for name in self.existing_host_keys:
            if name not in names:
                raise ValueError(
                    f"existingHostKeys: '{name}' is not a VM of this stack; known: {sorted(names)}"
                )

    @property
    def cluster_gpus(self) -> int:
        """GPUs of the homelab's own workers (the offloaded AWS GPUs are the LLM namespace's)."""
        return sum(len(w.gpus) for w in self.gpu_workers)

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
    _check_lan_addresses(homelab, lan)
    for i, team in enumerate(homelab.teams):
        if team.namespace == project.llm_namespace:
            raise ConfigError(
                f"{key('homelab')}.teams[{i}].namespace: '{team.namespace}' is "
                f"{key('llmNamespace')}, offloaded to AWS with its own GPU quota "
                "(federation.offload.gpus); give the team its own namespace"
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


def _check_lan_addresses(homelab: HomelabSettings, lan: ipaddress.IPv4Network) -> None:
    """The VIP and the MetalLB pool must be free host addresses of the LAN: not a VM's, not the
    gateway's, DNS servers', NFS server's or a Proxmox node's."""
    taken: dict[ipaddress.IPv4Address, str] = {homelab.lan.gateway: "lan.gateway"}
    for i, dns in enumerate(homelab.lan.dns_servers):
        taken.setdefault(dns, f"lan.dnsServers[{i}]")
    for i, node in enumerate(homelab.proxmox.nodes):
        if _is_ipv4(node.ssh_address):
            taken.setdefault(ipaddress.IPv4Address(node.ssh_address), f"proxmox.nodes[{i}]")
    if _is_ipv4(homelab.platform.nfs.server):
        taken.setdefault(ipaddress.IPv4Address(homelab.platform.nfs.server), "platform.nfs.server")
    for group, i, vm in homelab.vms_with_place():
        taken.setdefault(vm.ip, f"{group}[{i}].ip")
    hosts = (lan.network_address, lan.broadcast_address)
    vip = homelab.k3s.api_vip
    if vip is not None:
        where = f"{key('homelab')}.k3s.apiVip"
        if vip not in lan or vip in hosts:
            raise ConfigError(
                f"{where}: {vip} is not a host address of {key('homelabLanCidr')} {lan}"
            )
        if vip in taken:
            raise ConfigError(f"{where}: {vip} is already used by {taken[vip]}")
        taken[vip] = "k3s.apiVip"
    pool = homelab.load_balancer
    where = f"{key('homelab')}.loadBalancer"
    for name, address in (("firstAddress", pool.first_address), ("lastAddress", pool.last_address)):
        if address not in lan or address in hosts:
            raise ConfigError(
                f"{where}.{name}: {address} is not a host address of {key('homelabLanCidr')} {lan}"
            )
    for address, owner in sorted(taken.items()):
        if pool.contains(address):
            raise ConfigError(
                f"{where}: {pool.first_address}-{pool.last_address} contains {address}, which "
                f"{owner} uses; MetalLB would hand it to a Service"
            )


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True
