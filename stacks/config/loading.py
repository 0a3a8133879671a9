"""Reading ``pulumi.Config`` (the only place in the program that does): which keys each stack
takes, its secrets (read only with the secret getters), and the whole-stack config objects the
stack modules receive."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from stacks.config.aws_gpu import AwsSettings, parse_aws
from stacks.config.errors import ConfigError
from stacks.config.fields import PROJECT, key
from stacks.config.homelab import HomelabSettings, parse_homelab
from stacks.config.project import PROJECT_KEYS, ProjectSettings, parse_project

STACK_AWS_GPU = "aws-gpu"
STACK_HOMELAB = "homelab"
KNOWN_STACKS = (STACK_AWS_GPU, STACK_HOMELAB)


@dataclass(frozen=True)
class AwsGpuSecrets:
    ssh_private_key: pulumi.Output[str]
    """Key matching ``aws.sshPublicKey``; used by pulumi-command to read the kubeconfig."""


@dataclass(frozen=True)
class HomelabSecrets:
    proxmox_api_token: pulumi.Output[str]
    """``user@realm!tokenid=uuid``."""
    ssh_private_key: pulumi.Output[str]
    """The homelab VMs' key (matching ``homelab.sshPublicKeys``)."""
    jupyterhub_client_secret: pulumi.Output[str]
    """OAuth client secret of JupyterHub's authenticator."""
    proxmox_ssh_private_key: pulumi.Output[str] | None = None
    """The Proxmox nodes' SSH key (``proxmoxSshPrivateKey``, for ``proxmox.sshUsername``);
    None: not configured, the VMs' key is used for Proxmox too (with a warning)."""
    alertmanager_webhook_url: pulumi.Output[str] | None = None
    """URL of ``homelab.monitoring.alertmanager.webhook`` (set exactly when that is)."""
    alertmanager_smtp_password: pulumi.Output[str] | None = None
    """Password of ``homelab.monitoring.alertmanager.email.authUsername`` (set exactly when
    that is)."""


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


OTHER_NAMESPACES = ("pulumi", "aws", "kubernetes", "proxmoxve", "command", "random", "time")
"""Config namespaces besides the project's that a stack file may hold: the engine's own and the
providers the program uses (their keys configure default providers, which are disabled)."""


def _reject_unknown_keys(stack_keys: Iterable[str]) -> None:
    """A misspelt key (or namespace) must not silently fall back to a default."""
    allowed = {*PROJECT_KEYS, *stack_keys, ROLE_KEY}
    present = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    for full in sorted(present):
        namespace, _, name = full.partition(":")
        if namespace == PROJECT and name not in allowed:
            raise ConfigError(
                f"{full}: not a key of this stack; known: {', '.join(sorted(allowed))}"
            )
        if namespace not in (PROJECT, *OTHER_NAMESPACES):
            guess = difflib.get_close_matches(namespace, [PROJECT, *OTHER_NAMESPACES], n=1)
            hint = f"; did you mean '{guess[0]}:{name}'?" if guess else ""
            raise ConfigError(
                f"{full}: '{namespace}' is neither this project's config namespace ('{PROJECT}') "
                f"nor one of {', '.join(OTHER_NAMESPACES)}{hint}"
            )


ROLE_KEY = "role"
"""Optional stack key: which of the two stack shapes this stack is (``aws-gpu``, ``homelab``)."""


def stack_role() -> str:
    """The shape of the current stack: ``hybridgpu:role`` if set, else the stack name when it is
    a role or starts with one and a dash (``homelab-2``, ``aws-gpu-eu``)."""
    name = pulumi.get_stack()
    configured = pulumi.Config(PROJECT).get(ROLE_KEY)
    if configured is not None:
        if configured not in KNOWN_STACKS:
            raise ConfigError(
                f"{key(ROLE_KEY)}: '{configured}' is not a stack role; use one of "
                f"{', '.join(KNOWN_STACKS)}"
            )
        return configured
    for role in KNOWN_STACKS:
        if name == role or name.startswith(f"{role}-"):
            return role
    raise ConfigError(
        f"stack '{name}' has no role: name it {' or '.join(KNOWN_STACKS)} (or <role>-<suffix>, "
        f"e.g. homelab-2), or set one: `pulumi config set {key(ROLE_KEY)} homelab`"
    )


AWS_GPU_SECRET_KEYS = ("sshPrivateKey",)
HOMELAB_SECRET_KEYS = ("proxmoxApiToken", "sshPrivateKey", "jupyterhubClientSecret")
WEBHOOK_URL_SECRET = "alertmanagerWebhookUrl"  # noqa: S105 - a config key's name
SMTP_PASSWORD_SECRET = "alertmanagerSmtpPassword"  # noqa: S105 - a config key's name
HOMELAB_OPTIONAL_SECRET_KEYS = ("proxmoxSshPrivateKey", WEBHOOK_URL_SECRET, SMTP_PASSWORD_SECRET)
SECRET_MEANINGS = {
    "sshPrivateKey": "Private key of the SSH key pair on every node (the stack's sshPublicKey(s)); "
    "Pulumi runs the nodes' setup over SSH with it.",
    "proxmoxApiToken": "Proxmox VE API token, `user@realm!tokenid=uuid` (its role: README "
    '"Verified hosts and least privilege").',
    "proxmoxSshPrivateKey": "Optional: private key the Proxmox provider uploads snippets with "
    "(separate from the VMs' key; unset: sshPrivateKey, with a warning).",
    "jupyterhubClientSecret": "OAuth client secret of JupyterHub's authenticator "
    "(platform.jupyterhub.authenticator).",
    WEBHOOK_URL_SECRET: "Optional: the URL Alertmanager posts alerts to "
    "(homelab.monitoring.alertmanager.webhook; required with it, refused without it).",
    SMTP_PASSWORD_SECRET: "Optional: the SMTP password of "
    "homelab.monitoring.alertmanager.email.authUsername (required with it, refused without it).",
}
"""What each secret key holds (docs/reference.md prints these)."""
AWS_GPU_STACK_KEYS = ("aws", *AWS_GPU_SECRET_KEYS)
HOMELAB_STACK_KEYS = ("homelab", *HOMELAB_SECRET_KEYS, *HOMELAB_OPTIONAL_SECRET_KEYS)


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
        proxmox_ssh_private_key=cfg.get_secret("proxmoxSshPrivateKey"),
        **_alert_receiver_secrets(cfg, homelab),
    )
    return HomelabConfig(project=project, homelab=homelab, secrets=secrets)


def _alert_receiver_secrets(
    cfg: pulumi.Config, homelab: HomelabSettings
) -> dict[str, pulumi.Output[str] | None]:
    """The receivers' secrets: each required by the setting that uses it and refused without
    one (a secret nothing reads is a forgotten setting)."""
    receivers = homelab.monitoring.alertmanager if homelab.monitoring else None
    email = receivers.email if receivers else None
    uses = {
        WEBHOOK_URL_SECRET: (
            receivers is not None and receivers.webhook is not None,
            "homelab.monitoring.alertmanager.webhook",
            "https://...",
        ),
        SMTP_PASSWORD_SECRET: (
            email is not None and email.auth_username is not None,
            "homelab.monitoring.alertmanager.email.authUsername",
            "<SMTP password>",
        ),
    }
    found: dict[str, pulumi.Output[str] | None] = {}
    for name, (used, setting, example) in uses.items():
        value = cfg.get_secret(name)
        if used and value is None:
            raise ConfigError(
                f"{key(name)}: missing; {key(setting)} needs it: "
                f"`pulumi config set --secret {name} '{example}'`"
            )
        if not used and value is not None:
            raise ConfigError(
                f"{key(name)}: set, but nothing uses it ({key(setting)} is not configured); "
                f"configure that or `pulumi config rm {name}`"
            )
        found[name] = value
    return {
        "alertmanager_webhook_url": found[WEBHOOK_URL_SECRET],
        "alertmanager_smtp_password": found[SMTP_PASSWORD_SECRET],
    }
