"""Every Helm chart and container image the program installs, pinned to an exact version.

One table, so an upgrade is one reviewed diff and a test can check that nothing floats
(no ``latest``, no missing version). Chart releases go through :func:`helm_release`, which
always names the Helm release (``helm.v3.Release`` would otherwise add a random suffix,
pulumi/pulumi-kubernetes#1826) and waits for it (``atomic`` rolls a failed upgrade back).
"""

from __future__ import annotations

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
# https://github.com/NVIDIA/dcgm-exporter/releases (tag 4.5.3-4.8.2: DCGM 4.5.3, exporter 4.8.2):
# GPU metrics of the AWS worker, where the device plugin runs instead of the GPU Operator.
DCGM_EXPORTER = Chart(
    "https://nvidia.github.io/dcgm-exporter/helm-charts", "dcgm-exporter", "4.8.2"
)

# https://github.com/ollama/ollama/releases
OLLAMA_IMAGE = "docker.io/ollama/ollama:0.32.15"
# https://github.com/open-webui/open-webui/releases
OPEN_WEBUI_IMAGE = "ghcr.io/open-webui/open-webui:v0.11.3"
# CUDA vectorAdd sample the GPU Operator docs use to check a node
# (https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/getting-started.html).
CUDA_SAMPLE_IMAGE = "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04"
# JupyterHub single-user image: Jupyter Docker Stacks' CUDA PyTorch build, which ships
# jupyterhub-singleuser (NGC's PyTorch image, the source design's, does not).
JUPYTER_GPU_IMAGE = "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20"
# Second local-path provisioner serving only fast-scratch (k3s owns and rewrites its own one).
LOCAL_PATH_PROVISIONER_IMAGE = "docker.io/rancher/local-path-provisioner:v0.0.31"
BUSYBOX_IMAGE = "docker.io/library/busybox:1.37.0"
# The homelab API VIP: kube-vip of kube-vip/helm-charts kube-vip-0.9.9 (appVersion v1.0.4), as a
# k3s auto-deployed manifest (components/k3s/vip.py), since it must run before Pulumi can reach
# the API through the VIP.
KUBE_VIP_IMAGE = "ghcr.io/kube-vip/kube-vip:v1.0.4"


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
