"""Open WebUI in the homelab, exposed by k3s's Traefik ingress, talking to Ollama through
gpu-waker (the token-checked proxy on the AWS control node that starts the GPU worker on demand).

It uses Open WebUI's OpenAI-compatible connection to Ollama's ``/v1`` API, because that is the
connection whose bearer key Open WebUI takes from the environment (``OPENAI_API_BASE_URLS`` /
``OPENAI_API_KEYS``); its Ollama connection's key (``OLLAMA_API_CONFIGS``) has no environment
source (open-webui/open-webui backend/open_webui/config.py). Login is required and sign-up is
closed: the admin account is created at first start from the configured e-mail and a generated
password (secret), so nobody who merely reaches the page first becomes admin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.k3s.pod_security import Level, with_level
from components.kube.charts import digest_skip
from components.kube.ingress import (
    IngressTls,
    declare_certificate,
    render_ingress,
    tls_secret_name,
)
from components.kube.labels import VELERO_BACKUP_VOLUMES
from components.kube.objects import Manifest, app_labels, declare, render_service
from components.kube.security import (
    NON_ROOT_UID,
    checkov_skips,
    container_security_context,
    http_liveness,
    pod_security_context,
    scratch_volumes,
)
from components.platform.storage_classes import LOCAL_CLASS

APP = "open-webui"
HTTP_PORT = 8080
DATA_PATH = "/app/backend/data"
# Writable places besides the data volume, for a non-root UID on a read-only root: HOME (caches
# of Python libraries), /tmp, and STATIC_DIR, into which Open WebUI copies its frontend's static
# files at every start (open-webui/open-webui backend/open_webui/config.py@v0.11.3, STATIC_DIR;
# default backend/open_webui/static inside the image).
HOME_PATH = "/home/open-webui"
TMP_PATH = "/tmp"  # noqa: S108 - an emptyDir mounted there
STATIC_PATH = "/var/lib/open-webui/static"
SCRATCH = {"home": HOME_PATH, "tmp": TMP_PATH, "static": STATIC_PATH}
SECRET_NAME = "open-webui-secrets"  # noqa: S105 - a Secret object name, not a credential


# Open WebUI's pod is hardened to "restricted" (non-root, seccomp, no capabilities);
# tests/test_pod_security.py checks it meets the level.
POD_SECURITY_LEVEL: Level = "restricted"
POD_SECURITY_REASON = ""


def render_namespace(namespace: str) -> Manifest:
    return with_level(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        POD_SECURITY_LEVEL,
        POD_SECURITY_REASON,
    )


SECRET_ENV = ("WEBUI_SECRET_KEY", "WEBUI_ADMIN_PASSWORD", "OPENAI_API_BASE_URLS", "OPENAI_API_KEYS")
# Open WebUI's total timeout of a backend request, stream included (default 300 s): a cold
# start holds the request up to gpuWaker.wakeTimeoutSeconds (<= 600) at the wake gate while the
# sleeping AWS side starts, up to as long again at gpu-waker on AWS while the worker comes up,
# then the model loads and answers.
REQUEST_TIMEOUT_SECONDS = 1800


def render_secret(
    namespace: str,
    secret_key: pulumi.Input[str],
    admin_password: pulumi.Input[str],
    llm_base_url: pulumi.Input[str],
    llm_token: pulumi.Input[str],
) -> Manifest:
    """``llm_base_url``: gpu-waker's ``/v1``; ``llm_token``: its bearer token."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": namespace},
        "type": "Opaque",
        "stringData": {
            "WEBUI_SECRET_KEY": secret_key,
            "WEBUI_ADMIN_PASSWORD": admin_password,
            "OPENAI_API_BASE_URLS": llm_base_url,
            "OPENAI_API_KEYS": llm_token,
        },
    }


def render_data_claim(namespace: str, storage_gib: int) -> Manifest:
    """Open WebUI keeps its SQLite database here: on a node-local volume, never on NFS
    (LOCAL_CLASS); the pod then stays on that node. A ``local`` volume, not the provisioner's
    default ``hostPath`` one (rancher/local-path-provisioner README "Volume Types", PVC annotation
    ``volumeType``): Velero's file-system backup skips hostPath volumes, which the kubelet does
    not mount under its pods directory (vmware-tanzu/velero pkg/podvolume/backupper.go@v1.18.1
    isHostPathVolume)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": f"{APP}-data",
            "namespace": namespace,
            "annotations": {"volumeType": "local"},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": LOCAL_CLASS,
            "resources": {"requests": {"storage": f"{storage_gib}Gi"}},
        },
    }


def render_deployment(namespace: str, image: str, admin_email: str) -> Manifest:
    secret_env = [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": name}}}
        for name in SECRET_ENV
    ]
    writable_mounts, writable_volumes = scratch_volumes(SCRATCH)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": APP,
            "namespace": namespace,
            "labels": app_labels(APP),
            "annotations": checkov_skips(
                {
                    **digest_skip(image),
                    "CKV_K8S_35": "Open WebUI reads its secret key and admin password and the "
                    "LLM key only from environment variables (no file variant in "
                    "backend/open_webui/env.py); they come from a Secret (secretKeyRef)",
                }
            ),
        },
        "spec": {
            "replicas": 1,
            # SQLite on a ReadWriteOnce volume: one writer at a time.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": app_labels(APP)},
            "template": {
                "metadata": {
                    "labels": app_labels(APP),
                    # Velero copies the SQLite database and uploads (components/platform/velero.py).
                    "annotations": {VELERO_BACKUP_VOLUMES: "data"},
                },
                "spec": {
                    # Open WebUI never talks to the Kubernetes API; an admin's Python (Functions,
                    # Tools) runs in this pod and must not find a token.
                    "automountServiceAccountToken": False,
                    # The data volume is a local-path directory made mode 0777 by the
                    # provisioner's setup script, so any UID writes it.
                    "securityContext": pod_security_context(fs_group=NON_ROOT_UID),
                    "containers": [
                        {
                            "name": APP,
                            "image": image,
                            "securityContext": container_security_context(),
                            "ports": [
                                {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}
                            ],
                            "env": [
                                {"name": "WEBUI_AUTH", "value": "True"},
                                {"name": "HOME", "value": HOME_PATH},
                                {"name": "STATIC_DIR", "value": STATIC_PATH},
                                # Settings come from here on every start, not from the database
                                # copy Open WebUI would otherwise keep after the first one.
                                {"name": "ENABLE_PERSISTENT_CONFIG", "value": "False"},
                                {"name": "ENABLE_SIGNUP", "value": "False"},
                                {"name": "DEFAULT_USER_ROLE", "value": "pending"},
                                {"name": "WEBUI_ADMIN_EMAIL", "value": admin_email},
                                # Session and auth cookies only over HTTPS (the ingress serves
                                # nothing else); both default to false (open-webui
                                # backend/open_webui/env.py: WEBUI_SESSION_COOKIE_SECURE, and
                                # WEBUI_AUTH_COOKIE_SECURE which falls back to it).
                                {"name": "WEBUI_SESSION_COOKIE_SECURE", "value": "True"},
                                {"name": "WEBUI_AUTH_COOKIE_SECURE", "value": "True"},
                                # Ollama through gpu-waker's OpenAI-compatible /v1 (see above).
                                {"name": "ENABLE_OLLAMA_API", "value": "False"},
                                {"name": "ENABLE_OPENAI_API", "value": "True"},
                                {
                                    "name": "AIOHTTP_CLIENT_TIMEOUT",
                                    "value": str(REQUEST_TIMEOUT_SECONDS),
                                },
                                *secret_env,
                            ],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "1Gi"},
                                "limits": {"cpu": "2", "memory": "4Gi"},
                            },
                            "livenessProbe": http_liveness("/health"),
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": "http"},
                                "periodSeconds": 10,
                            },
                            "startupProbe": {
                                "httpGet": {"path": "/health", "port": "http"},
                                "periodSeconds": 10,
                                "failureThreshold": 60,
                            },
                            "volumeMounts": [
                                {"name": "data", "mountPath": DATA_PATH},
                                *writable_mounts,
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": f"{APP}-data"}},
                        *writable_volumes,
                    ],
                },
            },
        },
    }


@dataclass(frozen=True)
class OpenWebUiArgs:
    namespace: str
    image: str
    hostname: str
    llm_base_url: pulumi.Input[str]
    """gpu-waker's OpenAI-compatible API: ``http://<control node overlay IP>:<port>/v1``."""
    llm_token: pulumi.Input[str]
    """gpu-waker's client token (secret)."""
    admin_email: str
    storage_gib: int
    secret_key: pulumi.Input[str]
    admin_password: pulumi.Input[str]
    tls_secret: str | None = None
    """A manual certificate's Secret; overrides ``tls``."""
    tls: IngressTls | None = None
    """cert-manager's issuer: a Certificate for ``hostname`` unless ``tls_secret`` is set."""
    ingress_ready: Sequence[pulumi.Resource] = ()
    """What gives the ingress controller its address: pulumi-kubernetes waits for an Ingress
    until its status carries one (provider/pkg/await/ingress.go)."""


class OpenWebUi(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: OpenWebUiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:llm:OpenWebUi", name, None, opts)
        namespace = declare(
            f"{name}-namespace",
            render_namespace(args.namespace),
            pulumi.ResourceOptions(parent=self),
        )
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        secret = declare(
            f"{name}-secrets",
            render_secret(
                args.namespace,
                pulumi.Output.secret(args.secret_key),
                pulumi.Output.secret(args.admin_password),
                args.llm_base_url,
                pulumi.Output.secret(args.llm_token),
            ),
            in_namespace,
        )
        claim = declare(
            f"{name}-data", render_data_claim(args.namespace, args.storage_gib), in_namespace
        )
        declare(
            f"{name}-deployment",
            render_deployment(args.namespace, args.image, args.admin_email),
            pulumi.ResourceOptions(parent=self, depends_on=[secret, claim]),
        )
        declare(f"{name}-service", render_service(APP, args.namespace, 80), in_namespace)
        declare_certificate(
            f"{name}-certificate",
            app=APP,
            namespace=args.namespace,
            hostname=args.hostname,
            tls=args.tls,
            manual_secret=args.tls_secret,
            parent=self,
            depends_on=[namespace],
        )
        declare(
            f"{name}-ingress",
            render_ingress(
                APP,
                args.namespace,
                args.hostname,
                "http",
                tls_secret_name(APP, args.tls, args.tls_secret),
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[namespace, *args.ingress_ready]),
        )
        self.url = f"https://{args.hostname}/"
        self.register_outputs({"url": self.url})
