"""Alertmanager's receivers from config (issue #17): an AlertmanagerConfig that references a
Secret for the webhook URL and the SMTP password (secret end to end: config secret -> Pulumi
secret -> Kubernetes Secret the operator reads, never Helm values), every alert but the chart's
Watchdog/InfoInhibitor, grouped by alertname and site; without receivers nothing of it is
declared and the default route still groups that way.

amtool is not on this machine (Debian's ``prometheus`` package ships only promtool; the
``prometheus-alertmanager`` package is not installed), so the rendered receivers are validated
against the AlertmanagerConfig CRD of kube-prometheus-stack 88.5.3 (here and in the upstream
tier, which checks every custom resource of every run), not by amtool check-config."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.platform import alert_routing
from components.platform.alert_routing import (
    AlertReceivers,
    EmailReceiver,
    WebhookReceiver,
    render_alertmanager_config,
)
from tests.upstream_checks import custom_resource_problems
from tests.upstream_data import chart_data, find_crd, load_yaml
from tools.offline import StackRun

RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG = "kubernetes:monitoring.coreos.com/v1alpha1:AlertmanagerConfig"
SECRET = "kubernetes:core/v1:Secret"
FIXTURE = "homelab-alert-receivers"
BOTH = AlertReceivers(
    webhook=WebhookReceiver(url="https://chat.example/hooks/T0KEN"),
    email=EmailReceiver(
        to=("ops@lab.example", "gpu@lab.example"),
        sender="am@lab.example",
        smarthost="smtp.lab.example:587",
        auth_username="am@lab.example",
        auth_password="pw",
    ),
)


def _kube_prometheus_stack() -> Any:
    chart = chart_data("kube-prometheus-stack", "88.5.3")
    assert chart is not None
    return chart


def _crd_problems(obj: dict[str, Any]) -> list[str]:
    crds = find_crd([_kube_prometheus_stack()], obj["apiVersion"], obj["kind"])
    return custom_resource_problems(obj, crds)


def test_receivers_validate_against_the_alertmanagerconfig_crd() -> None:
    for receivers in (
        BOTH,
        AlertReceivers(webhook=WebhookReceiver(url="https://x.example/")),
        AlertReceivers(
            email=EmailReceiver(to=("a@b.example",), sender="c@d.example", smarthost="m.example:25")
        ),
    ):
        obj = render_alertmanager_config(receivers, "monitoring")
        assert _crd_problems(obj) == []


def test_the_crd_check_can_fail() -> None:
    obj = render_alertmanager_config(BOTH, "monitoring")
    obj["spec"]["route"]["matchers"][0]["matchType"] = "~="
    obj["spec"]["receivers"][0]["webhookConfigs"][0]["urlSecret"] = {"name": "x"}
    obj["spec"]["receivers"][0]["emailConfigs"][0]["smtpHost"] = "x"
    problems = " ".join(_crd_problems(obj))
    assert "'~=' is not one of" in problems
    assert "'key' is a required property" in problems
    assert "smtpHost" in problems


def test_secrets_are_references_never_values() -> None:
    obj = render_alertmanager_config(BOTH, "monitoring")
    text = json.dumps(obj)
    assert "T0KEN" not in text
    assert '"pw"' not in text
    (receiver,) = obj["spec"]["receivers"]
    assert receiver["webhookConfigs"] == [
        {"urlSecret": {"name": "alertmanager-receiver", "key": "webhook-url"}, "sendResolved": True}
    ]
    assert [c["to"] for c in receiver["emailConfigs"]] == ["ops@lab.example", "gpu@lab.example"]
    for mail in receiver["emailConfigs"]:
        assert mail["authPassword"] == {"name": "alertmanager-receiver", "key": "smtp-password"}
        assert mail["requireTLS"] is True


def test_every_alert_but_the_charts_heartbeats_goes_out_grouped_by_alertname_and_site() -> None:
    route = render_alertmanager_config(BOTH, "monitoring")["spec"]["route"]
    assert route["groupBy"] == ["alertname", "site"]
    assert route["matchers"] == [
        {"name": "alertname", "matchType": "!~", "value": "Watchdog|InfoInhibitor"}
    ]
    # The chart's own default config sends exactly these to its "null" receiver.
    config = _kube_prometheus_stack().values["alertmanager"]["config"]
    nulls = [r for r in config["route"]["routes"] if r["receiver"] == "null"]
    assert nulls == [{"receiver": "null", "matchers": ['alertname = "Watchdog"']}]
    assert any(
        "InfoInhibitor" in m for r in config["inhibit_rules"] for m in r.get("target_matchers", [])
    )


def test_the_matcher_strategy_exists_in_the_pinned_crd() -> None:
    """The operator adds namespace matchers unless this strategy lifts them for configs in
    Alertmanager's own namespace (crd-alertmanagers.yaml says so)."""
    chart = _kube_prometheus_stack()
    text = (chart.path / "charts" / "crds" / "crds" / "crd-alertmanagers.yaml").read_text()
    crd = load_yaml(text)
    (version,) = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    strategy = spec["alertmanagerConfigMatcherStrategy"]["properties"]["type"]
    assert alert_routing.MATCHER_STRATEGY in strategy["enum"]
    assert strategy["default"] == "OnNamespace"


def test_an_email_login_needs_its_password() -> None:
    with pytest.raises(ValueError, match="user name and a password"):
        EmailReceiver(
            to=("a@b.example",), sender="c@d.example", smarthost="m:25", auth_username="u"
        )


# ---------------------------------------------------------------------------------------------
# The stacks
# ---------------------------------------------------------------------------------------------


def _alertmanager_values(run: StackRun) -> dict[str, Any]:
    return run.one(RELEASE, "monitoring-release").plain_inputs["values"]["alertmanager"]


def test_without_receivers_alerts_stay_in_the_uis(homelab_run: StackRun) -> None:
    """The example config has no receivers: no AlertmanagerConfig, no Secret; the default route
    still groups by alertname and site, and its receiver stays the chart's "null" (alerts are
    listed in Alertmanager's UI and Grafana's, and sent nowhere)."""
    assert homelab_run.by_type(CONFIG) == []
    assert "monitoring-alert-receiver-secret" not in {r.name for r in homelab_run.by_type(SECRET)}
    values = _alertmanager_values(homelab_run)
    assert values["config"] == {"route": {"group_by": ["alertname", "site"]}}
    assert values["alertmanagerSpec"]["alertmanagerConfigMatcherStrategy"] == {
        "type": "OnNamespaceExceptForAlertmanagerNamespace"
    }


def test_configured_receivers_are_declared_with_secret_references(
    valid_fixture_runs: dict[str, StackRun],
) -> None:
    run = valid_fixture_runs[FIXTURE]
    config = run.one(CONFIG, "monitoring-alert-receivers").plain_inputs
    (receiver,) = config["spec"]["receivers"]
    assert receiver["webhookConfigs"][0]["urlSecret"]["key"] == "webhook-url"
    assert [m["to"] for m in receiver["emailConfigs"]] == [
        "ops@lab.example",
        "gpu-team@lab.example",
    ]
    assert receiver["emailConfigs"][0]["authUsername"] == "alertmanager@lab.example"
    # Selected by the Alertmanager: its label is the selector the values set.
    selector = _alertmanager_values(run)["alertmanagerSpec"]["alertmanagerConfigSelector"]
    assert selector["matchLabels"].items() <= config["metadata"]["labels"].items()
    secret = run.one(SECRET, "monitoring-alert-receiver-secret")
    assert set(secret.plain_inputs["stringData"]) == {"webhook-url", "smtp-password"}
    assert secret.secret_inputs == ["stringData"]
    # The secrets are nowhere else: not in the values, not in the custom resource.
    for registration in run.registrations:
        if registration.name != "monitoring-alert-receiver-secret":
            assert "mock-secret-alertmanager" not in json.dumps(registration.plain_inputs)


def test_the_offline_plan_lists_the_receivers(valid_fixture_runs: dict[str, StackRun]) -> None:
    from tools.plan import resource_tree

    tree = "\n".join(resource_tree(valid_fixture_runs[FIXTURE]))
    assert f"{CONFIG}  monitoring-alert-receivers" in tree
    assert f"{SECRET}  monitoring-alert-receiver-secret" in tree
