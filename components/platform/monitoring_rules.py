"""The project's alert and recording rules and Grafana dashboards, as code (pure; deployed by
components/platform/monitoring.py). Files beside this module: ``monitoring_files/alerts.rules.yaml``
(a Prometheus rule file, the PrometheusRule's ``spec``) and ``monitoring_files/dashboards/*.json``
(provisioned by Grafana's dashboard sidecar from ConfigMaps carrying its label)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import yaml

from components.kube.objects import Manifest

FILES = Path(__file__).parent / "monitoring_files"
RULES_FILE = FILES / "alerts.rules.yaml"
DASHBOARDS_DIR = FILES / "dashboards"
# Grafana's dashboard sidecar loads ConfigMaps carrying this label (kube-prometheus-stack
# 88.5.3 values.yaml grafana.sidecar.dashboards.label / labelValue).
DASHBOARD_LABEL = ("grafana_dashboard", "1")


def load_rule_groups() -> list[dict[str, Any]]:
    return yaml.safe_load(RULES_FILE.read_text())["groups"]


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


AWS_GPUS_RULE = "aws:gpu_worker_gpus:count"
"""The recording rule holding the AWS worker's GPU count (a constant in the rule file)."""


def with_runbook_base(groups: list[dict[str, Any]], base_url: str) -> list[dict[str, Any]]:
    """Each alert's ``runbook_url`` (its page's path in this repository) prefixed with
    ``base_url``; an empty base keeps the repository path."""
    return [
        {
            **group,
            "rules": [
                {
                    **rule,
                    "annotations": {
                        **rule["annotations"],
                        "runbook_url": base_url + rule["annotations"]["runbook_url"],
                    },
                }
                if "alert" in rule
                else rule
                for rule in group["rules"]
            ],
        }
        for group in groups
    ]


def aws_gpus_expr(gpus: int) -> str:
    return f"vector({int(gpus)})"


def with_aws_gpus(groups: list[dict[str, Any]], expr: pulumi.Input[str]) -> list[dict[str, Any]]:
    """The AWS worker's GPU count (``aws_gpus_expr`` of the aws-gpu stack's gpuWorkerGpuCount) as
    the expression of its recording rule, which the billed AWS GPU-hours multiply by."""
    return [
        {
            **group,
            "rules": [
                {**rule, "expr": expr} if rule.get("record") == AWS_GPUS_RULE else rule
                for rule in group["rules"]
            ],
        }
        for group in groups
    ]


def render_rule(groups: list[dict[str, Any]], namespace: str) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "hybridgpu-alerts",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "hybridgpu"},
        },
        "spec": {"groups": groups},
    }


def render_dashboard(path: Path, namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"dashboard-{path.stem}",
            "namespace": namespace,
            "labels": {DASHBOARD_LABEL[0]: DASHBOARD_LABEL[1]},
        },
        "data": {path.name: path.read_text()},
    }
