"""Who may call into the ``monitoring`` namespace (pure; the isolation itself is
components/kube/network_policies.py, composed in stacks/platform.py).

Default-deny ingress, pods of the namespace among themselves (Prometheus scraping
kube-state-metrics, the operator, Alertmanager and Grafana; Grafana querying Prometheus;
Prometheus sending to Alertmanager; Alertmanager's peers), plus exactly:

- Grafana from the ingress controller (Traefik), on Grafana's container port;
- the Prometheus Operator's admission webhook from the API server;
- Prometheus's API from the API server's service proxy (``./dev verify``'s
  ``prometheus-gpu-series`` check reads it that way).

Node exporter runs on the host network, where NetworkPolicies do not apply; Prometheus's own
scrapes leave the namespace (egress is not restricted). The labels are the charts' selector
labels for release ``monitoring``."""

from __future__ import annotations

from components.kube.network_policies import IngressAllow, from_api_server, from_ingress_controller

# grafana/helm-charts charts/grafana/templates/_helpers.tpl@grafana-12.11.1 (grafana.selectorLabels:
# the chart name and the release name); its container listens on service.targetPort (values.yaml).
GRAFANA_PODS = {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": "monitoring"}
GRAFANA_PORT = 3000
# prometheus-community/helm-charts charts/kube-prometheus-stack/templates/prometheus-operator/
# deployment.yaml@kube-prometheus-stack-88.5.3 (pod labels "app: <chart name>-operator" and
# "release"); the webhook is served by the operator itself on prometheusOperator.tls.internalPort
# (values.yaml: admissionWebhooks.deployment.enabled false, tls.enabled true, 10250).
OPERATOR_PODS = {"app": "kube-prometheus-stack-operator", "release": "monitoring"}
OPERATOR_WEBHOOK_PORT = 10250
# The operator labels the Prometheus pods it creates app.kubernetes.io/name=prometheus
# (prometheus-operator/prometheus-operator pkg/prometheus/server/statefulset.go); one Prometheus
# runs in the namespace. Its web port is 9090 (values.yaml prometheus.service.targetPort).
PROMETHEUS_PODS = {"app.kubernetes.io/name": "prometheus"}
PROMETHEUS_PORT = 9090


def ingress_allows() -> tuple[IngressAllow, ...]:
    return (
        from_ingress_controller(GRAFANA_PODS, [GRAFANA_PORT]),
        from_api_server(
            "allow-operator-webhook-from-api-server", OPERATOR_PODS, [OPERATOR_WEBHOOK_PORT]
        ),
        from_api_server("allow-prometheus-from-api-server", PROMETHEUS_PODS, [PROMETHEUS_PORT]),
    )
