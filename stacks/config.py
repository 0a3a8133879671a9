"""Typed stack configuration: the only place that reads ``pulumi.Config``.

Two kinds of keys (project namespace ``hybridgpu``):

* Project-wide simple keys (the network plan, versions, Nebula tunables). They are declared with
  a type, description and default in ``Pulumi.yaml`` so both stacks see the same plan; the models
  below repeat the defaults because the mock runtime does not apply ``Pulumi.yaml`` defaults
  (a test keeps the two in step).
* One structured object per stack (``hybridgpu:aws``, ``hybridgpu:homelab``) in
  ``Pulumi.<stack>.yaml``, plus secrets that are only ever read with the secret getters.

Every check runs before the first resource is registered. A failure raises :class:`ConfigError`
whose message names the config key, the bad value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from components.aws_cloud_init import LABEL_VALUE_PATTERN
from components.budget import MAX_EMAILS, MAX_NOTIFICATIONS
from components.charts import (
    JUPYTER_GPU_IMAGE,
    LIQO_DEFAULT_VERSION,
    OLLAMA_IMAGE,
    OPEN_WEBUI_IMAGE,
)
from components.model_bucket import MAX_NAME_PREFIX

PROJECT = "hybridgpu"
"""Config namespace: the project name in Pulumi.yaml."""

STACK_AWS_GPU = "aws-gpu"
STACK_HOMELAB = "homelab"
KNOWN_STACKS = (STACK_AWS_GPU, STACK_HOMELAB)


class ConfigError(pulumi.RunError):
    """Invalid stack configuration. ``RunError`` makes the Pulumi CLI print it without a trace."""


# --------------------------------------------------------------------------------------------
# Reusable field types
# --------------------------------------------------------------------------------------------

# k3s release tags look like v1.33.5+k3s1 (https://github.com/k3s-io/k3s/releases). A channel
# name ("stable", "latest") or a bare minor would let two `pulumi up` runs install different code.
K3S_VERSION_PATTERN = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
# Helm chart and image versions must be exact: 1.2.3 or v1.2.3, optional pre-release suffix.
EXACT_VERSION_PATTERN = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
DNS_LABEL_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SSH_PUBLIC_KEY_PATTERN = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com)"
    r" [A-Za-z0-9+/=]+( .*)?$"
)


def _k3s_version(value: str) -> str:
    if not K3S_VERSION_PATTERN.match(value):
        raise ValueError(
            f"'{value}' is not a pinned k3s release; use an exact tag such as v1.33.5+k3s1 "
            "(channels like 'stable' or 'latest' are not allowed)"
        )
    return value


def _exact_version(value: str) -> str:
    if not EXACT_VERSION_PATTERN.match(value):
        raise ValueError(f"'{value}' is not an exact version; pin it, e.g. 1.2.3 or v1.2.3")
    return value


def _dns_label(value: str) -> str:
    if not DNS_LABEL_PATTERN.match(value):
        raise ValueError(
            f"'{value}' is not a DNS label (lower-case letters, digits and '-', 1-63 characters, "
            "starting and ending with a letter or digit)"
        )
    return value


def _ssh_public_key(value: str) -> str:
    if not SSH_PUBLIC_KEY_PATTERN.match(value.strip()):
        raise ValueError(
            "is not an OpenSSH public key line ('ssh-ed25519 AAAA... comment'); never put a "
            "private key here"
        )
    return value.strip()


# RFC 1123 host name: dot-separated DNS labels, 253 characters at most.
HOST_NAME_PATTERN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)
# Kubernetes resource quantity (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/).
QUANTITY_PATTERN = re.compile(r"^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
# Ollama's OLLAMA_KEEP_ALIVE: a Go duration ("30m", "1h30m"), seconds, or -1 for forever
# (https://github.com/ollama/ollama/blob/main/envconfig/config.go, KeepAlive).
KEEP_ALIVE_PATTERN = re.compile(r"^(-1|\d+|(\d+(\.\d+)?(ns|us|ms|s|m|h))+)$")


def _host_name(value: str) -> str:
    if not HOST_NAME_PATTERN.match(value):
        raise ValueError(
            f"'{value}' is not a host name (lower-case DNS labels separated by dots, e.g. "
            "chat.lab.example)"
        )
    return value


def _address_or_host_name(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not HOST_NAME_PATTERN.match(value):
            raise ValueError(
                f"'{value}' is neither an IP address nor a host name (e.g. 192.168.10.5 or "
                "nas.lab.example)"
            ) from None
    return value


def _pinned_image(value: str) -> str:
    name, _, tag = value.rpartition(":")
    if "@sha256:" in value:
        return value
    if not name or "/" in tag or tag in ("", "latest"):
        raise ValueError(
            f"'{value}' is not a pinned image; give an exact tag (repo/image:1.2.3) or a digest"
        )
    return value


K3sVersion = Annotated[str, AfterValidator(_k3s_version)]
ExactVersion = Annotated[str, AfterValidator(_exact_version)]
DnsLabel = Annotated[str, AfterValidator(_dns_label)]
SshPublicKey = Annotated[str, AfterValidator(_ssh_public_key)]
HostName = Annotated[str, AfterValidator(_host_name)]
AddressOrHostName = Annotated[str, AfterValidator(_address_or_host_name)]
PinnedImage = Annotated[str, AfterValidator(_pinned_image)]
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN.pattern)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _yaml_key(field_name: str) -> str:
    """snake_case field -> the camelCase YAML key, keeping binary units readable (diskGiB)."""
    first, *rest = field_name.split("_")
    camel = first + "".join(part[:1].upper() + part[1:] for part in rest)
    return re.sub(r"(Gi|Mi)b(?=[A-Z]|$)", r"\1B", camel)


class Model(BaseModel):
    """Base of every config model: camelCase keys as in the YAML, unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=_yaml_key, populate_by_name=True
    )


def _admin_cidr(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    if value.prefixlen == 0:
        raise ValueError(
            f"'{value}' opens SSH to the whole internet; give your own public address "
            "as a /32 (or a small office range)"
        )
    return value


AdminCidr = Annotated[ipaddress.IPv4Network, AfterValidator(_admin_cidr)]


# --------------------------------------------------------------------------------------------
# Project-wide keys (Pulumi.yaml)
# --------------------------------------------------------------------------------------------


class NetworkPlan(Model):
    """Every address range of the system. All must be pairwise disjoint, except that the AWS
    subnet lies inside the AWS VPC.

    The k3s defaults 10.42.0.0/16 (pods) and 10.43.0.0/16 (services) are kept for the homelab;
    the AWS cluster gets its own pair so Liqo can route between the two without remapping, and
    the Nebula overlay stays clear of both (the source design's 10.42.0.0/16 overlay collided).
    """

    homelab_lan_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.10.0/24")
    aws_vpc_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.100.0.0/16")
    aws_subnet_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.100.1.0/24")
    nebula_overlay_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.200.0.0/16")
    homelab_pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.42.0.0/16")
    homelab_service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.43.0.0/16")
    aws_pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.52.0.0/16")
    aws_service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.53.0.0/16")

    @model_validator(mode="after")
    def _ranges_are_disjoint(self) -> NetworkPlan:
        if not self.aws_subnet_cidr.subnet_of(self.aws_vpc_cidr):
            raise ValueError(
                f"{key('awsSubnetCidr')}: {self.aws_subnet_cidr} is not inside "
                f"{key('awsVpcCidr')} {self.aws_vpc_cidr}"
            )
        ranges = self.named_ranges(include_subnet=False)
        names = list(ranges)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                if ranges[first].overlaps(ranges[second]):
                    raise ValueError(
                        f"{key(first)}: {ranges[first]} overlaps {key(second)} "
                        f"({ranges[second]}); the LAN, VPC, Nebula overlay and both clusters' "
                        "pod and service ranges must not overlap"
                    )
        return self

    def named_ranges(self, *, include_subnet: bool = True) -> dict[str, ipaddress.IPv4Network]:
        """Config key name -> range, in a stable order (used for checks and Liqo reservations)."""
        data = self.model_dump(by_alias=True)
        if not include_subnet:
            data.pop("awsSubnetCidr")
        return dict(data)


class NebulaSettings(Model):
    """Nebula tunables shared by both stacks (keys ``nebulaMtu`` ... in Pulumi.yaml)."""

    # 1300 is Nebula's documented "safe setting for internet based traffic"
    # (https://github.com/slackhq/nebula/blob/master/examples/config.yml, tun.mtu).
    mtu: int = Field(default=1300, ge=1200, le=9001)
    listen_port: Port = 4242
    ca_validity_days: int = Field(default=3650, ge=30)
    cert_validity_days: int = Field(default=365, ge=1)
    cert_renew_before_days: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _renewal_window_fits(self) -> NebulaSettings:
        if self.cert_renew_before_days >= self.cert_validity_days:
            raise ValueError(
                f"{key('nebulaCertRenewBeforeDays')}: {self.cert_renew_before_days} must be "
                f"smaller than {key('nebulaCertValidityDays')} ({self.cert_validity_days})"
            )
        if self.cert_validity_days > self.ca_validity_days:
            raise ValueError(
                f"{key('nebulaCertValidityDays')}: {self.cert_validity_days} exceeds "
                f"{key('nebulaCaValidityDays')} ({self.ca_validity_days}); a host certificate "
                "cannot outlive its CA"
            )
        return self


# WireGuard's overhead on IPv4 (20 IP + 8 UDP + 32 WireGuard header/tag); Liqo's gateway is a
# WireGuard tunnel that rides inside Nebula, so its MTU is Nebula's minus this
# (https://docs.liqo.io/en/stable/advanced/peering/inter-cluster-network.html, --mtu).
WIREGUARD_OVERHEAD = 60
LIQO_MIN_MTU = 1200
"""Floor for the nested Liqo tunnel: the same floor ``nebulaMtu`` has; below it TCP segments
shrink enough to hurt model-streaming throughput and some UDP stacks (QUIC, RFC 9000 §14) stop."""


class ProjectSettings(Model):
    """All project-wide simple keys, validated together."""

    network: NetworkPlan
    nebula: NebulaSettings
    k3s_version: K3sVersion = "v1.33.5+k3s1"
    liqo_version: ExactVersion = LIQO_DEFAULT_VERSION
    """Liqo chart (and liqoctl) version of BOTH clusters: Liqo does not peer across minors."""
    llm_namespace: DnsLabel = "llm"
    """Namespace offloaded to AWS (same name on both clusters) where Ollama runs."""

    @model_validator(mode="after")
    def _liqo_tunnel_fits(self) -> ProjectSettings:
        if self.liqo_mtu < LIQO_MIN_MTU:
            raise ValueError(
                f"{key('nebulaMtu')}: {self.nebula.mtu} leaves {self.liqo_mtu} bytes for the Liqo "
                f"WireGuard tunnel inside Nebula ({WIREGUARD_OVERHEAD} bytes overhead); it needs "
                f"at least {LIQO_MIN_MTU}, so set nebulaMtu to {LIQO_MIN_MTU + WIREGUARD_OVERHEAD} "
                "or more (1300 is the default)"
            )
        return self

    @property
    def liqo_mtu(self) -> int:
        """MTU of Liqo's gateway tunnel: it fits inside Nebula's."""
        return self.nebula.mtu - WIREGUARD_OVERHEAD


# --------------------------------------------------------------------------------------------
# aws-gpu stack (`hybridgpu:aws`)
# --------------------------------------------------------------------------------------------

# NVIDIA GPU instance families and the GPU they carry
# (https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html). AMD (g4ad) and Inferentia/
# Trainium families are deliberately absent: the NVIDIA device plugin cannot use them.
NVIDIA_GPU_FAMILIES: Mapping[str, str] = {
    "g4dn": "nvidia-t4",
    "g5": "nvidia-a10g",
    "g6": "nvidia-l4",
    "g6e": "nvidia-l40s",
    "gr6": "nvidia-l4",
    "p3": "nvidia-v100",
    "p3dn": "nvidia-v100",
    "p4d": "nvidia-a100",
    "p4de": "nvidia-a100",
    "p5": "nvidia-h100",
    "p5e": "nvidia-h200",
    "p5en": "nvidia-h200",
}
# Sizes with more than one GPU (same source); every other size of these families has one.
MULTI_GPU_SIZES: Mapping[str, int] = {
    "g4dn.12xlarge": 4,
    "g4dn.metal": 8,
    "g5.12xlarge": 4,
    "g5.24xlarge": 4,
    "g5.48xlarge": 8,
    "g6.12xlarge": 4,
    "g6.24xlarge": 4,
    "g6.48xlarge": 8,
    "g6e.12xlarge": 4,
    "g6e.24xlarge": 4,
    "g6e.48xlarge": 8,
    "gr6.8xlarge": 1,
    "p3.8xlarge": 4,
    "p3.16xlarge": 8,
    "p3dn.24xlarge": 8,
    "p4d.24xlarge": 8,
    "p4de.24xlarge": 8,
    "p5.48xlarge": 8,
    "p5e.48xlarge": 8,
    "p5en.48xlarge": 8,
}
INSTANCE_TYPE_PATTERN = re.compile(r"^([a-z][a-z0-9-]*)\.([a-z0-9-]+)$")


def gpu_family(instance_type: str) -> str | None:
    """The family of an NVIDIA GPU instance type, or None if it is not one."""
    match = INSTANCE_TYPE_PATTERN.match(instance_type)
    if not match or match.group(1) not in NVIDIA_GPU_FAMILIES:
        return None
    return match.group(1)


class AmiSelector(Model):
    """Either a fixed AMI id, or a lookup by owner + name pattern (most recent wins)."""

    id: str | None = Field(default=None, pattern=r"^ami-[0-9a-f]{8,17}$")
    owners: tuple[str, ...] = ()
    name_pattern: str | None = None
    architecture: Literal["x86_64", "arm64"] = "x86_64"

    @model_validator(mode="after")
    def _one_way(self) -> AmiSelector:
        if self.id is None and not (self.owners and self.name_pattern):
            raise ValueError("give either 'id' or both 'owners' and 'namePattern'")
        if self.id is not None and (self.owners or self.name_pattern):
            raise ValueError("give either 'id' or 'owners' + 'namePattern', not both")
        return self


# Canonical's Ubuntu 24.04 images (owner id from https://ubuntu.com/server/docs/cloud-images/amazon-ec2).
UBUNTU_2404_AMI = AmiSelector(
    owners=("099720109477",),
    name_pattern="ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
)
# AWS Deep Learning Base AMI with the NVIDIA driver and container toolkit preinstalled
# (https://docs.aws.amazon.com/dlami/latest/devguide/appendix-ami-release-notes.html).
NVIDIA_GPU_AMI = AmiSelector(
    owners=("amazon",),
    name_pattern="Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
)


class ControlNodeSettings(Model):
    instance_type: str = Field(default="t3.small", pattern=INSTANCE_TYPE_PATTERN.pattern)
    root_volume_gib: int = Field(default=30, ge=8, le=16384)
    overlay_ip: ipaddress.IPv4Address = ipaddress.IPv4Address("10.200.0.1")
    ami: AmiSelector = UBUNTU_2404_AMI


class SpotSettings(Model):
    """EC2 spot options. ``stop`` (the default) keeps the root disk, so the node rejoins when
    capacity returns; AWS only allows ``stop``/``hibernate`` on a persistent request
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/interruption-behavior.html)."""

    request_type: Literal["persistent", "one-time"] = "persistent"
    interruption_behavior: Literal["stop", "hibernate", "terminate"] = "stop"
    max_price_usd_per_hour: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")

    @model_validator(mode="after")
    def _persistent_for_stop(self) -> SpotSettings:
        if self.interruption_behavior != "terminate" and self.request_type != "persistent":
            raise ValueError(
                f"interruptionBehavior '{self.interruption_behavior}' needs requestType "
                "'persistent' (AWS rule); use requestType 'persistent' or interruptionBehavior "
                "'terminate'"
            )
        return self


class GpuWorkerSettings(Model):
    instance_type: str = "g4dn.xlarge"
    gpu_model: str | None = Field(default=None, pattern=LABEL_VALUE_PATTERN.pattern, min_length=1)
    """Label value for ``gpu-type``; defaults to the family's GPU (g4dn -> nvidia-t4)."""
    market: Literal["spot", "on-demand"] = "on-demand"
    spot: SpotSettings = SpotSettings()
    root_volume_gib: int = Field(default=200, ge=50, le=16384)
    overlay_ip: ipaddress.IPv4Address = ipaddress.IPv4Address("10.200.2.1")
    ami: AmiSelector = NVIDIA_GPU_AMI

    @field_validator("instance_type")
    @classmethod
    def _is_nvidia_gpu(cls, value: str) -> str:
        if gpu_family(value) is None:
            raise ValueError(
                f"'{value}' is not an NVIDIA GPU instance type; allowed families: "
                + ", ".join(sorted(NVIDIA_GPU_FAMILIES))
            )
        return value

    @property
    def gpu_count(self) -> int:
        return MULTI_GPU_SIZES.get(self.instance_type, 1)

    @property
    def gpu_type_label(self) -> str:
        family = gpu_family(self.instance_type)
        assert family is not None  # guaranteed by the validator
        return self.gpu_model or NVIDIA_GPU_FAMILIES[family]


class ModelBucketSettings(Model):
    name_prefix: Annotated[DnsLabel, Field(max_length=MAX_NAME_PREFIX)] = "hybridgpu-models"
    force_destroy: bool = False
    noncurrent_version_expiration_days: int = Field(default=30, ge=1)
    abort_incomplete_upload_days: int = Field(default=7, ge=1)


class BudgetSettings(Model):
    monthly_limit_usd: float = Field(default=100.0, gt=0)
    # One notification of the budget is the 100% forecast alert.
    thresholds_percent: Annotated[tuple[float, ...], Field(max_length=MAX_NOTIFICATIONS - 1)] = (
        50.0,
        80.0,
        100.0,
    )
    emails: tuple[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")], ...] = Field(
        min_length=1, max_length=MAX_EMAILS
    )

    @field_validator("thresholds_percent")
    @classmethod
    def _sorted_positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(t <= 0 for t in value) or list(value) != sorted(set(value)):
            raise ValueError(f"{list(value)} must be distinct positive percentages, ascending")
        return value


class AwsFederationSettings(Model):
    cluster_id: DnsLabel = "aws-gpu"
    """This cluster's identity in Liqo."""


class ModelStoreSettings(Model):
    """How the AWS cluster serves the model bucket to Ollama (Mountpoint for S3, read-only)."""

    prefix: str = Field(default="ollama/", pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$")
    """Key prefix in the bucket holding Ollama's ``models`` tree (``blobs/``, ``manifests/``);
    ends with '/' or is empty for the bucket root."""
    cache_gib: int = Field(default=40, ge=1, le=10000)
    """Local read cache (emptyDir on the node's disk): repeated loads skip S3."""


class AwsSettings(Model):
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    availability_zone: str | None = Field(default=None, pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")
    admin_cidrs: tuple[AdminCidr, ...] = Field(min_length=1)
    ssh_public_key: SshPublicKey
    ssh_user: str = "ubuntu"
    control_node: ControlNodeSettings = ControlNodeSettings()
    gpu_worker: GpuWorkerSettings = GpuWorkerSettings()
    model_bucket: ModelBucketSettings = ModelBucketSettings()
    budget: BudgetSettings
    tags: dict[str, str] = Field(default_factory=dict)
    federation: AwsFederationSettings = AwsFederationSettings()
    model_store: ModelStoreSettings = ModelStoreSettings()

    @model_validator(mode="after")
    def _zone_in_region(self) -> AwsSettings:
        if self.availability_zone and not self.availability_zone.startswith(self.region):
            raise ValueError(
                f"availabilityZone '{self.availability_zone}' is not in region '{self.region}'"
            )
        return self


# --------------------------------------------------------------------------------------------
# homelab stack (`hybridgpu:homelab`)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Whole-stack configs and cross-model checks
# --------------------------------------------------------------------------------------------


def key(name: str) -> str:
    """The fully qualified config key, as the operator types it."""
    return f"{PROJECT}:{name}"


@dataclass(frozen=True)
class AwsGpuSecrets:
    ssh_private_key: pulumi.Output[str]
    """Key matching ``aws.sshPublicKey``; used by pulumi-command to read the kubeconfig."""


@dataclass(frozen=True)
class HomelabSecrets:
    proxmox_api_token: pulumi.Output[str]
    """``user@realm!tokenid=uuid``."""
    ssh_private_key: pulumi.Output[str]
    jupyterhub_client_secret: pulumi.Output[str]
    """OAuth client secret of JupyterHub's authenticator."""


@dataclass(frozen=True)
class AwsGpuConfig:
    project: ProjectSettings
    aws: AwsSettings
    secrets: AwsGpuSecrets


@dataclass(frozen=True)
class HomelabConfig:
    project: ProjectSettings
    homelab: HomelabSettings
    secrets: HomelabSecrets


PROJECT_KEYS: Mapping[str, tuple[str, str]] = {
    # config key -> (section of ProjectSettings, field alias in that section)
    "homelabLanCidr": ("network", "homelabLanCidr"),
    "awsVpcCidr": ("network", "awsVpcCidr"),
    "awsSubnetCidr": ("network", "awsSubnetCidr"),
    "nebulaOverlayCidr": ("network", "nebulaOverlayCidr"),
    "homelabPodCidr": ("network", "homelabPodCidr"),
    "homelabServiceCidr": ("network", "homelabServiceCidr"),
    "awsPodCidr": ("network", "awsPodCidr"),
    "awsServiceCidr": ("network", "awsServiceCidr"),
    "nebulaMtu": ("nebula", "mtu"),
    "nebulaListenPort": ("nebula", "listenPort"),
    "nebulaCaValidityDays": ("nebula", "caValidityDays"),
    "nebulaCertValidityDays": ("nebula", "certValidityDays"),
    "nebulaCertRenewBeforeDays": ("nebula", "certRenewBeforeDays"),
    "k3sVersion": ("", "k3sVersion"),
    "liqoVersion": ("", "liqoVersion"),
    "llmNamespace": ("", "llmNamespace"),
}
"""Project-wide simple keys. ``Pulumi.yaml`` declares exactly these (a test checks it)."""

_M = TypeVar("_M", bound=BaseModel)
RELATIVE_PATH_PREFIX = re.compile(r"^(\[\d+\]|[A-Za-z]+)(\[\d+\])*(\.[A-Za-z]+(\[\d+\])*)*: ")


def _validate(model: type[_M], data: Any, config_key: str | None) -> _M:
    """Validate, turning pydantic's error into one line per problem that names the key."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, config_key)) from None


def _describe(err: ValidationError, config_key: str | None) -> str:
    lines = []
    problems = err.errors()
    for problem in problems:
        if problem["type"] == "too_short" and any(
            other is not problem and other["loc"][: len(problem["loc"])] == problem["loc"]
            for other in problems
        ):
            continue  # the list is short only because one of its items was rejected: say that

        path = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"]
        ).lstrip(".")
        where = key(config_key) if config_key else ""
        if config_key is None and problem["loc"]:
            # project-wide keys: map section.field back to the operator's key
            where = _project_key_for(problem["loc"])
            path = ""
        full = f"{where}.{path}" if where and path else (where or path)
        message = problem["msg"].removeprefix("Value error, ")
        if message.startswith(f"{PROJECT}:"):
            full = ""  # a cross-field check that already names its keys
        elif RELATIVE_PATH_PREFIX.match(message) and full:
            # a model-level check that names the field relative to the model: join the paths
            full, message = f"{full}.{message.split(': ', 1)[0]}", message.split(": ", 1)[1]
            full = full.replace(".[", "[")
        value = problem.get("input")
        shown = (
            ""
            if isinstance(value, dict | list) or value is None or str(value) in message
            else f" (got {value!r})"
        )
        lines.append(f"{full}: {message}{shown}" if full else f"{message}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _project_key_for(loc: tuple[int | str, ...]) -> str:
    for config_key, (section, alias) in PROJECT_KEYS.items():
        if (section and tuple(loc[:2]) == (section, alias)) or (
            not section and loc[:1] == (alias,)
        ):
            return key(config_key)
    return key(str(loc[0]))


def parse_project(values: Mapping[str, Any]) -> ProjectSettings:
    """Validate the project-wide keys (unset ones take their defaults)."""
    unknown = sorted(set(values) - set(PROJECT_KEYS))
    if unknown:
        raise ConfigError(
            f"{key(unknown[0])}: not a project-wide key; known: {sorted(PROJECT_KEYS)}"
        )
    data: dict[str, Any] = {"network": {}, "nebula": {}}
    for config_key, value in values.items():
        section, alias = PROJECT_KEYS[config_key]
        if section:
            data[section][alias] = value
        else:
            data[alias] = value
    return _validate(ProjectSettings, data, None)


def parse_aws(project: ProjectSettings, raw: Any) -> AwsSettings:
    """Validate ``hybridgpu:aws`` and its links to the project-wide plan."""
    aws = _validate(AwsSettings, raw, "aws")
    overlay = project.network.nebula_overlay_cidr
    for field, ip in (
        ("controlNode.overlayIp", aws.control_node.overlay_ip),
        ("gpuWorker.overlayIp", aws.gpu_worker.overlay_ip),
    ):
        if ip not in overlay:
            raise ConfigError(
                f"{key('aws')}.{field}: {ip} is outside {key('nebulaOverlayCidr')} {overlay}"
            )
    if aws.control_node.overlay_ip == aws.gpu_worker.overlay_ip:
        raise ConfigError(
            f"{key('aws')}.gpuWorker.overlayIp: {aws.gpu_worker.overlay_ip} is also the control "
            "node's overlay IP; each node needs its own"
        )
    return aws


def parse_homelab(project: ProjectSettings, raw: Any) -> HomelabSettings:
    """Validate ``hybridgpu:homelab`` and its links to the project-wide plan."""
    homelab = _validate(HomelabSettings, raw, "homelab")
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
        if vm.overlay_ip in seen_overlay:
            raise ConfigError(
                f"{where}.overlayIp: {vm.overlay_ip} is already used by "
                f"'{seen_overlay[vm.overlay_ip]}'"
            )
        seen_overlay[vm.overlay_ip] = vm.name
    return homelab


# --------------------------------------------------------------------------------------------
# Reading pulumi.Config (the only place that does)
# --------------------------------------------------------------------------------------------


def _read_project(cfg: pulumi.Config) -> ProjectSettings:
    values: dict[str, Any] = {}
    for config_key in PROJECT_KEYS:
        raw = cfg.get(config_key)
        if raw is not None:
            values[config_key] = raw
    return parse_project(values)


def _require_object(cfg: pulumi.Config, name: str) -> Any:
    try:
        return cfg.require_object(name)
    except pulumi.ConfigMissingError:
        raise ConfigError(
            f"{key(name)}: missing; copy the example from Pulumi.<stack>.yaml in the repository"
        ) from None


def _require_secret(cfg: pulumi.Config, name: str) -> pulumi.Output[str]:
    try:
        return cfg.require_secret(name)
    except pulumi.ConfigMissingError:
        raise ConfigError(
            f"{key(name)}: missing; set it with `pulumi config set --secret {name} ...`"
        ) from None


def _reject_unknown_keys(stack_keys: Iterable[str]) -> None:
    """A misspelt key must not silently fall back to a default."""
    allowed = {*PROJECT_KEYS, *stack_keys}
    present = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    for full in sorted(present):
        namespace, _, name = full.partition(":")
        if namespace == PROJECT and name not in allowed:
            raise ConfigError(
                f"{full}: not a key of this stack; known: {', '.join(sorted(allowed))}"
            )


AWS_GPU_SECRET_KEYS = ("sshPrivateKey",)
HOMELAB_SECRET_KEYS = ("proxmoxApiToken", "sshPrivateKey", "jupyterhubClientSecret")
AWS_GPU_STACK_KEYS = ("aws", *AWS_GPU_SECRET_KEYS)
HOMELAB_STACK_KEYS = ("homelab", *HOMELAB_SECRET_KEYS)


def load_aws_gpu_config() -> AwsGpuConfig:
    _reject_unknown_keys(AWS_GPU_STACK_KEYS)
    cfg = pulumi.Config(PROJECT)
    project = _read_project(cfg)
    aws = parse_aws(project, _require_object(cfg, "aws"))
    secrets = AwsGpuSecrets(ssh_private_key=_require_secret(cfg, "sshPrivateKey"))
    return AwsGpuConfig(project=project, aws=aws, secrets=secrets)


def load_homelab_config() -> HomelabConfig:
    _reject_unknown_keys(HOMELAB_STACK_KEYS)
    cfg = pulumi.Config(PROJECT)
    project = _read_project(cfg)
    homelab = parse_homelab(project, _require_object(cfg, "homelab"))
    secrets = HomelabSecrets(
        proxmox_api_token=_require_secret(cfg, "proxmoxApiToken"),
        ssh_private_key=_require_secret(cfg, "sshPrivateKey"),
        jupyterhub_client_secret=_require_secret(cfg, "jupyterhubClientSecret"),
    )
    return HomelabConfig(project=project, homelab=homelab, secrets=secrets)
