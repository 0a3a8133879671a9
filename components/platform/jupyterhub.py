"""Multi-user JupyterHub (zero-to-jupyterhub chart) on the homelab: OAuth login, profiles from
CPU-only up to the GPUs of the largest worker, homes on ``nfs-client``, scratch on
``fast-scratch``, idle servers culled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

from components.kube.charts import JUPYTERHUB, helm_release, parse_image
from components.kube.ingress import (
    IngressTls,
    chart_ingress_values,
    declare_certificate,
    tls_secret_name,
)
from components.kube.labels import GPU_RESOURCE, NVIDIA_RUNTIME_CLASS, VELERO_BACKUP_VOLUMES
from components.platform.storage_classes import LOCAL_CLASS, NFS_CLASS, SCRATCH_CLASS

NAMESPACE = "jupyterhub"
APP = "jupyterhub"
HOME_VOLUME = "volume-{user_server}"
SCRATCH_MOUNT = "/scratch"
# z2jh's names for the authenticators bundled in its hub image
# (https://z2jh.jupyter.org/en/stable/administrator/authentication.html).
AUTHENTICATOR_CLASSES = {"github": "github", "generic-oauth": "generic-oauth"}
AUTHENTICATOR_SECTIONS = {
    "github": "GitHubOAuthenticator",
    "generic-oauth": "GenericOAuthenticator",
}


@dataclass(frozen=True)
class Authenticator:
    kind: Literal["github", "generic-oauth"]
    client_id: str
    admin_users: Sequence[str]
    allowed_users: Sequence[str] = ()
    allowed_organizations: Sequence[str] = ()
    authorize_url: str | None = None
    token_url: str | None = None
    userdata_url: str | None = None
    username_claim: str = "sub"


def render_profiles(
    gpu_counts: Sequence[int], gpu_node_selector: dict[str, str]
) -> list[dict[str, Any]]:
    """CPU-only first (the default), then one profile per GPU count. GPU profiles ask the
    scheduler for GPU nodes and whole GPUs; the CPU profile hides the node's GPUs (the NGC-style
    images set NVIDIA_VISIBLE_DEVICES=all, which the default NVIDIA runtime would honour)."""
    profiles: list[dict[str, Any]] = [
        {
            "display_name": "CPU only",
            "slug": "cpu",
            "description": "No GPU; for editing, data preparation and small jobs.",
            "default": True,
            "kubespawner_override": {
                "environment": {"NVIDIA_VISIBLE_DEVICES": "none"},
                "cpu_limit": 4,
                "mem_limit": "16G",
            },
        }
    ]
    for count in gpu_counts:
        if count < 1:
            raise ValueError(f"GPU profile of {count} GPUs; counts start at 1")
        profiles.append(
            {
                "display_name": f"{count} GPU" + ("s" if count > 1 else ""),
                "slug": f"gpu-{count}",
                "description": f"{count} dedicated NVIDIA GPU(s) on a GPU worker.",
                "kubespawner_override": {
                    "extra_resource_limits": {GPU_RESOURCE: str(count)},
                    "extra_resource_guarantees": {GPU_RESOURCE: str(count)},
                    "node_selector": dict(gpu_node_selector),
                    "tolerations": [
                        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "extra_pod_config": {"runtimeClassName": NVIDIA_RUNTIME_CLASS},
                    "cpu_limit": 8 * count,
                    "mem_limit": f"{48 * count}G",
                },
            }
        )
    return profiles


def render_authenticator_config(auth: Authenticator, callback_url: str) -> dict[str, Any]:
    """``hub.config`` without the client secret (added as a secret by the component)."""
    section: dict[str, Any] = {
        "client_id": auth.client_id,
        "oauth_callback_url": callback_url,
    }
    if auth.kind == "github":
        if auth.allowed_organizations:
            section["allowed_organizations"] = list(auth.allowed_organizations)
            section["scope"] = ["read:org"]
    else:
        section |= {
            "authorize_url": auth.authorize_url,
            "token_url": auth.token_url,
            "userdata_url": auth.userdata_url,
            "username_claim": auth.username_claim,
        }
    authenticator: dict[str, Any] = {"admin_users": list(auth.admin_users)}
    if auth.allowed_users:
        authenticator["allowed_users"] = list(auth.allowed_users)
    return {
        "JupyterHub": {"authenticator_class": AUTHENTICATOR_CLASSES[auth.kind]},
        "Authenticator": authenticator,
        AUTHENTICATOR_SECTIONS[auth.kind]: section,
    }


def render_jupyterhub_values(
    *,
    hostname: str,
    image: str,
    auth: Authenticator,
    gpu_counts: Sequence[int],
    gpu_node_selector: dict[str, str],
    cull_timeout_seconds: int,
    cull_every_seconds: int,
    user_storage_gib: int,
    scratch_gib: int,
    tls_secret: str | None = None,
) -> dict[str, Any]:
    """Chart values (jupyterhub/values.yaml of the pinned chart), secrets excluded."""
    pin = parse_image(image)
    # z2jh joins name and tag with ':' (kubespawner image), so a digest rides in the tag.
    image_name, image_tag = pin.repository, pin.ref.removeprefix(f"{pin.repository}:")
    return {
        "hub": {
            "config": render_authenticator_config(auth, f"https://{hostname}/hub/oauth_callback"),
            # The hub's SQLite database on a node-local volume, never on NFS (LOCAL_CLASS).
            "db": {"type": "sqlite-pvc", "pvc": {"storageClassName": LOCAL_CLASS}},
        },
        "proxy": {"service": {"type": "ClusterIP"}},
        # HTTPS only (components/kube/ingress.py): OAuth session cookies never cross the LAN
        # in clear (jupyterhub/values.yaml@4.4.0 ingress: hosts, annotations, tls).
        "ingress": chart_ingress_values(hostname, tls_secret),
        "singleuser": {
            "image": {"name": image_name, "tag": image_tag},
            # Velero copies each user's home volume (components/platform/velero.py); KubeSpawner
            # expands the same template the chart names that volume with
            # (jupyterhub/values.yaml@4.4.0 singleuser.storage.dynamic.volumeNameTemplate).
            "extraAnnotations": {VELERO_BACKUP_VOLUMES: HOME_VOLUME},
            "storage": {
                "type": "dynamic",
                "capacity": f"{user_storage_gib}Gi",
                "dynamic": {"storageClass": NFS_CLASS},
                "extraVolumes": [
                    {
                        "name": "scratch",
                        "ephemeral": {
                            "volumeClaimTemplate": {
                                "spec": {
                                    "accessModes": ["ReadWriteOnce"],
                                    "storageClassName": SCRATCH_CLASS,
                                    "resources": {"requests": {"storage": f"{scratch_gib}Gi"}},
                                }
                            }
                        },
                    }
                ],
                "extraVolumeMounts": [{"name": "scratch", "mountPath": SCRATCH_MOUNT}],
            },
            "profileList": render_profiles(gpu_counts, gpu_node_selector),
            # GPU images are large; the first pull may take minutes.
            "startTimeout": 900,
        },
        "cull": {
            "enabled": True,
            "timeout": cull_timeout_seconds,
            "every": cull_every_seconds,
        },
        "prePuller": {"hook": {"enabled": False}},
    }


@dataclass(frozen=True)
class JupyterHubArgs:
    hostname: str
    image: str
    authenticator: Authenticator
    client_secret: pulumi.Input[str]
    gpu_counts: Sequence[int]
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    cull_timeout_seconds: int = 3600
    cull_every_seconds: int = 600
    user_storage_gib: int = 10
    scratch_gib: int = 100
    tls: IngressTls | None = None
    """cert-manager's issuer: a Certificate for ``hostname``."""


class JupyterHub(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: JupyterHubArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:JupyterHub", name, None, opts)
        values = render_jupyterhub_values(
            hostname=args.hostname,
            image=args.image,
            auth=args.authenticator,
            gpu_counts=args.gpu_counts,
            gpu_node_selector=args.gpu_node_selector,
            cull_timeout_seconds=args.cull_timeout_seconds,
            cull_every_seconds=args.cull_every_seconds,
            user_storage_gib=args.user_storage_gib,
            scratch_gib=args.scratch_gib,
            tls_secret=tls_secret_name(APP, args.tls, None),
        )
        section = AUTHENTICATOR_SECTIONS[args.authenticator.kind]

        def with_secret(secret: str) -> dict[str, Any]:
            config = dict(values["hub"]["config"])
            config[section] = {**config[section], "client_secret": secret}
            return {**values, "hub": {**values["hub"], "config": config}}

        # The chart stores hub.config in a Kubernetes Secret; in Pulumi the whole values
        # object is secret because it carries the OAuth client secret.
        self.values = pulumi.Output.secret(
            pulumi.Output.from_input(args.client_secret).apply(with_secret)
        )
        self.release = helm_release(
            f"{name}-release",
            release_name="jupyterhub",
            chart=JUPYTERHUB,
            namespace=NAMESPACE,
            values=self.values,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # In the release's namespace, which Helm creates.
        declare_certificate(
            f"{name}-certificate",
            app=APP,
            namespace=NAMESPACE,
            hostname=args.hostname,
            tls=args.tls,
            parent=self,
            depends_on=[self.release],
        )
        self.url = f"https://{args.hostname}/"
        self.register_outputs({"url": self.url})
