"""Monitoring as code (issue #17): the alert rules pass the real ``promtool check rules`` and
their ``promtool test rules`` unit tests (each alert fires on a failing series and stays silent on
a healthy one), every dashboard query parses with promtool, every dashboard validates against the
dashboard schema, and the stacks wire Prometheus, Grafana and the AWS scrape targets as the
README says."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components.federation.liqo import VIRTUAL_NODE_TAINT_KEY
from components.nebula.config import (
    DCGM_EXPORTER_NODEPORT,
    GPU_WAKER_PORT,
    NODE_EXPORTER_NODEPORTS,
    NODE_EXPORTER_PORT,
    default_policy,
)
from components.platform import cuda_validation, monitoring, node_exporter
from components.platform.monitoring import (
    AWS_NODE_LABEL,
    GPU_WAKER_JOB,
    NODE_EXPORTER_JOB,
    SITE_AWS,
    STOPPABLE_NODE,
    WAKE_GATE_JOB,
    render_values,
    retention_size,
)
from components.platform.monitoring_rules import (
    AWS_GPUS_RULE,
    RULES_FILE,
    aws_gpus_expr,
    dashboard_files,
    load_rule_groups,
    with_aws_gpus,
    with_runbook_base,
)
from tests.real_tools import require, run
from tests.upstream_data import chart_data
from tools.offline import StackRun
from tools.plan import resource_tree

ROOT = Path(__file__).parent.parent
UNIT_TESTS = Path(__file__).parent / "promtool" / "alerts.test.yaml"
SHOWBACK_TESTS = Path(__file__).parent / "promtool" / "showback.test.yaml"
RUNBOOKS_PATH = "docs/runbooks"
DASHBOARD_SCHEMA = Path(__file__).parent / "schemas" / "grafana-dashboard.schema.json"
WAKER_METRICS = ROOT / "runtime" / "gpu_waker" / "src" / "gpu_waker" / "metrics.py"
RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SCRAPE = "kubernetes:monitoring.coreos.com/v1alpha1:ScrapeConfig"
ALERTS = {
    "NodeNotReady",
    "GpuXidError",
    "GpuMemoryExhausted",
    "CudaValidationJobFailed",
    "AwsGpuWorkerFailingToStart",
    "PrometheusTargetDown",
}
# Grafana's built-in variables and ours, replaced by a value of the same kind before promtool
# parses a dashboard query (https://grafana.com/docs/grafana/latest/datasources/prometheus/
# template-variables/: $__rate_interval and $__range are durations, $site a regex).
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$site": ".*",
}


def promtool(*args: str | Path) -> Any:
    return run(require("promtool"), *args, check=False)


# ---------------------------------------------------------------------------------------------
# Alert rules
# ---------------------------------------------------------------------------------------------


def test_rule_file_passes_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout  # 7 alerts, 3 showback records


def test_promtool_check_rules_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rules.yaml"
    broken.write_text(
        RULES_FILE.read_text().replace(
            'kube_node_status_condition{condition="Ready",status="true"} == 0\n',
            'kube_node_status_condition{condition="Ready",status="true"} == \n',
        )
    )
    result = promtool("check", "rules", broken)
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr


def _alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_issue_alerts_are_exactly_the_rule_file_alerts() -> None:
    assert {rule["alert"] for rule in _alerts(load_rule_groups())} == ALERTS


def runbook_problems(groups: list[dict[str, Any]], root: Path = ROOT) -> list[str]:
    """Alerts without a ``runbook_url``, or whose URL is not a page of docs/runbooks/ in this
    repository."""
    problems = []
    for rule in _alerts(groups):
        url = rule.get("annotations", {}).get("runbook_url")
        if not url:
            problems.append(f"{rule['alert']}: no runbook_url")
        elif not url.startswith(f"{RUNBOOKS_PATH}/") or not (root / url).is_file():
            problems.append(f"{rule['alert']}: {url} is not a runbook page")
    return problems


def test_every_alert_links_an_existing_runbook() -> None:
    assert runbook_problems(load_rule_groups()) == []
    linked = {rule["annotations"]["runbook_url"] for rule in _alerts(load_rule_groups())}
    assert "docs/runbooks/gpu-worker-will-not-start.md" in linked  # AwsGpuWorkerFailingToStart


def test_an_alert_without_a_runbook_or_with_a_missing_page_fails() -> None:
    groups = copy.deepcopy(load_rule_groups())
    alerts = _alerts(groups)
    del alerts[0]["annotations"]["runbook_url"]
    alerts[1]["annotations"]["runbook_url"] = "docs/runbooks/no-such-page.md"
    alerts[2]["annotations"]["runbook_url"] = "README.md"
    assert runbook_problems(groups) == [
        f"{alerts[0]['alert']}: no runbook_url",
        f"{alerts[1]['alert']}: docs/runbooks/no-such-page.md is not a runbook page",
        f"{alerts[2]['alert']}: README.md is not a runbook page",
    ]


def test_the_runbook_base_url_prefixes_every_alert_and_nothing_else() -> None:
    base = "https://git.lab.example/ops/hybridgpu/blob/main/"
    groups = with_runbook_base(load_rule_groups(), base)
    for before, after in zip(_alerts(load_rule_groups()), _alerts(groups), strict=True):
        assert after["annotations"]["runbook_url"] == base + before["annotations"]["runbook_url"]
        assert {**after["annotations"], "runbook_url": None} == {
            **before["annotations"],
            "runbook_url": None,
        }
    records = [r for g in groups for r in g["rules"] if "record" in r]
    assert records == [r for g in load_rule_groups() for r in g["rules"] if "record" in r]
    assert with_runbook_base(load_rule_groups(), "") == load_rule_groups()


@pytest.mark.parametrize(
    "url",
    ["http://git.lab.example/", "https://git.lab.example", "git.lab.example/", "https://a b/"],
)
def test_a_runbook_base_that_is_not_an_https_prefix_is_rejected(url: str) -> None:
    from pydantic import ValidationError

    from stacks.config.homelab_apps import MonitoringSettings

    with pytest.raises(
        ValidationError, match="not a runbook base URL; allowed: empty, or an https"
    ):
        MonitoringSettings.model_validate(
            {"grafanaHostname": "g.lab.example", "runbookBaseUrl": url}
        )
    ok = MonitoringSettings.model_validate(
        {"grafanaHostname": "g.lab.example", "runbookBaseUrl": "https://git.lab.example/x/"}
    )
    assert ok.runbook_base_url == "https://git.lab.example/x/"


def _unit_test_file(tmp_path: Path, rules: Path, unit_tests: Path = UNIT_TESTS) -> Path:
    tests = yaml.safe_load(unit_tests.read_text())
    tests["rule_files"] = [str(rules)]
    path = tmp_path / unit_tests.name
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return path


def test_alert_unit_tests_pass_promtool_test_rules(tmp_path: Path) -> None:
    result = promtool("test", "rules", _unit_test_file(tmp_path, RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    assert fires == ALERTS
    assert silent == ALERTS


def test_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    """The unit tests can fail: a NotReady threshold that never matches is caught."""
    broken = tmp_path / "alerts.rules.yaml"
    broken.write_text(
        RULES_FILE.read_text().replace(
            'kube_node_status_condition{condition="Ready",status="true"} == 0',
            'kube_node_status_condition{condition="Ready",status="true"} == 2',
        )
    )
    result = promtool("test", "rules", _unit_test_file(tmp_path, broken))
    assert result.returncode != 0
    assert "NodeNotReady" in result.stdout + result.stderr


def test_rules_name_what_the_program_deploys() -> None:
    text = RULES_FILE.read_text()
    assert f'namespace="{cuda_validation.NAMESPACE}"' in text
    # PrometheusTargetDown tells the stoppable worker's targets by the label the scrape sets.
    assert f'up{{{AWS_NODE_LABEL}="{STOPPABLE_NODE}"}} == 0' in text
    assert f'up{{site="{SITE_AWS}",{AWS_NODE_LABEL}!="{STOPPABLE_NODE}"}} == 0' in text
    # The two gpu-wakers by the jobs their scrapes set; Liqo's virtual node by its taint.
    assert f'gpu_waker_worker_state{{job="{GPU_WAKER_JOB}",state="ready"}}' in text
    assert f'gpu_waker_worker_state{{job="{WAKE_GATE_JOB}",state!="ready"}}' in text
    assert f'kube_node_spec_taint{{key="{VIRTUAL_NODE_TAINT_KEY}"}}' in text


# ---------------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------------


def _dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in dashboard_files()}


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def _as_rule_file(exprs: list[str]) -> str:
    rules = []
    for i, query in enumerate(exprs):
        expr = query
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in: {query}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    return yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]})


def test_the_issue_dashboards_exist() -> None:
    assert set(_dashboards()) == {"gpus", "ollama", "aws-worker", "showback"}


def test_every_dashboard_query_parses_with_promtool(tmp_path: Path) -> None:
    """promtool has no offline query parser of its own; each query becomes a recording rule,
    which ``check rules`` parses with Prometheus's PromQL parser."""
    exprs = [e for d in _dashboards().values() for e in _exprs(d)]
    assert len(exprs) >= 15
    path = tmp_path / "dashboards.rules.yaml"
    path.write_text(_as_rule_file(exprs))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_a_broken_dashboard_query_fails_promtool(tmp_path: Path) -> None:
    path = tmp_path / "dashboards.rules.yaml"
    path.write_text(_as_rule_file(["sum by (site (DCGM_FI_DEV_GPU_UTIL)"]))
    assert promtool("check", "rules", path).returncode != 0


def test_every_dashboard_validates_against_the_schema() -> None:
    schema = json.loads(DASHBOARD_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for name, dashboard in _dashboards().items():
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(dashboard))
        assert not errors, f"{name}: {[e.message for e in errors]}"


def test_the_schema_check_can_fail() -> None:
    schema = json.loads(DASHBOARD_SCHEMA.read_text())
    dashboard = _dashboards()["gpus"]
    dashboard["panels"][0]["gridPos"]["w"] = 30
    dashboard["panels"][1]["targets"][0].pop("refId")
    dashboard["pannels"] = []
    messages = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(dashboard)]
    assert any("30 is greater than the maximum of 24" in m for m in messages)
    assert any("'refId' is a required property" in m for m in messages)
    assert any("'pannels' was unexpected" in m for m in messages)


def test_dashboards_cover_gpu_ollama_and_aws_billing() -> None:
    dashboards = _dashboards()
    gpu = " ".join(_exprs(dashboards["gpus"]))
    for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP"):
        assert metric in gpu
    assert 'site=~"$site"' in gpu
    ollama = " ".join(_exprs(dashboards["ollama"]))
    assert "gpu_waker_requests_total" in ollama
    assert "gpu_waker_upstream_first_byte_seconds_bucket" in ollama  # latency
    assert "gpu_waker_upstream_duration_seconds_bucket" in ollama
    billed = [
        p for p in dashboards["aws-worker"]["panels"] if p["title"].startswith("Hours billed")
    ]
    (panel,) = billed
    assert panel["timeFrom"] == "now/M"  # this month so far
    assert 'state=~"booting|ready"' in panel["targets"][0]["expr"]


def test_gpu_waker_metrics_the_dashboards_and_rules_use_exist() -> None:
    """Every gpu_waker_* name queried is one runtime/gpu_waker defines (histograms and counters
    by their exposed suffixes)."""
    defined = set(re.findall(r'"(gpu_waker_[a-z_]+)"', WAKER_METRICS.read_text()))
    exposed = defined | {f"{n}_total" for n in defined} | {f"{n}_bucket" for n in defined}
    queries = RULES_FILE.read_text() + " ".join(
        e for d in _dashboards().values() for e in _exprs(d)
    )
    used = set(re.findall(r"gpu_waker_[a-z_]+", queries))
    assert used, "no gpu-waker metric used"
    assert used <= exposed, sorted(used - exposed)


def test_gpu_waker_states_in_queries_are_states_it_reports() -> None:
    states = set(
        re.search(r"STATES = \(([^)]*)\)", WAKER_METRICS.read_text(), re.S)[1]  # type: ignore[index]
        .replace('"', "")
        .replace(",", " ")
        .split()
    )
    queries = RULES_FILE.read_text() + json.dumps(_dashboards())
    for match in re.findall(r'state=~?\\?"([a-z|]+)\\?"', queries):
        assert set(match.split("|")) <= states, match


# ---------------------------------------------------------------------------------------------
# GPU showback
# ---------------------------------------------------------------------------------------------

SHOWBACK_RANGE = "4h"  # Grafana's $__range in tests/promtool/showback.test.yaml


def _showback_rules(tmp_path: Path, text: str, aws_gpus: int | None = None) -> Path:
    groups = yaml.safe_load(text)["groups"]
    if aws_gpus is not None:
        groups = with_aws_gpus(groups, aws_gpus_expr(aws_gpus))
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def test_showback_rules_count_gpu_hours_per_namespace_and_site(tmp_path: Path) -> None:
    """A GPU held by team-a for 2 h (and a second for 1 h) is 3 GPU-hours, team-b's 30 min 0.5,
    Ollama's hour on AWS 1; idle GPUs count nothing; the AWS worker running 90 min bills 1.5."""
    rules = _showback_rules(tmp_path, RULES_FILE.read_text())
    result = promtool("test", "rules", _unit_test_file(tmp_path, rules, SHOWBACK_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_aws_gpu_hours_billed_count_every_gpu_of_the_worker(tmp_path: Path) -> None:
    """Rendered with the aws-gpu stack's 4 GPUs, the same 90 minutes bill 6 GPU-hours."""
    rules = _showback_rules(tmp_path, RULES_FILE.read_text(), aws_gpus=4)
    unit_tests = yaml.safe_load(SHOWBACK_TESTS.read_text())
    (billing,) = [c for c in unit_tests["tests"] if c["name"].startswith("the AWS worker")]
    billing["promql_expr_test"][-1]["exp_samples"][0]["value"] = 6
    path = tmp_path / "billing.test.yaml"
    path.write_text(yaml.safe_dump({**unit_tests, "tests": [billing]}))
    result = promtool("test", "rules", _unit_test_file(tmp_path, rules, path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_showback_tests_fail_when_the_exporters_own_namespace_counts(tmp_path: Path) -> None:
    """Counting the homelab series by their ``namespace`` (the exporter's, a target label) instead
    of ``exported_namespace`` books every GPU, idle or not, to gpu-operator: caught."""
    broken = RULES_FILE.read_text().replace(
        'DCGM_FI_DEV_GPU_UTIL{job="aws-dcgm-exporter",pod!=""}', 'DCGM_FI_DEV_GPU_UTIL{pod!=""}'
    )
    broken = broken.replace('{exported_pod!=""}', '{exported_pod="never"}')
    assert broken != RULES_FILE.read_text()
    rules = _showback_rules(tmp_path, broken)
    result = promtool("test", "rules", _unit_test_file(tmp_path, rules, SHOWBACK_TESTS))
    assert result.returncode != 0
    assert "gpu-operator" in result.stdout + result.stderr


def test_the_showback_dashboard_runs_the_queries_the_promtool_tests_check() -> None:
    tested = {
        check["expr"]
        for case in yaml.safe_load(SHOWBACK_TESTS.read_text())["tests"]
        for check in case["promql_expr_test"]
    }
    dashboard = _dashboards()["showback"]
    month = [p for p in dashboard["panels"] if p.get("timeFrom") == "now/M"]
    assert len(month) == 3
    for panel in month:
        (target,) = panel["targets"]
        expr = target["expr"].replace("$__range", SHOWBACK_RANGE).replace("$site", ".*")
        assert expr in tested, panel["title"]
        assert target["instant"] is True
    titles = " ".join(p["title"] for p in month)
    assert "per namespace and site" in titles
    assert "AWS GPU-hours billed" in titles


# ---------------------------------------------------------------------------------------------
# Values and the stacks
# ---------------------------------------------------------------------------------------------


def test_values_carry_retention_storage_and_the_grafana_ingress() -> None:
    values = render_values(
        grafana_hostname="grafana.lab.example",
        tls_secret="grafana-tls",
        retention_days=40,
        storage_gib=100,
        storage_class="nfs-client",
        alertmanager_storage_gib=3,
        node_taints=("node-role.kubernetes.io/control-plane=true:NoSchedule",),
    )
    spec = values["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "40d"
    assert spec["retentionSize"] == "90GB"
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "nfs-client"
    assert claim["resources"]["requests"]["storage"] == "100Gi"
    alertmanager = values["alertmanager"]["alertmanagerSpec"]["storage"]["volumeClaimTemplate"]
    assert alertmanager["spec"]["resources"]["requests"]["storage"] == "3Gi"
    ingress = values["grafana"]["ingress"]
    assert ingress["ingressClassName"] == "traefik"
    assert ingress["annotations"] == {
        "traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
        "traefik.ingress.kubernetes.io/router.tls": "true",
    }
    assert ingress["tls"] == [{"hosts": ["grafana.lab.example"], "secretName": "grafana-tls"}]
    assert values["grafana"]["admin"]["existingSecret"] == monitoring.GRAFANA_ADMIN_SECRET
    assert retention_size(5) == "4GB"


def test_grafana_stays_closed_to_anonymous_users_and_sign_up() -> None:
    """We rely on Grafana's defaults (anonymous off, sign-up off): the pinned chart's
    grafana.ini must not turn either on."""
    chart = chart_data("kube-prometheus-stack", "88.5.3")
    assert chart is not None
    ini = yaml.safe_load((chart.path / "charts" / "grafana" / "values.yaml").read_text())[
        "grafana.ini"
    ]
    assert "auth.anonymous" not in ini
    assert "users" not in ini


def test_homelab_installs_monitoring_with_the_example_config(homelab_run: StackRun) -> None:
    release = homelab_run.one(RELEASE, "monitoring-release").plain_inputs
    assert release["chart"] == "kube-prometheus-stack"
    assert release["version"] == "88.5.3"
    spec = release["values"]["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "35d"
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "nfs-client"
    dashboards = {
        r.name: r.plain_inputs for r in homelab_run.by_type(CONFIG_MAP) if "dashboard" in r.name
    }
    assert set(dashboards) == {f"monitoring-dashboard-{p.stem}" for p in dashboard_files()}
    for inputs in dashboards.values():
        assert inputs["metadata"]["labels"] == {"grafana_dashboard": "1"}
    assert homelab_run.exports["grafanaUrl"] == "https://grafana.lab.example/"
    assert "grafanaAdminPassword" in homelab_run.secret_exports
    assert homelab_run.exports["grafanaAdminPassword"]
    operator = homelab_run.one(RELEASE, "gpu-operator-release").plain_inputs["values"]
    monitor = operator["dcgmExporter"]["serviceMonitor"]
    assert monitor["enabled"] is True
    assert monitor["relabelings"] == [
        {"targetLabel": "site", "replacement": "homelab", "action": "replace"}
    ]


def test_the_declared_rule_links_runbooks_and_counts_the_aws_workers_gpus(
    homelab_run: StackRun,
) -> None:
    """The example sets no runbookBaseUrl: each alert links its page's repository path; the AWS
    GPU count is the aws-gpu stack's gpuWorkerGpuCount, read through the StackReference."""
    spec = homelab_run.one(
        "kubernetes:monitoring.coreos.com/v1:PrometheusRule", "monitoring-alerts"
    ).plain_inputs["spec"]
    assert runbook_problems(spec["groups"]) == []
    assert len(_alerts(spec["groups"])) == 7
    gpus = homelab_run.referenced["aws-gpu"].values["gpuWorkerGpuCount"]
    (record,) = [r for g in spec["groups"] for r in g["rules"] if r.get("record") == AWS_GPUS_RULE]
    assert record["expr"] == f"vector({gpus})"


def test_aws_targets_are_scraped_on_the_control_node_overlay_address(
    homelab_run: StackRun,
) -> None:
    overlay = homelab_run.referenced["aws-gpu"].values["controlNodeOverlayIp"]
    targets = {
        r.plain_inputs["spec"]["jobName"]: r.plain_inputs["spec"]
        for r in homelab_run.by_type(SCRAPE)
    }
    assert targets["aws-dcgm-exporter"]["staticConfigs"] == [
        {
            "targets": [f"{overlay}:{DCGM_EXPORTER_NODEPORT}"],
            "labels": {"site": "aws", "aws_node": "gpu-worker"},
        }
    ]
    # Both AWS nodes' exporters, each on its own NodePort, in the homelab's node-exporter job.
    assert targets[NODE_EXPORTER_JOB]["staticConfigs"] == [
        {
            "targets": [f"{overlay}:{NODE_EXPORTER_NODEPORTS['control-node']}"],
            "labels": {"site": "aws", "aws_node": "control-node"},
        },
        {
            "targets": [f"{overlay}:{NODE_EXPORTER_NODEPORTS['gpu-worker']}"],
            "labels": {"site": "aws", "aws_node": "gpu-worker"},
        },
    ]
    waker = targets["gpu-waker"]
    assert waker["staticConfigs"][0]["targets"] == [f"{overlay}:{GPU_WAKER_PORT}"]
    assert waker["authorization"]["credentials"] == {"name": "gpu-waker-scrape", "key": "token"}
    secret = homelab_run.one("kubernetes:core/v1:Secret", "monitoring-gpu-waker-token")
    assert "token" in json.dumps(secret.inputs)


def test_aws_runs_the_dcgm_exporter_behind_the_node_port(aws_gpu_run: StackRun) -> None:
    release = aws_gpu_run.one(RELEASE, "dcgm-exporter-release").plain_inputs
    assert release["chart"] == "dcgm-exporter"
    assert release["values"]["runtimeClassName"] == "nvidia"
    assert release["values"]["serviceMonitor"] == {"enabled": False}
    service = aws_gpu_run.one("kubernetes:core/v1:Service", "dcgm-exporter-node-port").plain_inputs
    (port,) = service["spec"]["ports"]
    assert port["nodePort"] == DCGM_EXPORTER_NODEPORT
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "dcgm-exporter",
        "app.kubernetes.io/instance": "dcgm-exporter",
    }


@pytest.mark.parametrize(
    "port", [DCGM_EXPORTER_NODEPORT, *NODE_EXPORTER_NODEPORTS.values()], ids=str
)
def test_mesh_opens_exactly_the_exporter_ports_from_the_homelab_to_aws(port: int) -> None:
    rules = [r for r in default_policy() if r.port == port]
    assert [(r.proto, r.from_groups, r.applies_to) for r in rules] == [
        ("tcp", ("homelab",), ("aws",))
    ]
    # The exporter's own port is never opened on the mesh: only the NodePorts lead to it.
    assert not [r for r in default_policy() if r.port == NODE_EXPORTER_PORT]


def test_aws_runs_one_node_exporter_per_node_behind_its_node_port(aws_gpu_run: StackRun) -> None:
    selectors = {"control-node": {"node-type": "control"}, "gpu-worker": {"node-type": "gpu"}}
    for node, port in NODE_EXPORTER_NODEPORTS.items():
        release = aws_gpu_run.one(RELEASE, f"node-exporter-{node}").plain_inputs
        assert (release["chart"], release["version"]) == ("prometheus-node-exporter", "4.56.1")
        assert release["namespace"] == node_exporter.NAMESPACE
        values = release["values"]
        (term,) = values["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert {e["key"]: e["values"] for e in term["matchExpressions"]} == {
            k: [v] for k, v in selectors[node].items()
        }
        assert values["service"] == {
            "type": "NodePort",
            "nodePort": port,
            "listenOnAllInterfaces": False,
        }
    namespace = aws_gpu_run.one("kubernetes:core/v1:Namespace", "node-exporter-namespace")
    metadata = namespace.plain_inputs["metadata"]
    assert metadata["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert "host's PID and network namespaces" in json.dumps(metadata["annotations"])
    # The control node's kube-proxy reaches the worker's exporter on the worker's VPC address.
    (rule,) = [
        r
        for r in aws_gpu_run.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.plain_inputs.get("fromPort") == NODE_EXPORTER_PORT
    ]
    assert rule.plain_inputs["toPort"] == NODE_EXPORTER_PORT
    assert "referencedSecurityGroupId" in rule.inputs
    assert "cidrIpv4" not in rule.inputs


def test_the_stopped_worker_raises_no_target_down_storm(homelab_run: StackRun) -> None:
    """Every AWS target on the stoppable worker carries the label PrometheusTargetDown exempts
    while the worker is not ready (promtool unit tests: tests/promtool/alerts.test.yaml), and the
    chart's own TargetDown, which knows nothing of the worker, is off."""
    overlay = homelab_run.referenced["aws-gpu"].values["controlNodeOverlayIp"]
    on_worker = {f"{overlay}:{DCGM_EXPORTER_NODEPORT}", f"{overlay}:30942"}
    seen = set()
    for scrape in homelab_run.by_type(SCRAPE):
        for static in scrape.plain_inputs["spec"]["staticConfigs"]:
            for address in static["targets"]:
                worker = static["labels"].get(AWS_NODE_LABEL) == STOPPABLE_NODE
                assert worker == (address in on_worker), address
                seen.add(address)
    assert on_worker <= seen
    values = homelab_run.one(RELEASE, "monitoring-release").plain_inputs["values"]
    assert values["defaultRules"]["disabled"] == {"TargetDown": True}


def test_without_monitoring_nothing_of_it_is_declared(
    valid_fixture_runs: dict[str, StackRun],
) -> None:
    run = valid_fixture_runs["homelab-single-control-plane"]
    assert not [r for r in run.registrations if "monitoring" in r.name]
    assert run.exports["grafanaUrl"] is None
    operator = run.one(RELEASE, "gpu-operator-release").plain_inputs["values"]
    assert operator["dcgmExporter"]["serviceMonitor"] == {"enabled": False}


@pytest.mark.parametrize("days", [30, 1])
def test_retention_shorter_than_a_month_is_rejected(days: int) -> None:
    from pydantic import ValidationError

    from stacks.config.homelab_apps import MonitoringSettings

    with pytest.raises(ValidationError, match="shorter than a month"):
        MonitoringSettings.model_validate(
            {"grafanaHostname": "g.lab.example", "retentionDays": days}
        )
    ok = MonitoringSettings.model_validate({"grafanaHostname": "g.lab.example"})
    assert ok.retention_days == 35


def test_the_offline_plan_lists_monitoring_exporters_dashboards_and_rules(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    homelab = "\n".join(resource_tree(homelab_run))
    for line in (
        "hybridgpu:platform:Monitoring  monitoring",
        "kubernetes:helm.sh/v3:Release  monitoring-release",
        "kubernetes:monitoring.coreos.com/v1:PrometheusRule  monitoring-alerts",
        "kubernetes:core/v1:ConfigMap  monitoring-dashboard-gpus",
        "kubernetes:core/v1:ConfigMap  monitoring-dashboard-ollama",
        "kubernetes:core/v1:ConfigMap  monitoring-dashboard-aws-worker",
        "kubernetes:core/v1:ConfigMap  monitoring-dashboard-showback",
        f"{SCRAPE}  monitoring-scrape-aws-dcgm-exporter",
        f"{SCRAPE}  monitoring-scrape-gpu-waker",
        f"{SCRAPE}  monitoring-scrape-aws-node-exporter",
    ):
        assert line in homelab, line
    aws = "\n".join(resource_tree(aws_gpu_run))
    assert "hybridgpu:platform:DcgmExporter  dcgm-exporter" in aws
    assert "kubernetes:core/v1:Service  dcgm-exporter-node-port" in aws
    assert "hybridgpu:platform:NodeExporter  node-exporter" in aws
    for node in NODE_EXPORTER_NODEPORTS:
        assert f"kubernetes:helm.sh/v3:Release  node-exporter-{node}" in aws
