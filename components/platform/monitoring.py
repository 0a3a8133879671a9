"""Monitoring in the homelab: kube-prometheus-stack (Prometheus, Alertmanager, Grafana, node
exporter, kube-state-metrics), the project's alerts and dashboards as code, and the scrape jobs
that reach the AWS side over the Nebula overlay.

AWS metrics are scraped, not pushed: the targets are few and fixed (the GPU worker's DCGM
exporter through a NodePort on the control node's overlay address, and gpu-waker there), the
homelab already reaches the control node over the mesh, and Prometheus's own ``up`` then says
whether the AWS side answers. Remote-write would need a second Prometheus (agent) on AWS and a
port into the homelab instead.

Files beside this module: ``monitoring_files/alerts.rules.yaml`` (a Prometheus rule file, the
PrometheusRule's ``spec``) and ``monitoring_files/dashboards/*.json`` (Grafana dashboards,
provisioned by Grafana's dashboard sidecar from ConfigMaps carrying its label)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.k3s.pod_security import with_level
from components.kube.charts import KUBE_PROMETHEUS_STACK, helm_release
from components.kube.ingress import (
    IngressTls,
    chart_ingress_values,
    declare_certificate,
    tls_secret_name,
)
from components.kube.labels import GPU_RESOURCE, VELERO_BACKUP_VOLUMES, toleration
from components.kube.objects import Manifest, declare
from components.platform import alert_routing
from components.platform.monitoring_rules import (
    DASHBOARD_LABEL,
    aws_gpus_expr,
    dashboard_files,
    load_rule_groups,
    render_dashboard,
    render_rule,
    with_aws_gpus,
    with_runbook_base,
)

NAMESPACE = "monitoring"
RELEASE = "monitoring"
GRAFANA = "grafana"
GRAFANA_ADMIN_SECRET = "grafana-admin"  # noqa: S105 - a Secret object name, not a credential
GPU_WAKER_SECRET = "gpu-waker-scrape"  # noqa: S105 - a Secret object name, not a credential
# The job names the alerts and dashboards refer to (alerts.rules.yaml: PrometheusTargetDown).
AWS_DCGM_JOB = "aws-dcgm-exporter"
GPU_WAKER_JOB = "gpu-waker"
WAKE_GATE_JOB = "wake-gate"
"""The homelab's wake gate (gpu-waker in gate mode): its state says whether the sleeping AWS side
is up, which NodeNotReady and PrometheusTargetDown (alerts.rules.yaml) go by."""
NODE_EXPORTER_JOB = "node-exporter"
"""The AWS nodes' exporters share the job of the homelab's (kube-prometheus-stack's own), so the
chart's node dashboards and node alerts, which select ``job="node-exporter"``, cover them too
(prometheus-community/helm-charts charts/kube-prometheus-stack/templates/grafana/dashboards-1.14/
nodes.yaml); ``site`` tells them apart."""
SITE_HOMELAB = "homelab"
SITE_AWS = "aws"
AWS_NODE_LABEL = "aws_node"
"""Target label naming the AWS node a scrape target runs on."""
CONTROL_NODE = "control-node"
STOPPABLE_NODE = "gpu-worker"
"""``aws_node`` of the stoppable GPU worker's targets: down while it is stopped, which
PrometheusTargetDown (alerts.rules.yaml) allows unless gpu-waker reports the worker ready."""
RETENTION_SHARE = 0.9
"""Prometheus drops the oldest blocks once the TSDB reaches this share of its volume (before
the time limit), so a full volume never stops ingestion."""


def retention_size(storage_gib: int) -> str:
    """Prometheus's ``--storage.tsdb.retention.size`` units are powers of 1024 ("GB" = GiB,
    prometheus/prometheus cmd/prometheus/main.go, units.Base2Bytes)."""
    return f"{int(storage_gib * RETENTION_SHARE)}GB"


def _claim(storage_class: str, gib: int) -> dict[str, Any]:
    return {
        "volumeClaimTemplate": {
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{gib}Gi"}},
            }
        }
    }


def render_values(
    *,
    grafana_hostname: str,
    tls_secret: str | None,
    retention_days: int,
    storage_gib: int,
    storage_class: str,
    alertmanager_storage_gib: int,
    node_taints: Sequence[str],
) -> dict[str, Any]:
    """kube-prometheus-stack values (prometheus-community/helm-charts
    charts/kube-prometheus-stack/values.yaml@kube-prometheus-stack-88.5.3)."""
    # The chart's Grafana ingress, shaped like every other (components/kube/ingress.py).
    ingress = {**chart_ingress_values(grafana_hostname, tls_secret), "path": "/"}
    routing = alert_routing.render_values()
    # Node exporter runs on every node, GPU workers (tainted for GPU work) and control planes too.
    node_tolerations = [toleration(t) for t in node_taints] + [
        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    ]
    return {
        # k3s runs etcd, the controller manager, scheduler and kube-proxy inside its own process
        # with metrics on 127.0.0.1 only: scraping them from a pod fails, and their default rules
        # would alert on targets that cannot exist.
        "kubeEtcd": {"enabled": False},
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "defaultRules": {
            "rules": {
                "etcd": False,
                "kubeControllerManager": False,
                "kubeSchedulerAlerting": False,
                "kubeSchedulerRecording": False,
                "kubeProxy": False,
                "windows": False,
            },
            # The chart's TargetDown (any job with > 10 % of its targets down) would fire for
            # the stopped GPU worker's exporters; PrometheusTargetDown (ours) replaces it.
            "disabled": {"TargetDown": True},
        },
        "prometheus-node-exporter": {"tolerations": node_tolerations},
        "prometheus": {
            "prometheusSpec": {
                "retention": f"{retention_days}d",
                "retentionSize": retention_size(storage_gib),
                "storageSpec": _claim(storage_class, storage_gib),
                # Select every rule, monitor and scrape config in the cluster, not only those
                # carrying this release's label (the GPU Operator's ServiceMonitor, ours).
                "ruleSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "scrapeConfigSelectorNilUsesHelmValues": False,
            }
        },
        "alertmanager": {
            **routing,
            "alertmanagerSpec": {
                "storage": _claim(storage_class, alertmanager_storage_gib),
                **routing["alertmanagerSpec"],
            },
        },
        "grafana": {
            # Login required: the admin account from a Secret the program writes (generated
            # password). Anonymous access and sign-up stay at Grafana's defaults, both off
            # (grafana/grafana conf/defaults.ini [auth.anonymous] enabled = false, [users]
            # allow_sign_up = false); the chart's grafana.ini sets neither (test_monitoring).
            "admin": {
                "existingSecret": GRAFANA_ADMIN_SECRET,
                "userKey": "admin-user",
                "passwordKey": "admin-password",
            },
            "ingress": ingress,
            # Stateless: dashboards and the data source are provisioned, the admin comes from
            # the Secret; nothing needs a volume.
            "persistence": {"enabled": False},
            # Its SQLite state (users, preferences, dashboards made in the UI) lives in the
            # chart's "storage" emptyDir: Velero copies it (components/platform/velero.py).
            "podAnnotations": {VELERO_BACKUP_VOLUMES: "storage"},
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": DASHBOARD_LABEL[0],
                    "labelValue": DASHBOARD_LABEL[1],
                    "searchNamespace": "ALL",
                }
            },
        },
    }


def render_namespace() -> Manifest:
    return with_level(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        "privileged",
        "prometheus-node-exporter runs in the host's network and PID namespaces with hostPath "
        "mounts of /proc, /sys and /",
    )


def render_admin_secret(password: pulumi.Input[str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": GRAFANA_ADMIN_SECRET, "namespace": NAMESPACE},
        "type": "Opaque",
        "stringData": {"admin-user": "admin", "admin-password": password},
    }


def render_waker_secret(token: pulumi.Input[str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": GPU_WAKER_SECRET, "namespace": NAMESPACE},
        "type": "Opaque",
        "stringData": {"token": token},
    }


def render_scrape_configs(
    overlay_ip: pulumi.Input[str],
    dcgm_node_port: int,
    waker_port: int,
    node_exporter_ports: Mapping[str, int],
    wake_gate_address: str | None = None,
) -> list[Manifest]:
    """The AWS targets, on the control node's overlay address: the GPU worker's DCGM exporter
    (NodePort, kube-proxy forwards to the worker), each AWS node's node exporter (one NodePort
    per node, ``aws_node`` = its role) and gpu-waker (``/metrics`` behind its token).
    ScrapeConfig is the Prometheus Operator's CRD for targets outside the cluster."""

    def target(port: int, node: str) -> dict[str, Any]:
        return {
            "targets": [pulumi.Output.concat(overlay_ip, f":{port}")],
            "labels": {"site": SITE_AWS, AWS_NODE_LABEL: node},
        }

    def scrape(
        name: str, job: str, targets: list[dict[str, Any]], extra: dict[str, Any]
    ) -> Manifest:
        return {
            "apiVersion": "monitoring.coreos.com/v1alpha1",
            "kind": "ScrapeConfig",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "jobName": job,
                "scrapeInterval": "30s",
                "staticConfigs": targets,
                **extra,
            },
        }

    metrics = {"metricsPath": "/metrics"}
    behind_token = {
        "metricsPath": "/metrics",
        "authorization": {
            "type": "Bearer",
            "credentials": {"name": GPU_WAKER_SECRET, "key": "token"},
        },
    }
    gate_targets = [{"targets": [wake_gate_address], "labels": {"site": SITE_HOMELAB}}]
    gate = [scrape("wake-gate", WAKE_GATE_JOB, gate_targets, behind_token)]
    return [
        scrape(
            "aws-dcgm-exporter",
            AWS_DCGM_JOB,
            [target(dcgm_node_port, STOPPABLE_NODE)],
            metrics,
        ),
        scrape(
            "aws-node-exporter",
            NODE_EXPORTER_JOB,
            [target(port, node) for node, port in node_exporter_ports.items()],
            metrics,
        ),
        scrape(
            "gpu-waker",
            GPU_WAKER_JOB,
            [target(waker_port, CONTROL_NODE)],
            behind_token,
        ),
        *(gate if wake_gate_address is not None else []),
    ]


@dataclass(frozen=True)
class MonitoringArgs:
    grafana_hostname: str
    admin_password: pulumi.Input[str]
    retention_days: int
    storage_gib: int
    storage_class: str
    alertmanager_storage_gib: int
    aws_overlay_ip: pulumi.Input[str]
    """The AWS control node's Nebula address (DCGM NodePort and gpu-waker)."""
    gpu_waker_token: pulumi.Input[str]
    dcgm_node_port: int
    gpu_waker_port: int
    node_exporter_ports: Mapping[str, int]
    """AWS node role (``aws_node`` label) -> the NodePort of its node exporter."""
    aws_worker_gpus: pulumi.Input[int] = 1
    """GPUs of the AWS worker's instance type (the billed AWS GPU-hours count each)."""
    wake_gate_address: str | None = None
    """``host:port`` of the homelab's wake gate, when the AWS side sleeps."""
    runbook_base_url: str = ""
    """Prefix of the alerts' ``runbook_url`` (their pages' paths in this repository)."""
    tls_secret: str | None = None
    """A manual certificate's Secret; overrides ``tls``."""
    tls: IngressTls | None = None
    """cert-manager's issuer: a Certificate for Grafana unless ``tls_secret`` is set."""
    alert_receivers: alert_routing.AlertReceivers | None = None
    """None: alerts are only listed in Alertmanager's and Grafana's UIs."""
    node_taints: tuple[str, ...] = ()
    ingress_ready: Sequence[pulumi.Resource] = ()


class Monitoring(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:Monitoring", name, None, opts)
        namespace = declare(
            f"{name}-namespace", render_namespace(), pulumi.ResourceOptions(parent=self)
        )
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        admin = declare(
            f"{name}-grafana-admin",
            render_admin_secret(pulumi.Output.secret(args.admin_password)),
            in_namespace,
        )
        declare_certificate(
            f"{name}-grafana-certificate",
            app=GRAFANA,
            namespace=NAMESPACE,
            hostname=args.grafana_hostname,
            tls=args.tls,
            manual_secret=args.tls_secret,
            parent=self,
            depends_on=[namespace],
        )
        self.values = render_values(
            grafana_hostname=args.grafana_hostname,
            tls_secret=tls_secret_name(GRAFANA, args.tls, args.tls_secret),
            retention_days=args.retention_days,
            storage_gib=args.storage_gib,
            storage_class=args.storage_class,
            alertmanager_storage_gib=args.alertmanager_storage_gib,
            node_taints=args.node_taints,
        )
        self.release = helm_release(
            f"{name}-release",
            release_name=RELEASE,
            chart=KUBE_PROMETHEUS_STACK,
            namespace=NAMESPACE,
            values=self.values,
            create_namespace=False,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[namespace, admin, *args.ingress_ready]
            ),
        )
        # Custom resources need the chart's CRDs: after the release.
        after_release = pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        groups = with_runbook_base(load_rule_groups(), args.runbook_base_url)
        aws_gpus = pulumi.Output.from_input(args.aws_worker_gpus).apply(aws_gpus_expr)
        declare(
            f"{name}-alerts", render_rule(with_aws_gpus(groups, aws_gpus), NAMESPACE), after_release
        )
        for path in dashboard_files():
            declare(
                f"{name}-dashboard-{path.stem}", render_dashboard(path, NAMESPACE), in_namespace
            )
        waker_secret = declare(
            f"{name}-gpu-waker-token",
            render_waker_secret(pulumi.Output.secret(args.gpu_waker_token)),
            in_namespace,
        )
        for scrape in render_scrape_configs(
            args.aws_overlay_ip,
            args.dcgm_node_port,
            args.gpu_waker_port,
            args.node_exporter_ports,
            args.wake_gate_address,
        ):
            declare(
                f"{name}-scrape-{scrape['metadata']['name']}",
                scrape,
                pulumi.ResourceOptions(parent=self, depends_on=[self.release, waker_secret]),
            )
        if args.alert_receivers is not None:
            receiver_secret = declare(
                f"{name}-alert-receiver-secret",
                alert_routing.render_secret(args.alert_receivers, NAMESPACE),
                in_namespace,
            )
            declare(
                f"{name}-alert-receivers",
                alert_routing.render_alertmanager_config(args.alert_receivers, NAMESPACE),
                pulumi.ResourceOptions(parent=self, depends_on=[self.release, receiver_secret]),
            )
        self.url = f"https://{args.grafana_hostname}/"
        self.register_outputs({"url": self.url})
