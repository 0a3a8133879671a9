"""The GPU platform layer of each cluster (issue: GPU platform), composed from components.

homelab: the way in (MetalLB + Traefik's address), GPU Operator, the ``nfs-client`` /
``fast-scratch`` storage classes, JupyterHub, one CUDA validation Job per GPU worker, optional
Rancher, the teams' namespaces with quotas and RBAC, monitoring (``hybridgpu:homelab.monitoring``).
aws-gpu: the NVIDIA device plugin (the AMI has driver + toolkit), the Node Termination
Handler that drains the GPU worker on a spot interruption notice, and the DCGM and node
exporters the homelab Prometheus scrapes over the mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.kube.charts import BUSYBOX, CUDA_SAMPLE, LOCAL_PATH_PROVISIONER, with_digest
from components.kube.ingress import IngressTls
from components.kube.labels import (
    AWS_CONTROL_NODE_TAINTS,
    AWS_GPU_WORKER_TAINTS,
    CONTROL_NODE_LABEL,
    CONTROL_PLANE_TAINT,
    GPU_NODE_LABEL,
)
from components.kube.network_policies import NamespaceIsolation, NamespaceIsolationArgs
from components.nebula.config import (
    DCGM_EXPORTER_NODEPORT,
    GPU_WAKER_PORT,
    NODE_EXPORTER_NODEPORTS,
)
from components.platform import cuda_validation, monitoring_network, storage_classes
from components.platform.alert_routing import AlertReceivers, EmailReceiver, WebhookReceiver
from components.platform.cert_manager import CertManager, CertManagerArgs, Issuer
from components.platform.cuda_validation import CudaValidation, CudaValidationArgs
from components.platform.dcgm_exporter import DcgmExporter, DcgmExporterArgs
from components.platform.gpu_operator import GpuOperator, GpuOperatorArgs
from components.platform.jupyterhub import Authenticator, JupyterHub, JupyterHubArgs
from components.platform.lan_load_balancer import LanLoadBalancer, LanLoadBalancerArgs
from components.platform.monitoring import NAMESPACE as MONITORING_NAMESPACE
from components.platform.monitoring import SITE_HOMELAB, Monitoring, MonitoringArgs
from components.platform.node_exporter import NodeExporter, NodeExporterArgs, NodeTarget
from components.platform.node_termination_handler import (
    NodeTerminationHandler,
    NodeTerminationHandlerArgs,
)
from components.platform.nvidia_device_plugin import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from components.platform.rancher import Rancher, RancherArgs
from components.platform.storage_classes import StorageClasses, StorageClassesArgs
from components.platform.teams import ContainerDefaults, Team, Teams, TeamsArgs
from stacks.config import HomelabConfig
from stacks.config.operations import TeamSettings


@dataclass(frozen=True)
class HomelabPlatform:
    jupyterhub_url: str
    cuda_validation: dict[str, dict[str, str]]
    gpu_stack: pulumi.Resource
    ingress: pulumi.Resource
    """MetalLB and Traefik's fixed address: what web apps' Ingresses wait for."""
    ingress_address: str
    grafana_url: str | None
    grafana_admin_password: pulumi.Output[str] | None
    tls: IngressTls
    """cert-manager's issuer, for every ingress host."""
    tls_ca_cert: pulumi.Output[str] | None
    """The private CA's certificate (None with ACME)."""


@dataclass(frozen=True)
class AwsScrapeTargets:
    """What the homelab Prometheus needs of the aws-gpu stack (its outputs)."""

    control_node_overlay_ip: pulumi.Input[str]
    gpu_waker_token: pulumi.Input[str]
    worker_gpu_count: pulumi.Input[int] = 1
    """GPUs of the AWS worker (gpuWorkerGpuCount): the billed AWS GPU-hours count each."""
    wake_gate_address: str | None = None
    """``host:port`` of the homelab's wake gate (when ``ollama.wakeGate``)."""


def homelab_platform(
    config: HomelabConfig, provider: k8s.Provider, aws: AwsScrapeTargets, issuer: Issuer
) -> HomelabPlatform:
    homelab = config.homelab
    platform = homelab.platform
    on_cluster = pulumi.ResourceOptions(provider=provider)
    cert_manager = CertManager("cert-manager", CertManagerArgs(issuer=issuer), opts=on_cluster)
    tls = IngressTls(issuer=cert_manager.issuer_name, ready=(cert_manager.issuer,))
    pool = homelab.load_balancer
    ingress = LanLoadBalancer(
        "lan-load-balancer",
        LanLoadBalancerArgs(
            first_address=str(pool.first_address),
            last_address=str(pool.last_address),
            ingress_address=str(pool.ingress),
        ),
        opts=on_cluster,
    )
    monitoring = None
    grafana_password = None
    settings = homelab.monitoring
    if settings is not None:
        # Generated once, kept (secret) in state; exported as grafanaAdminPassword.
        grafana_password = random.RandomPassword(
            "grafana-admin-password", length=32, special=False
        ).result
        monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                grafana_hostname=settings.grafana_hostname,
                tls_secret=settings.tls_secret,
                tls=tls,
                admin_password=grafana_password,
                retention_days=settings.retention_days,
                storage_gib=settings.storage_gib,
                storage_class=settings.storage_class,
                alertmanager_storage_gib=settings.alertmanager_storage_gib,
                aws_overlay_ip=aws.control_node_overlay_ip,
                gpu_waker_token=aws.gpu_waker_token,
                aws_worker_gpus=aws.worker_gpu_count,
                wake_gate_address=aws.wake_gate_address,
                runbook_base_url=settings.runbook_base_url,
                dcgm_node_port=DCGM_EXPORTER_NODEPORT,
                node_exporter_ports=NODE_EXPORTER_NODEPORTS,
                alert_receivers=alert_receivers(config),
                gpu_waker_port=GPU_WAKER_PORT,
                node_taints=(CONTROL_PLANE_TAINT,),
                ingress_ready=[ingress],
            ),
            opts=on_cluster,
        )
    if monitoring is not None:
        NamespaceIsolation(
            f"{MONITORING_NAMESPACE}-isolation",
            NamespaceIsolationArgs(
                namespace=MONITORING_NAMESPACE,
                allows=monitoring_network.ingress_allows(),
                wait_for=(monitoring,),
            ),
            opts=on_cluster,
        )
    gpu_operator = GpuOperator(
        "gpu-operator",
        GpuOperatorArgs(
            driver=platform.gpu_operator.driver,
            tolerate_taints=(CONTROL_PLANE_TAINT,),
            site_label=SITE_HOMELAB if monitoring is not None else None,
        ),
        # The operator creates its DCGM ServiceMonitor only if the CRD is there already.
        opts=pulumi.ResourceOptions(
            provider=provider, depends_on=[monitoring.release] if monitoring is not None else []
        ),
    )
    storage = StorageClasses(
        "storage",
        StorageClassesArgs(
            nfs_server=platform.nfs.server,
            nfs_path=platform.nfs.path,
            nfs_mount_options=platform.nfs.mount_options,
            scratch_path=platform.scratch_path,
            gpu_node_label=GPU_NODE_LABEL,
            provisioner_image=with_digest(
                LOCAL_PATH_PROVISIONER, homelab.image_digests.local_path_provisioner
            ),
            helper_image=with_digest(BUSYBOX, homelab.image_digests.busybox),
        ),
        opts=on_cluster,
    )
    hub = platform.jupyterhub
    auth = hub.authenticator
    jupyterhub = JupyterHub(
        "jupyterhub",
        JupyterHubArgs(
            hostname=hub.hostname,
            image=hub.image,
            authenticator=Authenticator(
                kind=auth.kind,
                client_id=auth.client_id,
                admin_users=auth.admin_users,
                allowed_users=auth.allowed_users,
                allowed_organizations=auth.allowed_organizations,
                authorize_url=auth.authorize_url,
                token_url=auth.token_url,
                userdata_url=auth.userdata_url,
                username_claim=auth.username_claim,
            ),
            client_secret=config.secrets.jupyterhub_client_secret,
            gpu_counts=homelab.jupyter_gpu_profiles,
            gpu_node_selector=dict([GPU_NODE_LABEL]),
            cull_timeout_seconds=hub.cull_timeout_seconds,
            cull_every_seconds=hub.cull_every_seconds,
            user_storage_gib=hub.user_storage_gib,
            scratch_gib=hub.scratch_gib,
            tls=tls,
        ),
        opts=pulumi.ResourceOptions(provider=provider, depends_on=[storage, gpu_operator]),
    )
    validation = CudaValidation(
        "cuda-validation",
        CudaValidationArgs(
            nodes=[vm.name for vm in homelab.gpu_workers],
            image=with_digest(CUDA_SAMPLE, homelab.image_digests.cuda_sample),
            wait_for=[gpu_operator.release],
        ),
        opts=on_cluster,
    )
    # Nothing calls into these namespaces' pods: ingress denied but between their own pods.
    for namespace, owner in (
        (cuda_validation.NAMESPACE, validation),
        (storage_classes.SCRATCH_NAMESPACE, storage),
    ):
        NamespaceIsolation(
            f"{namespace}-isolation",
            NamespaceIsolationArgs(namespace=namespace, wait_for=(owner,)),
            opts=on_cluster,
        )
    if platform.rancher.enabled:
        assert platform.rancher.hostname is not None  # guaranteed by RancherSettings
        Rancher(
            "rancher",
            RancherArgs(
                hostname=platform.rancher.hostname,
                # Generated once, kept (secret) in state; read it back with
                # `kubectl -n cattle-system get secret bootstrap-secret`.
                bootstrap_password=random.RandomPassword(
                    "rancher-bootstrap-password", length=32, special=False
                ).result,
                tls=tls,
                ca_cert_pem=cert_manager.ca_cert_pem,
            ),
            opts=on_cluster,
        )
    if homelab.teams:
        Teams("teams", TeamsArgs(teams=[team_of(t) for t in homelab.teams]), opts=on_cluster)
    return HomelabPlatform(
        jupyterhub_url=jupyterhub.url,
        cuda_validation=validation.results,
        gpu_stack=gpu_operator.release,
        ingress=ingress,
        ingress_address=ingress.ingress_address,
        grafana_url=monitoring.url if monitoring is not None else None,
        grafana_admin_password=grafana_password,
        tls=tls,
        tls_ca_cert=cert_manager.ca_cert_pem,
    )


def alert_receivers(config: HomelabConfig) -> AlertReceivers | None:
    settings = config.homelab.monitoring.alertmanager if config.homelab.monitoring else None
    if settings is None:
        return None
    webhook = email = None
    if settings.webhook is not None:
        assert config.secrets.alertmanager_webhook_url is not None  # checked when loaded
        webhook = WebhookReceiver(
            url=config.secrets.alertmanager_webhook_url,
            send_resolved=settings.webhook.send_resolved,
        )
    if settings.email is not None:
        mail = settings.email
        email = EmailReceiver(
            to=mail.to,
            sender=mail.sender,
            smarthost=mail.smarthost,
            auth_username=mail.auth_username,
            auth_password=config.secrets.alertmanager_smtp_password,
            require_tls=mail.require_tls,
            send_resolved=mail.send_resolved,
        )
    return AlertReceivers(webhook=webhook, email=email)


def team_of(settings: TeamSettings) -> Team:
    d = settings.container_defaults
    return Team(
        name=settings.name,
        namespace=settings.namespace,
        users=settings.users,
        groups=settings.groups,
        gpus=settings.gpus,
        cpu=settings.cpu,
        memory_gib=settings.memory_gib,
        storage_gib=settings.storage_gib,
        pods=settings.pods,
        persistent_volume_claims=settings.persistent_volume_claims,
        services=settings.services,
        config_maps=settings.config_maps,
        secrets=settings.secrets,
        defaults=ContainerDefaults(
            request_cpu=d.request_cpu,
            request_memory=d.request_memory,
            limit_cpu=d.limit_cpu,
            limit_memory=d.limit_memory,
        ),
    )


def aws_platform(provider: k8s.Provider) -> None:
    on_cluster = pulumi.ResourceOptions(provider=provider)
    selector = dict([GPU_NODE_LABEL])
    NvidiaDevicePlugin(
        "nvidia-device-plugin", NvidiaDevicePluginArgs(node_selector=selector), opts=on_cluster
    )
    NodeTerminationHandler(
        "node-termination-handler",
        NodeTerminationHandlerArgs(node_selector=selector, node_taints=AWS_GPU_WORKER_TAINTS),
        opts=on_cluster,
    )
    DcgmExporter(
        "dcgm-exporter",
        DcgmExporterArgs(node_selector=selector, node_port=DCGM_EXPORTER_NODEPORT),
        opts=on_cluster,
    )
    node_selectors = {"control-node": dict([CONTROL_NODE_LABEL]), "gpu-worker": selector}
    node_taints = {"control-node": AWS_CONTROL_NODE_TAINTS, "gpu-worker": AWS_GPU_WORKER_TAINTS}
    NodeExporter(
        "node-exporter",
        NodeExporterArgs(
            targets=[
                NodeTarget(role, node_selectors[role], port, node_taints[role])
                for role, port in NODE_EXPORTER_NODEPORTS.items()
            ]
        ),
        opts=on_cluster,
    )
