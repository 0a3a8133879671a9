"""Where the homelab Alertmanager sends alerts (pure rendering; declared by
components/platform/monitoring.py).

The receivers are an ``AlertmanagerConfig`` custom resource (the Prometheus Operator merges it
into the configuration it generates), not part of the chart's ``alertmanager.config`` values:
its webhook URL and SMTP password are references to a Secret (``urlSecret``, ``authPassword``:
SecretKeySelectors of the AlertmanagerConfig CRD at kube-prometheus-stack 88.5.3,
charts/crds/crds/crd-alertmanagerconfigs.yaml), which the operator resolves itself. So neither
ever sits in Helm values, the release's history or the chart's config Secret, and the custom
resource is checked against its CRD like every other object.

The operator adds a ``namespace="<the CR's namespace>"`` matcher to an AlertmanagerConfig's
route by default (``OnNamespace``): our alerts carry no such label (the AWS targets) or other
namespaces'. ``OnNamespaceExceptForAlertmanagerNamespace`` lifts it for configs in
Alertmanager's own namespace, where this one lives (CRD crd-alertmanagers.yaml,
alertmanagerConfigMatcherStrategy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.kube.objects import Manifest

GROUP_BY = ("alertname", "site")
"""One notification per alert and site: a GPU alert of both sites is two, not one mixed."""
MATCHER_STRATEGY = "OnNamespaceExceptForAlertmanagerNamespace"
RECEIVER_SECRET = "alertmanager-receiver"  # noqa: S105 - a Secret object name, not a credential
WEBHOOK_URL_KEY = "webhook-url"
SMTP_PASSWORD_KEY = "smtp-password"  # noqa: S105 - a key name in that Secret
CONFIG_NAME = "hybridgpu-receivers"
RECEIVER = "hybridgpu"
PART_OF = {"app.kubernetes.io/part-of": "hybridgpu"}
# kube-prometheus-stack's own always-firing alerts, which its default config routes to the
# "null" receiver (values.yaml@kube-prometheus-stack-88.5.3 alertmanager.config.route): Watchdog
# proves the alerting pipeline works, InfoInhibitor only mutes info alerts. Never sent on.
NEVER_SENT = ("Watchdog", "InfoInhibitor")


@dataclass(frozen=True)
class WebhookReceiver:
    url: pulumi.Input[str]
    send_resolved: bool = True


@dataclass(frozen=True)
class EmailReceiver:
    to: Sequence[str]
    sender: str
    smarthost: str
    auth_username: str | None = None
    auth_password: pulumi.Input[str] | None = None
    require_tls: bool = True
    send_resolved: bool = False

    def __post_init__(self) -> None:
        if (self.auth_username is None) != (self.auth_password is None):
            raise ValueError("an SMTP login needs both a user name and a password")


@dataclass(frozen=True)
class AlertReceivers:
    webhook: WebhookReceiver | None = None
    email: EmailReceiver | None = None


def render_values() -> dict[str, Any]:
    """kube-prometheus-stack ``alertmanager`` values for alert routing (values.yaml of the
    pinned chart): the default route groups by alertname and site (Watchdog still goes to the
    chart's "null" receiver), and only our AlertmanagerConfig is selected, matching alerts of
    every namespace."""
    return {
        "config": {"route": {"group_by": list(GROUP_BY)}},
        "alertmanagerSpec": {
            "alertmanagerConfigSelector": {"matchLabels": dict(PART_OF)},
            "alertmanagerConfigMatcherStrategy": {"type": MATCHER_STRATEGY},
        },
    }


def render_secret(receivers: AlertReceivers, namespace: str) -> Manifest:
    """The receivers' secrets, for the operator to read (``stringData`` of secret Outputs)."""
    data: dict[str, pulumi.Input[str]] = {}
    if receivers.webhook is not None:
        data[WEBHOOK_URL_KEY] = pulumi.Output.secret(receivers.webhook.url)
    if receivers.email is not None and receivers.email.auth_password is not None:
        data[SMTP_PASSWORD_KEY] = pulumi.Output.secret(receivers.email.auth_password)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": RECEIVER_SECRET, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    }


def _email_configs(email: EmailReceiver) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        "from": email.sender,
        "smarthost": email.smarthost,
        "requireTLS": email.require_tls,
        "sendResolved": email.send_resolved,
    }
    if email.auth_username is not None:
        base["authUsername"] = email.auth_username
        base["authPassword"] = {"name": RECEIVER_SECRET, "key": SMTP_PASSWORD_KEY}
    return [{"to": address, **base} for address in email.to]


def render_alertmanager_config(receivers: AlertReceivers, namespace: str) -> Manifest:
    """The AlertmanagerConfig (monitoring.coreos.com/v1alpha1): one receiver with the
    configured webhook and/or mail, every alert but :data:`NEVER_SENT`, grouped by
    :data:`GROUP_BY`."""
    receiver: dict[str, Any] = {"name": RECEIVER}
    if receivers.webhook is not None:
        receiver["webhookConfigs"] = [
            {
                "urlSecret": {"name": RECEIVER_SECRET, "key": WEBHOOK_URL_KEY},
                "sendResolved": receivers.webhook.send_resolved,
            }
        ]
    if receivers.email is not None:
        receiver["emailConfigs"] = _email_configs(receivers.email)
    if len(receiver) == 1:
        raise ValueError("alert receivers: neither a webhook nor email")
    return {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": {"name": CONFIG_NAME, "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "route": {
                "receiver": RECEIVER,
                "groupBy": list(GROUP_BY),
                "matchers": [
                    {"name": "alertname", "matchType": "!~", "value": "|".join(NEVER_SENT)}
                ],
            },
            "receivers": [receiver],
        },
    }
