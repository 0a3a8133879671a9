"""The aws-gpu stack's settings (``hybridgpu:aws``): region, control node, GPU worker and its
market, model bucket, budget, and the federation pieces that live on AWS."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.config import JsonDict

from components.aws.budget import MAX_EMAILS, MAX_NOTIFICATIONS
from components.aws.model_bucket import MAX_NAME_PREFIX
from components.aws.nvidia_driver import DRIVER_BRANCH
from components.kube.labels import LABEL_VALUE_PATTERN
from components.nebula.pki import host_public_key
from stacks.config.errors import ConfigError, validate
from stacks.config.fields import (
    AdminCidr,
    DnsLabel,
    IamPrincipalArn,
    Model,
    SshPublicKey,
    key,
)
from stacks.config.gpu_instances import (
    INSTANCE_TYPE_PATTERN,
    MULTI_GPU_SIZES,
    NVIDIA_GPU_FAMILIES,
    gpu_family,
)
from stacks.config.images import (
    DLAMI_UNSUPPORTED_FAMILIES,
    GRAVITON_FAMILY,
    IMAGES_GIB,
    NVIDIA_GPU_AMI,
    UBUNTU_2404_AMI,
    UBUNTU_DRIVER_FAMILIES,
    AmiSelector,
    ami_gib,
    driver_gib,
)
from stacks.config.operations import BackupBucketSettings
from stacks.config.project import ProjectSettings
from stacks.config.tls import AcmeDns01Settings

NVIDIA_FAMILIES_ONLY: JsonDict = {"allowed": "family " + ", ".join(sorted(NVIDIA_GPU_FAMILIES))}


class ControlNodeSettings(Model):
    # t3a.small: 2 vCPU, 2 GiB, like t3.small at 10% less. 2 GiB is what a k3s server with Liqo's
    # controllers and gateway, Nebula and gpu-waker (capped at 256 MiB) need; a 1 GiB type is not
    # (k3s: "Server ... RAM 2 GB", https://docs.k3s.io/installation/requirements). x86_64 because
    # the Nebula installer is amd64-only.
    instance_type: str = Field(default="t3a.small", pattern=INSTANCE_TYPE_PATTERN.pattern)
    # Ubuntu (~3 GB), k3s and its images, Liqo's images, logs: 16 GiB leaves room.
    root_volume_gib: int = Field(default=16, ge=8, le=16384)
    overlay_ip: ipaddress.IPv4Address = ipaddress.IPv4Address("10.200.0.1")
    ami: AmiSelector = UBUNTU_2404_AMI

    @model_validator(mode="after")
    def _amd64_only(self) -> ControlNodeSettings:
        if self.ami.architecture == "arm64" or GRAVITON_FAMILY.match(self.instance_type):
            raise ValueError(
                f"instanceType: '{self.instance_type}' ({self.ami.architecture} AMI) is not "
                "x86_64; the control node runs Nebula from a release pinned by its amd64 "
                "checksum (components/nebula/install.py), so use an x86_64 type such as t3.small"
            )
        return self


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
    instance_type: str = Field(default="g4dn.xlarge", json_schema_extra=NVIDIA_FAMILIES_ONLY)
    """EC2 instance type of the GPU worker, of an NVIDIA GPU family."""
    gpu_model: str | None = Field(default=None, pattern=LABEL_VALUE_PATTERN.pattern, min_length=1)
    """Label value for ``gpu-type``; defaults to the family's GPU (g4dn -> nvidia-t4)."""
    market: Literal["spot", "on-demand"] = "on-demand"
    spot: SpotSettings = SpotSettings()
    root_volume_gib: int = Field(default=125, ge=8, le=16384)
    """Billed while stopped. Holds the AMI (75 GiB for the default Deep Learning AMI, 8 for
    others), the NVIDIA driver and toolkit with ``nvidiaDriver: ubuntu`` (3 GiB), 10 GiB of
    images and ``modelStore.cacheGiB`` (:func:`parse_aws` checks it)."""
    nvidia_driver: Literal["preinstalled", "ubuntu"] = "preinstalled"
    """Where the NVIDIA driver and container toolkit come from. ``preinstalled``: the AMI has
    them (the default AMI, AWS's Deep Learning Base AMI, 75 GiB). ``ubuntu``: the first boot
    installs them, pinned, on plain Ubuntu 24.04 (the default AMI then, 8 GiB), a few minutes
    once; families g4dn, g5, g6, g6e, gr6. Applies at launch only (README "Small worker
    image")."""
    ami: AmiSelector = NVIDIA_GPU_AMI
    """The worker's image; the default follows ``nvidiaDriver`` (Ubuntu 24.04 with ``ubuntu``)."""

    @model_validator(mode="before")
    @classmethod
    def _image_follows_the_driver(cls, data: Any) -> Any:
        """With ``nvidiaDriver: ubuntu`` and no ``ami``, the image is plain Ubuntu 24.04."""
        if isinstance(data, dict):
            driver = data.get("nvidiaDriver", data.get("nvidia_driver"))
            if driver == "ubuntu" and "ami" not in data:
                return {**data, "ami": UBUNTU_2404_AMI}
        return data

    @field_validator("instance_type")
    @classmethod
    def _is_nvidia_gpu(cls, value: str) -> str:
        if gpu_family(value) is None:
            raise ValueError(
                f"'{value}' is not an NVIDIA GPU instance type; allowed families: "
                + ", ".join(sorted(NVIDIA_GPU_FAMILIES))
            )
        return value

    @model_validator(mode="after")
    def _ami_supports_the_gpu(self) -> GpuWorkerSettings:
        family = gpu_family(self.instance_type)
        if family in DLAMI_UNSUPPORTED_FAMILIES and self.ami == NVIDIA_GPU_AMI:
            raise ValueError(
                f"instanceType: the default GPU AMI (Deep Learning Base OSS Nvidia Driver) does "
                f"not support '{family}' (V100); pick g4dn/g5/g6/p4d/p5, or give ami.id of an "
                "image with a driver for it"
            )
        if self.ami.architecture != "x86_64":
            raise ValueError(
                "ami.architecture: the NVIDIA GPU families are x86_64 (the arm64 g5g is not "
                "supported here)"
            )
        if self.nvidia_driver == "ubuntu":
            if family not in UBUNTU_DRIVER_FAMILIES:
                raise ValueError(
                    f"instanceType: '{self.instance_type}' with nvidiaDriver 'ubuntu' (driver "
                    f"branch {DRIVER_BRANCH}-server, no NVIDIA Fabric Manager): allowed families "
                    f"are {', '.join(UBUNTU_DRIVER_FAMILIES)}; use nvidiaDriver 'preinstalled' "
                    f"for '{family}'"
                )
            if self.ami == NVIDIA_GPU_AMI:
                raise ValueError(
                    "ami: nvidiaDriver 'ubuntu' installs the driver on plain Ubuntu 24.04; the "
                    "Deep Learning AMI already has one (use nvidiaDriver 'preinstalled'), or "
                    "leave ami out for Ubuntu 24.04"
                )
        return self

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
    uploader_principals: tuple[IamPrincipalArn, ...] = ()
    """Who may assume the model uploader role (the bucket's only writer); empty: the account."""


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
    account_limit_usd: float | None = Field(default=None, gt=0)
    """Limit of the unfiltered account budget (default: ``monthlyLimitUsd``). The tag-filtered
    budget reports $0 until the ``Project`` cost-allocation tag is activated and misses untagged
    spend (an orphaned spot instance); this one sees everything the account pays."""

    @field_validator("thresholds_percent")
    @classmethod
    def _sorted_positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(t <= 0 for t in value) or list(value) != sorted(set(value)):
            raise ValueError(f"{list(value)} must be distinct positive percentages, ascending")
        return value


class AwsFederationSettings(Model):
    cluster_id: DnsLabel = "aws-gpu"
    """This cluster's identity in Liqo."""
    max_offloaded_pods: int = Field(default=110, ge=1, le=110)
    """Most pods a consumer may claim in its ResourceSlice (admission policy on this cluster);
    110 is the kubelet's default ``maxPods`` of the one GPU worker they can run on."""


class ModelStoreSettings(Model):
    """How the AWS cluster serves the model bucket to Ollama (Mountpoint for S3, read-only)."""

    prefix: str = Field(default="ollama/", pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$")
    """Key prefix in the bucket holding Ollama's ``models`` tree (``blobs/``, ``manifests/``);
    ends with '/' or is empty for the bucket root."""
    cache_gib: int = Field(default=40, ge=1, le=10000)
    """Local read cache (emptyDir on the node's disk): repeated loads skip S3."""


class GpuWakerSettings(Model):
    """gpu-waker on the control node: the proxy in front of Ollama that starts the GPU worker on
    demand and stops it when idle (runtime/gpu_waker)."""

    enabled: bool = True
    """Power management: false keeps the proxy and its token (Ollama stays reachable only
    through it) but never starts or stops the worker."""
    idle_stop_minutes: int = Field(default=15, ge=5, le=1440)
    """Stop the worker after this long with no request, stream, loaded model or GPU pod. At
    least 5: Ollama's default keep-alive; a wake costs minutes, a chat pauses between turns."""
    wake_timeout_seconds: int = Field(default=240, ge=60, le=600)
    """How long a request is held while the worker starts. At least 60 (no cold start is
    faster); at most 600, so wake + model load stay within Open WebUI's request timeout."""
    sleep_after_minutes: int | None = Field(default=30, ge=5, le=1440)
    """The whole AWS side sleeps: once the worker has been stopped this long with nothing
    asked of it, the control node stops itself too, and the homelab's wake gate starts both
    nodes on the next request (IAM Roles Anywhere; README "The AWS side sleeps"). Null keeps
    the control node always on (lighthouse, k3s server and gpu-waker reachable at any time)."""

    @model_validator(mode="after")
    def _sleep_needs_power_management(self) -> GpuWakerSettings:
        explicit = "sleep_after_minutes" in self.model_fields_set
        if not self.enabled and explicit and self.sleep_after_minutes is not None:
            raise ValueError(
                f"sleepAfterMinutes: {self.sleep_after_minutes} needs enabled: true (only the "
                "power-managing gpu-waker knows when the AWS side is idle); set it to null"
            )
        return self

    @property
    def control_sleep_minutes(self) -> int | None:
        """When the control node sleeps (None: never; with ``enabled: false`` it never does)."""
        return self.sleep_after_minutes if self.enabled else None


class OperatorSettings(Model):
    """A person's machine on the mesh (group ``admin``: SSH and the k3s API of the AWS control
    node). The private key never leaves that machine: ``./dev mesh-join`` makes the pair, the
    public key goes here, the stack signs a certificate for it (output ``nebulaOperatorCerts``)."""

    name: DnsLabel
    overlay_ip: ipaddress.IPv4Address
    nebula_public_key: str

    @field_validator("nebula_public_key")
    @classmethod
    def _is_nebula_public_key(cls, value: str) -> str:
        try:
            host_public_key(value)
        except ValueError as err:
            raise ValueError(
                "not a Nebula X25519 public key PEM ('-----BEGIN NEBULA X25519 PUBLIC KEY-----' "
                f"as `./dev mesh-join init` or `nebula-cert keygen` writes it): {err}"
            ) from None
        return value


class AwsSettings(Model):
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    availability_zone: str | None = Field(default=None, pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")
    admin_cidrs: tuple[AdminCidr, ...] = ()
    """Public ranges allowed to SSH (22) and the k3s API (6443) of the control node. Empty (the
    default): both are closed to the internet and Pulumi reaches the node over the mesh, which
    needs an operator (``operators``) joined with ``./dev mesh-join``. Set it to your /32 for the
    first ``up`` of a new stack (there is no mesh to join yet), then remove it."""
    operators: tuple[OperatorSettings, ...] = ()
    ssh_public_key: SshPublicKey
    ssh_user: str = "ubuntu"
    control_node: ControlNodeSettings = ControlNodeSettings()
    gpu_worker: GpuWorkerSettings = GpuWorkerSettings()
    model_bucket: ModelBucketSettings = ModelBucketSettings()
    backups: BackupBucketSettings = BackupBucketSettings()
    budget: BudgetSettings
    tags: dict[str, str] = Field(default_factory=dict)
    federation: AwsFederationSettings = AwsFederationSettings()
    model_store: ModelStoreSettings = ModelStoreSettings()
    gpu_waker: GpuWakerSettings = GpuWakerSettings()
    acme_dns01: AcmeDns01Settings | None = None
    """The DNS-01 key of the homelab's ACME issuer (``homelab.tls.issuer``); absent: none."""

    @property
    def admin_over_mesh(self) -> bool:
        """Pulumi's SSH and API traffic to the control node goes over the overlay."""
        return not self.admin_cidrs

    @model_validator(mode="after")
    def _someone_can_administer(self) -> AwsSettings:
        if not self.admin_cidrs and not self.operators:
            raise ValueError(
                "adminCidrs is empty and there are no operators, so nothing could reach the "
                "control node's SSH or k3s API: add an operator (`./dev mesh-join init NAME` "
                "prints the entry) or, for the first up of a new stack, your address as a /32 "
                "in adminCidrs"
            )
        names = [o.name for o in self.operators]
        ips = [str(o.overlay_ip) for o in self.operators]
        keys = [o.nebula_public_key.strip() for o in self.operators]
        columns: tuple[tuple[str, list[str]], ...] = (
            ("name", names),
            ("overlayIp", ips),
            ("nebulaPublicKey", keys),
        )
        for what, values in columns:
            for i, value in enumerate(values):
                if value in values[:i]:
                    shown = value if what != "nebulaPublicKey" else "the same key"
                    raise ValueError(
                        f"operators[{i}].{what}: {shown} is also operators[{values.index(value)}]'s"
                    )
        return self

    @model_validator(mode="after")
    def _zone_in_region(self) -> AwsSettings:
        if self.availability_zone and not self.availability_zone.startswith(self.region):
            raise ValueError(
                f"availabilityZone '{self.availability_zone}' is not in region '{self.region}'"
            )
        return self


def min_worker_volume_gib(aws: AwsSettings) -> int:
    """The AMI, what the first boot installs on it, the images and the Mountpoint model cache
    (an emptyDir on the root volume)."""
    worker = aws.gpu_worker
    return (
        ami_gib(worker.ami)
        + driver_gib(worker.nvidia_driver)
        + IMAGES_GIB
        + aws.model_store.cache_gib
    )


def parse_aws(project: ProjectSettings, raw: Any) -> AwsSettings:
    """Validate ``hybridgpu:aws`` and its links to the project-wide plan."""
    aws = validate(AwsSettings, raw, "aws")
    overlay = project.network.nebula_overlay_cidr
    needed = min_worker_volume_gib(aws)
    if aws.gpu_worker.root_volume_gib < needed:
        driver = driver_gib(aws.gpu_worker.nvidia_driver)
        installed = (
            f", the NVIDIA driver and toolkit of nvidiaDriver 'ubuntu' ({driver} GiB)"
            if driver
            else ""
        )
        raise ConfigError(
            f"{key('aws')}.gpuWorker.rootVolumeGiB: {aws.gpu_worker.root_volume_gib} GiB is too "
            f"small; it must hold the AMI ({ami_gib(aws.gpu_worker.ami)} GiB for this one)"
            f"{installed}, {IMAGES_GIB} GiB of images and modelStore.cacheGiB "
            f"({aws.model_store.cache_gib}): at least {needed}"
        )
    ip = aws.control_node.overlay_ip
    operator_range = project.nebula.operator_cidr
    if ip not in overlay:
        raise ConfigError(
            f"{key('aws')}.controlNode.overlayIp: {ip} is outside {key('nebulaOverlayCidr')} "
            f"{overlay}"
        )
    if ip in operator_range:
        raise ConfigError(
            f"{key('aws')}.controlNode.overlayIp: {ip} is inside {key('nebulaOperatorCidr')} "
            f"{operator_range}, which is kept for operators"
        )
    for i, operator in enumerate(aws.operators):
        usable = operator.overlay_ip not in (
            operator_range.network_address,
            operator_range.broadcast_address,
        )
        if operator.overlay_ip not in operator_range or not usable:
            raise ConfigError(
                f"{key('aws')}.operators[{i}].overlayIp: {operator.overlay_ip} is not a host "
                f"address of {key('nebulaOperatorCidr')} {operator_range}"
            )
    return aws
