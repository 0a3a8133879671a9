"""Liqo federation and LLM serving (issue: federation), composed from components.

aws-gpu (provider): Liqo, the Mountpoint S3 CSI driver and the read-only models volume.
homelab (consumer): Liqo, the peering (liqoctl), Ollama in the offloaded namespace, Open WebUI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pulumi_command import remote

from components.aws.gpu_waker_render import NAMESPACE as WAKER_NAMESPACE
from components.aws.gpu_waker_render import control_node_pod_subnet, load_bundle
from components.federation import open_webui as open_webui_app
from components.federation.gpu_waker_clients import GpuWakerClients, GpuWakerClientsArgs
from components.federation.liqo import Liqo, LiqoArgs, Placement
from components.federation.liqo_peering import LiqoPeering, LiqoPeeringArgs, PeeringSettings
from components.federation.model_store import ModelStore, ModelStoreArgs
from components.federation.offload_admission import (
    OffloadAdmission,
    OffloadAdmissionArgs,
    SliceCaps,
)
from components.federation.ollama import Ollama, OllamaArgs, OllamaSettings
from components.federation.open_webui import OpenWebUi, OpenWebUiArgs
from components.federation.wake_gate import WakeGate, WakeGateArgs
from components.k3s.config import k3s_api_url
from components.kube.charts import BUSYBOX, with_digest
from components.kube.ingress import IngressTls
from components.kube.labels import (
    AWS_CONTROL_NODE_TAINTS,
    AWS_GPU_WORKER_TAINTS,
    CONTROL_NODE_LABEL,
    CONTROL_PLANE_TAINT,
    GPU_RESOURCE,
    toleration,
    tolerations_of,
)
from components.kube.network_policies import (
    NamespaceIsolation,
    NamespaceIsolationArgs,
    from_ingress_controller,
)
from components.kube.objects import app_labels
from components.nebula.config import GPU_WAKER_PORT, LIQO_GATEWAY_NODEPORT
from stacks.config import AwsGpuConfig, HomelabConfig, ProjectSettings
from stacks.gpu_waker import RUNTIME_PACKAGE

OPEN_WEBUI_NAMESPACE = "open-webui"


def reserved_subnets(project: ProjectSettings) -> list[str]:
    """Ranges Liqo must never use for remapping on either side: LAN, VPC and overlay."""
    network = project.network
    return [
        str(network.homelab_lan_cidr),
        str(network.aws_vpc_cidr),
        str(network.nebula_overlay_cidr),
    ]


def aws_federation(
    config: AwsGpuConfig, provider: k8s.Provider, bucket_name: pulumi.Input[str]
) -> ModelStore:
    """Liqo and the model store; the store's PV manifest is exported for the homelab's twin."""
    project = config.project
    network = project.network
    settings = config.aws
    on_cluster = pulumi.ResourceOptions(provider=provider)
    liqo = Liqo(
        "liqo",
        LiqoArgs(
            version=project.liqo_version,
            cluster_id=settings.federation.cluster_id,
            api_server_url=k3s_api_url(str(settings.control_node.overlay_ip)),
            pod_cidr=str(network.aws_pod_cidr),
            service_cidr=str(network.aws_service_cidr),
            reserved_subnets=reserved_subnets(project),
            cluster_labels={
                "hybridgpu.io/cluster": settings.federation.cluster_id,
                "topology.kubernetes.io/region": settings.region,
            },
            # On the always-on control node: the GPU worker stops when idle, and a gateway on it
            # would take the tunnel (and the virtual node) down with it.
            placement=Placement(
                node_selector=dict([CONTROL_NODE_LABEL]),
                tolerations=[toleration(CONTROL_PLANE_TAINT)],
                fabric_tolerations=tolerations_of(AWS_CONTROL_NODE_TAINTS + AWS_GPU_WORKER_TAINTS),
            ),
        ),
        opts=on_cluster,
    )
    # What the homelab may run here and claim: see components/federation/offload_admission.py.
    OffloadAdmission(
        "offload-admission",
        OffloadAdmissionArgs(
            slice_caps=SliceCaps(
                gpus=settings.gpu_worker.gpu_count,
                pods=settings.federation.max_offloaded_pods,
            ),
            wait_for=(liqo.release,),
        ),
        opts=on_cluster,
    )
    store_args = ModelStoreArgs(
        bucket_name=bucket_name,
        region=settings.region,
        prefix=settings.model_store.prefix,
        namespace=project.llm_namespace,
        cache_gib=settings.model_store.cache_gib,
        node_taints=AWS_GPU_WORKER_TAINTS,
    )
    return ModelStore("model-store", store_args, opts=on_cluster)


@dataclass(frozen=True)
class HomelabFederation:
    open_webui_url: str
    open_webui_admin_password: pulumi.Output[str]
    wake_gate_url: str | None


@dataclass(frozen=True)
class ProviderSide:
    """What the homelab knows of the AWS cluster (from the aws-gpu stack's outputs)."""

    cluster_id: pulumi.Input[str]
    admin_kubeconfig: pulumi.Input[str]
    gateway_address: pulumi.Input[str]
    models_volume: pulumi.Input[dict[str, Any]]
    waker_url: pulumi.Input[str]
    """gpu-waker on the AWS control node: the only way to Ollama (aws-gpu ``gpuWakerUrl``)."""
    waker_token: pulumi.Input[str]
    """Its clients' bearer token (aws-gpu ``gpuWakerToken``, secret)."""
    wake_gate: pulumi.Input[dict[str, Any]] | None = None
    """aws-gpu ``wakeGate`` when the AWS side sleeps (then the gate is what clients call)."""
    wake_gate_key: pulumi.Input[str] | None = None
    """aws-gpu ``wakeGatePrivateKey`` (secret)."""


@dataclass(frozen=True)
class GateHost:
    """Where the wake gate runs: the first control plane (a k3s server on the mesh)."""

    ip: str
    ssh: remote.ConnectionArgs
    machine: pulumi.Resource | None
    wait_for: Sequence[pulumi.Resource]
    port: int = GPU_WAKER_PORT

    @property
    def address(self) -> str:
        """``ip:port``: where the clients (and Prometheus) reach the gate."""
        return f"{self.ip}:{self.port}"


def homelab_federation(
    config: HomelabConfig,
    *,
    provider: k8s.Provider,
    consumer_kubeconfig: pulumi.Input[str],
    api_server_url: str,
    remote: ProviderSide,
    wait_for: list[pulumi.Resource],
    ingress: pulumi.Resource,
    tls: IngressTls | None = None,
    gate_host: GateHost | None = None,
) -> HomelabFederation:
    """``wait_for``: the GPU stack; Liqo's gateway and Ollama's RuntimeClass come after it.
    ``ingress``: Traefik's address, which Open WebUI's Ingress is awaited for; ``tls``: where
    its certificate comes from."""
    project = config.project
    network = project.network
    homelab = config.homelab
    on_cluster = pulumi.ResourceOptions(provider=provider)
    liqo = Liqo(
        "liqo",
        LiqoArgs(
            version=project.liqo_version,
            cluster_id=homelab.federation.cluster_id,
            api_server_url=api_server_url,
            pod_cidr=str(network.homelab_pod_cidr),
            service_cidr=str(network.homelab_service_cidr),
            reserved_subnets=reserved_subnets(project),
            cluster_labels={"hybridgpu.io/cluster": homelab.federation.cluster_id},
        ),
        opts=on_cluster,
    )
    offload = homelab.federation.offload
    peering = LiqoPeering(
        "liqo-peering",
        LiqoPeeringArgs(
            gateway_address=remote.gateway_address,
            settings=PeeringSettings(
                liqo_version=project.liqo_version,
                gateway_nodeport=LIQO_GATEWAY_NODEPORT,
                mtu=project.liqo_mtu,
                cpu=offload.cpu,
                memory=f"{offload.memory_gib}Gi",
                pods=offload.pods,
                resources={GPU_RESOURCE: offload.gpus},
            ),
            consumer_kubeconfig=consumer_kubeconfig,
            provider_kubeconfig=remote.admin_kubeconfig,
            depends_on=(liqo.release, *wait_for),
        ),
    )
    # A stable identity: the admin kubeconfig changes with the admin path (Elastic IP or
    # overlay, aws-gpu's adminAccess) and the yearly certificate; neither is a new cluster, so
    # neither may replace the provider and with it every object on AWS. Adding the identifier
    # to an existing provider is no replacement either
    # (pulumi/pulumi-kubernetes provider/pkg/provider/provider.go@v4.32.0, DiffConfig).
    aws_k8s = k8s.Provider(
        "aws-gpu-k8s",
        kubeconfig=pulumi.Output.secret(remote.admin_kubeconfig),
        enable_server_side_apply=True,
        cluster_identifier=pulumi.Output.concat("hybridgpu-", remote.cluster_id),
    )
    ollama_settings = homelab.ollama
    ollama = Ollama(
        "ollama",
        OllamaArgs(
            settings=OllamaSettings(
                namespace=project.llm_namespace,
                image=ollama_settings.image,
                keep_alive=ollama_settings.keep_alive,
                max_loaded_models=ollama_settings.max_loaded_models,
                memory_gib=ollama_settings.memory_gib,
                cpu_limit=offload.cpu,
                verify_image=with_digest(BUSYBOX, homelab.image_digests.busybox),
                provider_cluster_id=remote.cluster_id,
                client_namespaces=(OPEN_WEBUI_NAMESPACE, *ollama_settings.client_namespaces),
            ),
            models_volume=remote.models_volume,
            # Only gpu-waker reaches Ollama: from the AWS control node's pod range.
            proxy_source_cidr=control_node_pod_subnet(str(network.aws_pod_cidr)),
            remote_provider=aws_k8s,
            wait_for=(peering.command,),
            # No more GPUs than the virtual node advertises (the AWS budget).
            gpu_quota=offload.gpus,
        ),
        opts=on_cluster,
    )
    # Where the homelab's clients reach Ollama: the wake gate when the AWS side sleeps (it starts
    # it and forwards to gpu-waker on AWS), else gpu-waker on AWS directly.
    client_url: pulumi.Input[str] = remote.waker_url
    gate_url: str | None = None
    if homelab.ollama.wake_gate:
        if gate_host is None or remote.wake_gate is None or remote.wake_gate_key is None:
            raise ValueError("the wake gate needs its host and aws-gpu's wakeGate outputs")
        gate = WakeGate(
            "wake-gate",
            WakeGateArgs(
                listen_ip=gate_host.ip,
                port=gate_host.port,
                gate=remote.wake_gate,
                private_key=remote.wake_gate_key,
                upstream_url=remote.waker_url,
                client_token=remote.waker_token,
                bundle=load_bundle(RUNTIME_PACKAGE),
                ssh=gate_host.ssh,
                kubernetes=provider,
                wait_for=gate_host.wait_for,
                machine=gate_host.machine,
            ),
        )
        client_url = gate_url = gate.url
        # Nothing runs in the gate's namespace (its ServiceAccount's token is used on the host).
        NamespaceIsolation(
            f"{WAKER_NAMESPACE}-isolation",
            NamespaceIsolationArgs(namespace=WAKER_NAMESPACE, wait_for=(gate,)),
            opts=on_cluster,
        )
    webui = homelab.open_webui
    admin_password = random.RandomPassword("open-webui-admin-password", length=24, special=False)
    secret_key = random.RandomPassword("open-webui-secret-key", length=48, special=False)
    open_webui = OpenWebUi(
        "open-webui",
        OpenWebUiArgs(
            namespace=OPEN_WEBUI_NAMESPACE,
            image=webui.image,
            hostname=webui.hostname,
            llm_base_url=pulumi.Output.from_input(client_url).apply(lambda u: f"{u}/v1"),
            llm_token=remote.waker_token,
            admin_email=webui.admin_email,
            storage_gib=webui.storage_gib,
            secret_key=secret_key.result,
            admin_password=admin_password.result,
            tls_secret=webui.tls_secret,
            tls=tls,
            ingress_ready=(ingress,),
        ),
        opts=on_cluster,
    )
    # Ingress isolation of the homelab's app namespaces: Open WebUI only through the ingress
    # controller; Ollama's homelab pod is a placeholder on the virtual node (its client policy
    # stays on top).
    NamespaceIsolation(
        f"{OPEN_WEBUI_NAMESPACE}-isolation",
        NamespaceIsolationArgs(
            namespace=OPEN_WEBUI_NAMESPACE,
            allows=(
                from_ingress_controller(app_labels(open_webui_app.APP), [open_webui_app.HTTP_PORT]),
            ),
            wait_for=(open_webui,),
        ),
        opts=on_cluster,
    )
    NamespaceIsolation(
        f"{project.llm_namespace}-isolation",
        NamespaceIsolationArgs(namespace=project.llm_namespace, wait_for=(ollama,)),
        opts=on_cluster,
    )
    if ollama_settings.client_namespaces:
        GpuWakerClients(
            "gpu-waker-clients",
            GpuWakerClientsArgs(
                namespaces=ollama_settings.client_namespaces,
                url=client_url,
                token=remote.waker_token,
            ),
            opts=on_cluster,
        )
    return HomelabFederation(
        open_webui_url=open_webui.url,
        open_webui_admin_password=pulumi.Output.secret(admin_password.result),
        wake_gate_url=gate_url,
    )
