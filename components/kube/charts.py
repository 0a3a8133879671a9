"""Every Helm chart and container image the program installs, pinned to an exact version.

One table, so an upgrade is one reviewed diff and a test can check that nothing floats
(no ``latest``, no missing version). Chart releases go through :func:`helm_release`, which
always names the Helm release (``helm.v3.Release`` would otherwise add a random suffix,
pulumi/pulumi-kubernetes#1826) and waits for it (``atomic`` rolls a failed upgrade back).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class Chart:
    repo: str
    chart: str
    version: str


LIQO_DEFAULT_VERSION = "v1.2.0"
"""Default of ``hybridgpu:liqoVersion``; chart, images and liqoctl share it
(https://github.com/liqotech/liqo/releases)."""
LIQO_REPO = "https://helm.liqo.io/"

# https://github.com/NVIDIA/gpu-operator/releases
# K3s is a supported platform since v26.3.0 (release notes), K3s 1.33-1.36 in platform-support.
GPU_OPERATOR = Chart("https://helm.ngc.nvidia.com/nvidia", "gpu-operator", "v26.7.0")
# https://github.com/NVIDIA/k8s-device-plugin/releases
NVIDIA_DEVICE_PLUGIN = Chart(
    "https://nvidia.github.io/k8s-device-plugin", "nvidia-device-plugin", "0.20.0"
)
# https://github.com/kubernetes-sigs/nfs-subdir-external-provisioner/releases
NFS_SUBDIR_PROVISIONER = Chart(
    "https://kubernetes-sigs.github.io/nfs-subdir-external-provisioner/",
    "nfs-subdir-external-provisioner",
    "4.0.18",
)
# https://hub.jupyter.org/helm-chart/ (stable releases only)
JUPYTERHUB = Chart("https://hub.jupyter.org/helm-chart/", "jupyterhub", "4.4.0")
# https://github.com/aws/aws-node-termination-handler/releases: the project publishes the
# chart as an OCI artifact only (an empty repo means the chart is a full OCI reference).
NODE_TERMINATION_HANDLER = Chart(
    "", "oci://public.ecr.aws/aws-ec2/helm/aws-node-termination-handler", "0.27.6"
)
# https://github.com/awslabs/mountpoint-s3-csi-driver/releases
MOUNTPOINT_S3_CSI = Chart(
    "https://awslabs.github.io/mountpoint-s3-csi-driver",
    "aws-mountpoint-s3-csi-driver",
    "2.7.0",
)
# https://github.com/metallb/metallb/releases: LoadBalancer addresses from a LAN pool (L2).
METALLB = Chart("https://metallb.github.io/metallb", "metallb", "0.16.1")
# https://github.com/rancher/rancher/releases (stable channel)
RANCHER = Chart("https://releases.rancher.com/server-charts/stable", "rancher", "2.14.4")
# https://github.com/cert-manager/cert-manager/releases (Rancher's ingress certificates)
CERT_MANAGER = Chart("https://charts.jetstack.io", "cert-manager", "v1.19.1")
# https://github.com/prometheus-community/helm-charts/releases (homelab monitoring: Prometheus,
# Alertmanager, Grafana 12.11.1 chart, node exporter, kube-state-metrics, operator CRDs).
KUBE_PROMETHEUS_STACK = Chart(
    "https://prometheus-community.github.io/helm-charts", "kube-prometheus-stack", "88.5.3"
)
# https://github.com/prometheus-community/helm-charts/releases: node exporter 1.12.1 on the AWS
# nodes, the version kube-prometheus-stack 88.5.3 bundles for the homelab's nodes.
PROMETHEUS_NODE_EXPORTER = Chart(
    "https://prometheus-community.github.io/helm-charts", "prometheus-node-exporter", "4.56.1"
)
# https://github.com/NVIDIA/dcgm-exporter/releases (tag 4.5.3-4.8.2: DCGM 4.5.3, exporter 4.8.2):
# GPU metrics of the AWS worker, where the device plugin runs instead of the GPU Operator.
DCGM_EXPORTER = Chart(
    "https://nvidia.github.io/dcgm-exporter/helm-charts", "dcgm-exporter", "4.8.2"
)
# https://github.com/vmware-tanzu/helm-charts/releases (chart velero-12.1.0 = Velero 1.18.1):
# homelab backups of namespaced objects and volume data (components/platform/velero.py).
VELERO = Chart("https://vmware-tanzu.github.io/helm-charts", "velero", "12.1.0")

DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImagePin:
    """A container image pinned by tag AND, where one could be verified, by digest.

    ``digest`` is the registry's manifest (index) digest of exactly ``repository:tag``; the
    runtime then pulls those bytes or fails, whatever the tag points to later. ``provenance``
    says where the digest was read, or why there is none yet: a digest is never made up. An
    image without a digest is pinned by tag only (a re-pushed tag changes what runs); the
    operator can add the digest through config (``parse_image`` of an override) and checkov's
    image-digest check (CKV_K8S_43) is skipped, with this reason, on objects that use it."""

    repository: str
    tag: str
    digest: str | None
    provenance: str

    def __post_init__(self) -> None:
        if not self.repository or "@" in self.repository:
            raise ValueError(f"image repository '{self.repository}' is empty or has a digest")
        if not self.tag or self.tag == "latest" or "/" in self.tag or "@" in self.tag:
            raise ValueError(
                f"image '{self.repository}' needs an exact tag (not '{self.tag}' or latest)"
            )
        if self.digest is not None and not DIGEST_PATTERN.match(self.digest):
            raise ValueError(
                f"image {self.repository}:{self.tag}: digest '{self.digest}' is not "
                "sha256:<64 lowercase hex digits>"
            )

    @property
    def ref(self) -> str:
        """``repository:tag@sha256:...`` (or ``repository:tag`` without a digest): the tag
        stays for readers, the digest is what the runtime enforces."""
        base = f"{self.repository}:{self.tag}"
        return f"{base}@{self.digest}" if self.digest else base


def parse_image(ref: str, provenance: str = "configured") -> ImagePin:
    """``repo/name:tag`` or ``repo/name:tag@sha256:<hex>`` as an :class:`ImagePin`; raises
    ValueError naming what is wrong (no tag, ``latest``, a malformed digest)."""
    base, at, digest = ref.partition("@")
    repository, colon, tag = base.rpartition(":")
    if not colon or "/" in tag:
        raise ValueError(
            f"'{ref}' is not a pinned image; give an exact tag and, where known, the digest "
            "(repo/image:1.2.3@sha256:<64 hex>)"
        )
    return ImagePin(repository, tag, digest if at else None, provenance)


_NO_UPSTREAM_DIGEST = (
    "no digest published upstream for this tag and none verifiable offline; "
    "add it by config after checking it (crane digest REF)"
)

# https://github.com/ollama/ollama/releases. Ollama publishes no digests; this one is the
# index digest four independent public repositories pin for exactly 0.32.15 (renovate-managed,
# i.e. read from the registry), found with the code corpus; no conflicting value was found.
OLLAMA = ImagePin(
    "docker.io/ollama/ollama",
    "0.32.15",
    "sha256:57d60e686821ea81a7748a3ec8141308c8b8f95b27105713954abf7a6529e700",
    "agreed by 4 independent third-party pins of this tag (not published by upstream)",
)
# https://github.com/open-webui/open-webui/releases. Public pins of v0.11.3 disagree (41daa0cf..,
# 751b6177.., and 9cd136ef.. labelled the linux/amd64 entry), so none is taken.
OPEN_WEBUI = ImagePin(
    "ghcr.io/open-webui/open-webui",
    "v0.11.3",
    None,
    "public pins of this tag disagree (index vs platform digests); " + _NO_UPSTREAM_DIGEST,
)
# CUDA vectorAdd sample the GPU Operator docs use to check a node
# (https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/getting-started.html).
CUDA_SAMPLE = ImagePin(
    "nvcr.io/nvidia/k8s/cuda-sample",
    "vectoradd-cuda12.5.0-ubuntu22.04",
    None,
    "NGC lists digests only in its web catalog; " + _NO_UPSTREAM_DIGEST,
)
# JupyterHub single-user image: Jupyter Docker Stacks' CUDA PyTorch build, which ships
# jupyterhub-singleuser (NGC's PyTorch image, the source design's, does not).
JUPYTER_GPU = ImagePin(
    "quay.io/jupyter/pytorch-notebook", "cuda12-2025-10-20", None, _NO_UPSTREAM_DIGEST
)
# Second local-path provisioner serving only fast-scratch (k3s owns and rewrites its own one).
LOCAL_PATH_PROVISIONER = ImagePin(
    "docker.io/rancher/local-path-provisioner", "v0.0.31", None, _NO_UPSTREAM_DIGEST
)
# Docker official image: docker-library/repo-info publishes each tag's index digest
# (docker-library/repo-info repos/busybox/remote/1.37.0.md@01a7054230d50b3dccaf8d579f161c522be8c9f0,
# "docker pull busybox@sha256:9db7b599...", OCI index, 17 platforms).
BUSYBOX = ImagePin(
    "docker.io/library/busybox",
    "1.37.0",
    "sha256:9db7b59979c38555a39def84a31fb98b5296952f9e3afd4f6f11f05b07adfab0",
    "docker-library/repo-info repos/busybox/remote/1.37.0.md@01a7054",
)
# The homelab API VIP: kube-vip of kube-vip/helm-charts kube-vip-0.9.9 (appVersion v1.0.4), as a
# k3s auto-deployed manifest (components/k3s/vip.py), since it must run before Pulumi can reach
# the API through the VIP. One third-party pin of v1.0.4 exists (5e0d817b..), uncorroborated.
KUBE_VIP = ImagePin(
    "ghcr.io/kube-vip/kube-vip",
    "v1.0.4",
    None,
    "a single uncorroborated third-party pin; " + _NO_UPSTREAM_DIGEST,
)
# Velero's AWS object-store plugin. The chart names none (values.yaml@velero-12.1.0 only shows a
# commented v1.13.1). The plugin's compatibility table pairs v1.14.x with Velero v1.18.x and
# v1.13.x with v1.17.x only (vmware-tanzu/velero-plugin-for-aws README.md@v1.14.0-rc.1,
# "Compatibility"); v1.14.0-rc.1 is the one v1.14 tag upstream has (built against velero
# v1.18.0-rc.1, go.mod), so it is the pin; move to v1.14.0 once it is tagged.
VELERO_PLUGIN_FOR_AWS = ImagePin(
    "docker.io/velero/velero-plugin-for-aws", "v1.14.0-rc.1", None, _NO_UPSTREAM_DIGEST
)

IMAGES: Mapping[str, ImagePin] = {
    "ollama": OLLAMA,
    "open-webui": OPEN_WEBUI,
    "cuda-sample": CUDA_SAMPLE,
    "jupyter-gpu": JUPYTER_GPU,
    "local-path-provisioner": LOCAL_PATH_PROVISIONER,
    "busybox": BUSYBOX,
    "kube-vip": KUBE_VIP,
    "velero-plugin-for-aws": VELERO_PLUGIN_FOR_AWS,
}
"""Every image the program sets itself (chart-internal images are the charts' business)."""

OLLAMA_IMAGE = OLLAMA.ref
OPEN_WEBUI_IMAGE = OPEN_WEBUI.ref
CUDA_SAMPLE_IMAGE = CUDA_SAMPLE.ref
JUPYTER_GPU_IMAGE = JUPYTER_GPU.ref
LOCAL_PATH_PROVISIONER_IMAGE = LOCAL_PATH_PROVISIONER.ref
BUSYBOX_IMAGE = BUSYBOX.ref
KUBE_VIP_IMAGE = KUBE_VIP.ref
VELERO_PLUGIN_FOR_AWS_IMAGE = VELERO_PLUGIN_FOR_AWS.ref


def with_digest(pin: ImagePin, digest: str | None) -> str:
    """``pin``'s reference, with ``digest`` (an operator's verified override) when given."""
    if digest is None:
        return pin.ref
    return ImagePin(pin.repository, pin.tag, digest, "configured").ref


def digest_skip(image: str) -> dict[str, str]:
    """checkov skips for a pod using ``image`` when it has no digest: the digest check and the
    pull-policy check (which passes for digests: an IfNotPresent pull of a digest is exact)."""
    pin = parse_image(image)
    if pin.digest is not None:
        return {}
    reason = f"{pin.repository}:{pin.tag} has no verified digest ({pin.provenance})"
    reason = reason.replace("=", ":")
    return {"CKV_K8S_43": reason, "CKV_K8S_15": reason}


def liqo_chart(version: str) -> Chart:
    return Chart(LIQO_REPO, "liqo", version)


def helm_release(
    name: str,
    *,
    release_name: str,
    chart: Chart,
    namespace: str,
    values: pulumi.Input[Mapping[str, Any]],
    opts: pulumi.ResourceOptions,
    create_namespace: bool = True,
    timeout_seconds: int = 900,
) -> k8s.helm.v3.Release:
    """A real Helm release (hooks run, ``helm ls`` shows it) of a pinned chart."""
    return k8s.helm.v3.Release(
        name,
        name=release_name,
        chart=chart.chart,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None,
        namespace=namespace,
        create_namespace=create_namespace,
        values=values,
        atomic=True,
        cleanup_on_fail=True,
        timeout=timeout_seconds,
        max_history=5,
        opts=opts,
    )
