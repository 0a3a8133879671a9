"""The homelab stack's app and platform sections (``hybridgpu:homelab``): Ollama, Open WebUI,
GPU Operator, NFS, JupyterHub, Rancher."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

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
    Model,
    PinnedImage,
)


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
