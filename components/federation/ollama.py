"""Ollama declared in the homelab cluster, running on the AWS GPU worker through Liqo.

Homelab side: the LLM namespace offloaded with pod offloading strategy Remote (only this
namespace's pods leave the homelab), the Deployment (pinned to the virtual node), its Service
and a NetworkPolicy naming the allowed client namespaces. The models claim exists on both
sides: on AWS it is bound to the Mountpoint S3 volume (``model_store.py`` renders it) and is what
the offloaded pod mounts (Liqo passes volumes through unchanged); in the homelab an inert twin of
the same volume lets the scheduler place the pod (it never mounts there).

AWS side (the namespace Liqo creates, same name): the claim, its volume and a NetworkPolicy
admitting only gpu-waker (on the AWS control node) on the Ollama port: clients reach Ollama
through it, with its token, and nothing else does (not the homelab's pods through Liqo's tunnel
either).

Before Ollama starts, an init container checks the models tree (``verify_models.sh`` here): every
blob hashes to its name, every manifest's blobs exist with their sizes.

Each volume is declared after its claim and names the claim's uid in ``claimRef``: a static
volume stays ``Released`` for good once the claim it was bound to is deleted (the binder matches
the uid), so when the claim is created again (homelab destroy and up, unpeer and re-peer) its new
uid changes the volume's input and the next ``up`` re-points it, and it binds again. The claims
are not awaited (``pulumi.com/skipAwait``): they stay Pending until their volume exists, and
pulumi-kubernetes waits for a claim to be Bound (provider/pkg/await/awaiters.go,
untilCoreV1PersistentVolumeClaimReady); the volume is awaited until Available or Bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from components.federation.liqo import (
    REMOTE_CLUSTER_ID_LABEL,
    VIRTUAL_NODE_LABEL,
    VIRTUAL_NODE_TAINT_EFFECT,
    VIRTUAL_NODE_TAINT_KEY,
)
from components.federation.llm_namespace import render_namespace, render_remote_namespace
from components.federation.model_store import MODELS_CLAIM, render_models_claim
from components.federation.ollama_policies import (
    APP,
    render_homelab_policy,
    render_remote_policy,
)
from components.kube import security
from components.kube.charts import BUSYBOX_IMAGE, digest_skip
from components.kube.labels import GPU_RESOURCE, NVIDIA_RUNTIME_CLASS, outage_tolerations
from components.kube.objects import Manifest, app_labels, declare, render_service
from components.nebula.config import OLLAMA_PORT
from components.platform.teams import render_gpu_quota

MODELS_PATH = "/models"
# Writable emptyDirs under a read-only root: HOME, where Ollama writes its key pair
# ($HOME/.ollama, ollama/ollama auth/auth.go@v0.32.15 keyPath), and /tmp.
HOME_PATH = "/home/ollama"
SCRATCH = {"home": HOME_PATH, "tmp": "/tmp"}  # noqa: S108 - emptyDirs, not the host's /tmp
# pulumi-kubernetes: "If the 'pulumi.com/skipAwait' annotation is true, the ready condition will
# no-op" (provider/pkg/metadata/annotations.go, AnnotationSkipAwait, GetReadyCondition).
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
VERIFY_MODELS_SCRIPT = Path(__file__).with_name("verify_models.sh")
# The init check runs as nobody; the pod's fsGroup makes the Mountpoint driver mount the models
# with that group, allow-other and mode 660/770 (mountpoint-s3-csi-driver
# helm-chart-aws-mountpoint-s3-csi-driver-2.7.0: pkg/driver/node/node.go, docs/UPGRADING_TO_V2.md
# "respect fsGroup"). Liqo copies the pod securityContext and init containers to the remote pod
# (liqotech/liqo v1.2.0 pkg/virtualKubelet/forge/pods.go).
MODELS_READER_ID = 65534


def render_verify_models_container(image: str = BUSYBOX_IMAGE) -> Manifest:
    """Init container: Ollama starts only if every blob hashes to its name and every manifest's
    blobs exist with their sizes (verify_models.sh, read-only, as an unprivileged user)."""
    return {
        "name": "verify-models",
        "image": image,
        "command": ["/bin/sh", "-c", VERIFY_MODELS_SCRIPT.read_text(), "verify-models"],
        "args": [MODELS_PATH],
        "securityContext": security.container_security_context(MODELS_READER_ID),
        "resources": {
            "requests": {"cpu": "100m", "memory": "32Mi"},
            "limits": {"cpu": "1", "memory": "64Mi"},
        },
        "volumeMounts": [{"name": "models", "mountPath": MODELS_PATH, "readOnly": True}],
    }


@dataclass(frozen=True)
class OllamaSettings:
    namespace: str
    image: str
    keep_alive: str
    max_loaded_models: int
    memory_gib: int
    provider_cluster_id: pulumi.Input[str]
    """Liqo cluster id of the AWS cluster (from the aws-gpu stack's outputs)."""
    client_namespaces: Sequence[str]
    """Namespaces (homelab) whose pods may call Ollama: Open WebUI's and configured ones."""
    verify_image: str = BUSYBOX_IMAGE
    cpu_limit: str = "4"
    """The CPUs the peering offers (offload.cpu): the most the pod gets on the virtual node."""


def render_offloading(namespace: str, provider_cluster_id: pulumi.Input[str]) -> Manifest:
    """NamespaceOffloading (offloading.liqo.io/v1beta1); Liqo reads the one named
    ``offloading`` in the namespace."""
    return {
        "apiVersion": "offloading.liqo.io/v1beta1",
        "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading", "namespace": namespace},
        "spec": {
            # Same name on AWS: the models claim there is declared by name.
            "namespaceMappingStrategy": "EnforceSameName",
            "podOffloadingStrategy": "Remote",
            "clusterSelector": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": REMOTE_CLUSTER_ID_LABEL,
                                "operator": "In",
                                "values": [provider_cluster_id],
                            }
                        ]
                    }
                ]
            },
        },
    }


def render_deployment(settings: OllamaSettings) -> Manifest:
    label_key, label_value = VIRTUAL_NODE_LABEL
    memory = f"{settings.memory_gib}Gi"
    limits = {"cpu": settings.cpu_limit, "memory": memory, GPU_RESOURCE: 1}
    skips = security.checkov_skips(
        {**digest_skip(settings.image), **digest_skip(settings.verify_image)}
    )
    scratch_mounts, scratch_volumes = security.scratch_volumes(SCRATCH)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": APP,
            "namespace": settings.namespace,
            "labels": app_labels(APP),
            # Not awaited: the pod runs on the AWS GPU worker, stopped on purpose whenever it is
            # idle (a GPU that costs nothing while idle), and the first start waits for models
            # to be put in the bucket. Awaiting it would fail `pulumi up` after 10 minutes and
            # retry on every later `up` until the worker runs.
            "annotations": {**SKIP_AWAIT, **skips},
        },
        "spec": {
            "replicas": 1,
            # One GPU, one pod: never run two during a rollout.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": app_labels(APP)},
            "template": {
                "metadata": {
                    "labels": app_labels(APP),
                    # No homelab API on AWS (liqotech/liqo@v1.2.0 pkg/consts/annotations.go).
                    "annotations": {"liqo.io/api-server-support": "disabled"},
                },
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {
                                                "key": label_key,
                                                "operator": "In",
                                                "values": [label_value],
                                            },
                                            {
                                                "key": REMOTE_CLUSTER_ID_LABEL,
                                                "operator": "In",
                                                "values": [settings.provider_cluster_id],
                                            },
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                    "tolerations": [
                        {
                            "key": VIRTUAL_NODE_TAINT_KEY,
                            "operator": "Exists",
                            "effect": VIRTUAL_NODE_TAINT_EFFECT,
                        },
                        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
                        # A home WAN flap (virtual node NotReady here) or a control-node reboot
                        # (GPU worker unreachable there) must not evict a loaded model: Liqo
                        # copies every toleration but its own to the remote pod
                        # (liqotech/liqo pkg/virtualKubelet/forge/pods.go@v1.2.0,
                        # RemoteTolerations), so this holds on both clusters.
                        *outage_tolerations(),
                    ],
                    # Resolved on the AWS cluster, where k3s registers the nvidia runtime.
                    "runtimeClassName": NVIDIA_RUNTIME_CLASS,
                    # No API token: Ollama calls none, and Liqo would hand the offloaded pod one
                    # of the homelab's API (liqotech/liqo docs/advanced/kubernetes-api.md@v1.2.0).
                    "automountServiceAccountToken": False,
                    "securityContext": security.pod_security_context(fs_group=MODELS_READER_ID),
                    "initContainers": [render_verify_models_container(settings.verify_image)],
                    "containers": [
                        {
                            "name": APP,
                            "image": settings.image,
                            "args": ["serve"],
                            "securityContext": security.container_security_context(),
                            "ports": [
                                {"name": "http", "containerPort": OLLAMA_PORT, "protocol": "TCP"}
                            ],
                            "env": [
                                {"name": "OLLAMA_HOST", "value": f"0.0.0.0:{OLLAMA_PORT}"},
                                {"name": "HOME", "value": HOME_PATH},
                                {"name": "OLLAMA_KEEP_ALIVE", "value": settings.keep_alive},
                                {"name": "OLLAMA_MODELS", "value": MODELS_PATH},
                                # The models tree is read-only: never prune at start-up.
                                {"name": "OLLAMA_NOPRUNE", "value": "1"},
                                {
                                    "name": "OLLAMA_MAX_LOADED_MODELS",
                                    "value": str(settings.max_loaded_models),
                                },
                            ],
                            "resources": {
                                "requests": {"cpu": "2", "memory": memory, GPU_RESOURCE: 1},
                                "limits": limits,
                            },
                            # Answered while a model loads too: failing means hung, not busy.
                            "livenessProbe": security.http_liveness("/api/version"),
                            "readinessProbe": {
                                "httpGet": {"path": "/api/tags", "port": "http"},
                                "periodSeconds": 10,
                                "failureThreshold": 3,
                            },
                            "startupProbe": {
                                "httpGet": {"path": "/api/tags", "port": "http"},
                                "periodSeconds": 5,
                                "failureThreshold": 60,
                            },
                            "volumeMounts": [
                                {"name": "models", "mountPath": MODELS_PATH, "readOnly": True},
                                *scratch_mounts,
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "models",
                            "persistentVolumeClaim": {"claimName": MODELS_CLAIM, "readOnly": True},
                        },
                        *scratch_volumes,
                    ],
                },
            },
        },
    }


@dataclass(frozen=True)
class OllamaArgs:
    settings: OllamaSettings
    models_volume: pulumi.Input[Mapping[str, Any]]
    """The AWS cluster's models PersistentVolume manifest (aws-gpu output ``modelsVolume``)."""
    proxy_source_cidr: str
    """Where gpu-waker's connections to Ollama come from on the AWS cluster (the control
    node's pod range, see components/aws/gpu_waker_render.control_node_pod_subnet)."""
    remote_provider: pulumi.ProviderResource
    """Kubernetes provider of the AWS cluster (its admin kubeconfig)."""
    wait_for: Sequence[pulumi.Resource] = ()
    """The Liqo peering: the namespace is offloaded only once the virtual node exists."""
    gpu_quota: int | None = None
    """GPU quota of the namespace (the virtual node's GPUs: no more AWS GPUs than budgeted)."""


class Ollama(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: OllamaArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:llm:Ollama", name, None, opts)
        settings = args.settings
        namespace_name = settings.namespace
        ns_manifest = render_namespace(namespace_name)
        namespace = declare(f"{name}-namespace", ns_manifest, pulumi.ResourceOptions(parent=self))
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        offloading = declare(
            f"{name}-offloading",
            render_offloading(namespace_name, settings.provider_cluster_id),
            pulumi.ResourceOptions(parent=self, depends_on=[namespace, *args.wait_for]),
        )
        # Inert twin of the AWS volume (the very same manifest): lets the homelab scheduler bind
        # the claim; the pod never mounts it here.
        twin_volume = _claim_then_volume(
            f"{name}-models",
            render_models_claim(namespace_name),
            args.models_volume,
            in_ns,
            volume_name=f"{name}-models-twin",
        )
        on_aws = pulumi.ResourceOptions(
            parent=self, provider=args.remote_provider, depends_on=[offloading]
        )
        remote_volume = _claim_then_volume(
            f"{name}-remote-models",
            render_models_claim(namespace_name),
            args.models_volume,
            on_aws,
            volume_name=f"{name}-remote-models-volume",
        )
        remote_namespace = k8s.core.v1.NamespacePatch(
            f"{name}-remote-namespace-labels",
            metadata=render_remote_namespace(namespace_name)["metadata"],
            opts=on_aws,
        )
        declare(
            f"{name}-remote-policy",
            render_remote_policy(namespace_name, args.proxy_source_cidr),
            on_aws,
        )
        homelab_policy = render_homelab_policy(namespace_name, settings.client_namespaces)
        declare(f"{name}-policy", homelab_policy, in_ns)
        if args.gpu_quota is not None:
            declare(f"{name}-gpu-quota", render_gpu_quota(namespace_name, args.gpu_quota), in_ns)
        self.service = declare(
            f"{name}-service", render_service(APP, namespace_name, OLLAMA_PORT), in_ns
        )
        self.deployment = declare(
            f"{name}-deployment",
            render_deployment(settings),
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[offloading, twin_volume, remote_volume, remote_namespace],
            ),
        )
        self.url = f"http://{APP}.{namespace_name}.svc.cluster.local:{OLLAMA_PORT}"
        self.register_outputs({"url": self.url})


def bind_volume(volume: Mapping[str, Any], claim_uid: str) -> Any:
    """The volume pre-bound to the claim with this uid (``spec.claimRef.uid``)."""
    spec = dict(volume["spec"])
    spec["claimRef"] = {**spec["claimRef"], "uid": claim_uid}
    return spec


def _claim_then_volume(
    name: str,
    claim: Manifest,
    volume: pulumi.Input[Mapping[str, Any]],
    opts: pulumi.ResourceOptions,
    *,
    volume_name: str,
) -> pulumi.Resource:
    """The claim (not awaited), then the volume bound to its uid; returns the volume, what a
    pod using the claim waits for."""
    claim = {**claim, "metadata": {**claim["metadata"], "annotations": dict(SKIP_AWAIT)}}
    created = cast(k8s.core.v1.PersistentVolumeClaim, declare(f"{name}-claim", claim, opts))
    manifest = pulumi.Output.from_input(volume)
    uid = created.metadata.apply(lambda metadata: metadata.uid or "")
    return k8s.core.v1.PersistentVolume(
        volume_name,
        metadata=manifest.apply(lambda m: m["metadata"]),
        spec=pulumi.Output.all(manifest, uid).apply(lambda v: bind_volume(v[0], v[1])),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[created])),
    )
