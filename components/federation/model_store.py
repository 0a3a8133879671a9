"""Model weights from S3 on the AWS cluster: the Mountpoint for Amazon S3 CSI driver, and the
manifest of a static, read-only PersistentVolume of the model bucket's Ollama prefix.

The aws-gpu stack installs the driver and exports the manifest; the homelab stack declares the
volume together with the claim that binds it (components/federation/ollama.py), since a static
volume must follow its claim's lifecycle to bind again after the claim is re-created.

The driver supports static provisioning only (no StorageClass provisioner, no inline volumes:
its CSIDriver declares only Persistent volumes), so the PV names the bucket and is pinned by
``claimRef`` to the one claim Ollama uses. Credentials are the GPU worker's instance profile
(read-only on the bucket), fetched through IMDSv2 with hop limit 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.kube.charts import MOUNTPOINT_S3_CSI, helm_release
from components.kube.labels import tolerations_of
from components.kube.objects import Manifest

DRIVER = "s3.csi.aws.com"
NAMESPACE = "kube-system"
MODELS_CLAIM = "ollama-models"
# Capacity is required by the API but ignored by the driver (an S3 bucket has no size).
NOMINAL_CAPACITY = "1Ti"
# What Ollama's server creates under OLLAMA_MODELS when it starts (ollama/ollama server/routes.go
# Serve: manifest.BlobsPath creates blobs/, and the manifests/ tree beside it). On the read-only
# S3 mount it cannot, so the aws-gpu stack creates both prefixes in the bucket.
MODEL_DIRECTORIES = ("blobs/", "manifests/")


def model_directories(prefix: str) -> tuple[str, ...]:
    """Bucket keys of the directories Ollama needs under the models prefix."""
    return tuple(f"{prefix}{directory}" for directory in MODEL_DIRECTORIES)


def render_csi_values(node_taints: Sequence[str]) -> dict[str, Any]:
    """Chart values (charts/aws-mountpoint-s3-csi-driver/values.yaml). The node DaemonSet
    tolerates the GPU worker's taints by name, with the chart's ``defaultTolerations``
    (CriticalAddonsOnly, its own agent-not-ready taint, NoExecute for 300 s): not
    ``tolerateAllTaints``, whose bare ``operator: Exists`` (templates/node.yaml) also tolerates the
    stopped worker's unreachable taint, so that an upgrade would wait for a pod that cannot start
    (components/kube/labels.py STOPPED_NODE_TAINT)."""
    return {
        # k3s's kubelet root is the standard /var/lib/kubelet (the chart's default, stated).
        "node": {
            "kubeletPath": "/var/lib/kubelet",
            "tolerateAllTaints": False,
            "tolerations": tolerations_of(node_taints),
        },
    }


def pv_name(namespace: str) -> str:
    return f"{namespace}-{MODELS_CLAIM}-s3"


def render_models_volume(
    *,
    bucket_name: pulumi.Input[str],
    region: str,
    prefix: str,
    namespace: str,
    cache_gib: int,
) -> Manifest:
    """The static read-only PV (https://github.com/awslabs/mountpoint-s3-csi-driver/blob/main/docs/CONFIGURATION.md)."""
    mount_options = ["read-only", f"region {region}"]
    if prefix:
        mount_options.append(f"prefix {prefix}")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name(namespace)},
        "spec": {
            "capacity": {"storage": NOMINAL_CAPACITY},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": namespace, "name": MODELS_CLAIM},
            "mountOptions": mount_options,
            "csi": {
                "driver": DRIVER,
                "volumeHandle": f"{pv_name(namespace)}-handle",
                "readOnly": True,
                "volumeAttributes": {
                    "bucketName": bucket_name,
                    # Local read cache: a model loaded before is read from the node's disk.
                    "cache": "emptyDir",
                    "cacheEmptyDirSizeLimit": f"{cache_gib}Gi",
                },
            },
        },
    }


def render_models_claim(namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": MODELS_CLAIM, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": pv_name(namespace),
            "resources": {"requests": {"storage": NOMINAL_CAPACITY}},
        },
    }


@dataclass(frozen=True)
class ModelStoreArgs:
    bucket_name: pulumi.Input[str]
    region: str
    prefix: str
    namespace: str
    """Namespace of the claim (the offloaded LLM namespace, created by Liqo on this cluster)."""
    cache_gib: int
    node_taints: Sequence[str] = ()
    """Taints of the GPU worker, where the volume is mounted (tolerated by the CSI node)."""


class ModelStore(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:llm:ModelStore", name, None, opts)
        self.driver = helm_release(
            f"{name}-csi-driver",
            release_name="aws-mountpoint-s3-csi-driver",
            chart=MOUNTPOINT_S3_CSI,
            namespace=NAMESPACE,
            values=render_csi_values(args.node_taints),
            create_namespace=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.manifest = render_models_volume(
            bucket_name=args.bucket_name,
            region=args.region,
            prefix=args.prefix,
            namespace=args.namespace,
            cache_gib=args.cache_gib,
        )
        self.volume_name = pv_name(args.namespace)
        self.register_outputs({"volumeName": self.volume_name})
