"""The homelab stack's app and platform sections (``hybridgpu:homelab``): Ollama, Open WebUI,
GPU Operator, NFS, JupyterHub, Rancher, monitoring."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from components.kube.charts import (
    JUPYTER_GPU_IMAGE,
    OLLAMA_IMAGE,
    OPEN_WEBUI_IMAGE,
)
from stacks.config.fields import (
    KEEP_ALIVE_PATTERN,
    AddressOrHostName,
    DnsLabel,
    HostName,
    ImageDigest,
    Model,
    PinnedImage,
)

RUNBOOK_BASE = re.compile(r"https://[^\s\"'<>{}]+/")
"""An https URL ending in '/', without characters a Prometheus template or YAML would mangle."""


class ImageDigests(Model):
    """Digests for the images the program pins without one it could verify (components/kube/
    charts.py IMAGES says why each lacks one): add the registry's digest of exactly the pinned
    tag once checked (e.g. ``crane digest REPO:TAG``); the tag stays in the reference. Ollama,
    Open WebUI and the Jupyter image take a full ``repo:tag@sha256:...`` in their ``image``."""

    cuda_sample: ImageDigest | None = None
    local_path_provisioner: ImageDigest | None = None
    busybox: ImageDigest | None = None
    kube_vip: ImageDigest | None = None


class OllamaSettings(Model):
    image: PinnedImage = OLLAMA_IMAGE
    keep_alive: str = Field(default="30m", pattern=KEEP_ALIVE_PATTERN.pattern)
    """How long a model stays loaded after the last request (OLLAMA_KEEP_ALIVE)."""
    max_loaded_models: int = Field(default=1, ge=1)
    memory_gib: int = Field(default=12, ge=1)
    """Memory request and limit of the Ollama pod (host RAM for model loading)."""
    client_namespaces: tuple[DnsLabel, ...] = ()
    """Namespaces besides Open WebUI's whose pods may call Ollama (network policy)."""
    wake_gate: bool = True
    """Run the wake gate (gpu-waker in gate mode on the first control plane): what starts the
    AWS side when it sleeps (aws-gpu ``gpuWaker.sleepAfterMinutes``). Must match the aws-gpu
    stack: true when its control node sleeps, false when it stays on (checked at ``up``)."""


class OpenWebUiSettings(Model):
    image: PinnedImage = OPEN_WEBUI_IMAGE
    hostname: HostName
    """Host name of the Traefik ingress (point DNS at the homelab nodes)."""
    admin_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    """The admin account created at first start (password: output ``openWebuiAdminPassword``)."""
    storage_gib: int = Field(default=10, ge=1)
    tls_secret: DnsLabel | None = None
    """TLS secret (type kubernetes.io/tls) for the host name, in Open WebUI's namespace
    ``open-webui`` where its Ingress is; without it Traefik serves its default certificate on the
    websecure entry point."""


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
    username_claim: Literal["sub"] = "sub"
    """generic-oauth: the claim users (and adminUsers) are named by. Only ``sub``: OIDC Core 1.0
    section 5.1 says of ``preferred_username`` "The RP MUST NOT rely upon this value being
    unique", so an admin matched on it could be impersonated; ``sub`` is never reassigned."""

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


MONTH_DAYS = 31
"""The longest month: the AWS dashboard's "hours billed this month" reads that far back."""


EMAIL_PATTERN = r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$"
Email = Annotated[str, Field(pattern=EMAIL_PATTERN)]
# Alertmanager's smarthost is "host:port" (prometheus/alertmanager config/config.go HostPort).
SMARTHOST_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?:[0-9]{1,5}$"


class AlertWebhookSettings(Model):
    """Alertmanager posts alerts to a URL (its webhook receiver, e.g. a chat's incoming webhook
    or ntfy). The URL is the stack secret ``alertmanagerWebhookUrl``: such URLs carry their
    token."""

    send_resolved: bool = True
    """Also post when an alert resolves."""


class AlertEmailSettings(Model):
    """Alertmanager mails alerts through an SMTP server."""

    to: tuple[Email, ...] = Field(min_length=1, max_length=10)
    """Recipients (1-10 addresses)."""
    sender: Email = Field(alias="from")
    """The From address."""
    smarthost: str = Field(pattern=SMARTHOST_PATTERN)
    """SMTP server as ``host:port`` (587 for STARTTLS)."""
    auth_username: str | None = Field(default=None, min_length=1)
    """SMTP login; its password is the stack secret ``alertmanagerSmtpPassword``. Unset: no
    SMTP authentication."""
    require_tls: bool = True
    """Refuse to send unless the server offers STARTTLS."""
    send_resolved: bool = False
    """Also mail when an alert resolves."""


class AlertmanagerSettings(Model):
    """Where Alertmanager sends alerts (grouped by alertname and site); at least one of
    ``webhook`` and ``email``."""

    webhook: AlertWebhookSettings | None = None
    email: AlertEmailSettings | None = None

    @model_validator(mode="after")
    def _some_receiver(self) -> AlertmanagerSettings:
        if self.webhook is None and self.email is None:
            raise ValueError(
                "names no receiver; give webhook (URL in the secret alertmanagerWebhookUrl) "
                "and/or email, or drop the section (alerts then show only in Alertmanager's "
                "and Grafana's alert lists)"
            )
        return self


class MonitoringSettings(Model):
    """Prometheus, Alertmanager and Grafana (kube-prometheus-stack) in the homelab; the section's
    presence turns them on."""

    grafana_hostname: HostName
    """Host name of Grafana on the Traefik ingress (like openWebui.hostname)."""
    tls_secret: DnsLabel | None = None
    """TLS secret for that host name in the ``monitoring`` namespace; without it Traefik serves its
    default certificate on the websecure entry point."""
    retention_days: int = Field(default=35, ge=1, le=3650)
    """How long Prometheus keeps samples (``prometheus.prometheusSpec.retention``)."""
    storage_gib: int = Field(default=50, ge=5, le=10000)
    """Size of Prometheus's volume; samples are also dropped once 90 % of it is used."""
    storage_class: Literal["nfs-client", "local-path"] = "nfs-client"
    """Class of Prometheus's and Alertmanager's volumes (see README, Monitoring, on NFS)."""
    alertmanager_storage_gib: int = Field(default=2, ge=1, le=100)
    """Size of Alertmanager's volume (silences and notification state)."""
    alertmanager: AlertmanagerSettings | None = None
    """Receivers of the alerts; absent: alerts are only listed in Alertmanager's and Grafana's
    UIs (README, Monitoring)."""
    runbook_base_url: str = ""
    """Prefix of each alert's ``runbook_url``, which is its page's path in this repository
    (``docs/runbooks/<page>.md``): where the repository is browsable, e.g.
    ``https://git.lab.example/ops/hybridgpu/blob/main/``. Empty: the path alone."""

    @field_validator("runbook_base_url")
    @classmethod
    def _runbook_base(cls, value: str) -> str:
        if value and not RUNBOOK_BASE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a runbook base URL; allowed: empty, or an https:// URL "
                "ending in '/' (the runbook's path docs/runbooks/<page>.md is appended)"
            )
        return value

    @model_validator(mode="after")
    def _month_of_history(self) -> MonitoringSettings:
        if self.retention_days < MONTH_DAYS:
            raise ValueError(
                f"retentionDays: {self.retention_days} is shorter than a month; allowed: "
                f"{MONTH_DAYS}..3650 (the AWS worker dashboard sums the hours billed this month)"
            )
        return self
