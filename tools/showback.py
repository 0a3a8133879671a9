"""``./dev showback``: GPU-hours per namespace and site this month, and the AWS GPU-hours billed,
from the homelab Prometheus (README, GPU showback).

The queries are the showback dashboard's own (components/platform/monitoring_files/dashboards/
showback.json, the panels named below), with Grafana's ``$__range`` set to the time since the 1st
(UTC) and ``$site`` to every site: the same expressions ``promtool test rules`` checks
(tests/promtool/showback.test.yaml). Prometheus is reached through the homelab API's service proxy
(the stack output ``kubeconfig``, like ``./dev verify``) or at ``--prometheus URL`` (e.g. after
``kubectl -n monitoring port-forward svc/monitoring-kube-prometheus-prometheus 9090``).

Exit status: 0 with the report, 2 if Prometheus could not be queried (the message says why)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.platform.monitoring import NAMESPACE as MONITORING_NAMESPACE
from components.platform.monitoring_rules import DASHBOARDS_DIR
from tools.stack_outputs import StackOutputsError, read_stack_outputs
from tools.verify.api import Kube, VerifyError
from tools.verify.site import PROMETHEUS_SERVICE

DASHBOARD = DASHBOARDS_DIR / "showback.json"
PER_NAMESPACE = "GPU-hours this month per namespace and site"
AWS_BILLED = "AWS GPU-hours billed this month"
PROXY = f"/api/v1/namespaces/{MONITORING_NAMESPACE}/services/{PROMETHEUS_SERVICE}:9090/proxy"


class ShowbackError(RuntimeError):
    """Prometheus could not be queried, or answered an error."""


@dataclass(frozen=True)
class Report:
    start: datetime
    end: datetime
    per_namespace: list[tuple[str, str, float]]
    """(site, namespace, GPU-hours), largest first."""
    aws_billed: float


def dashboard_query(title: str) -> str:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    (panel,) = [p for p in panels if p["title"] == title]
    (target,) = panel["targets"]
    return target["expr"]


def month_window(month: str | None, now: datetime) -> tuple[datetime, datetime]:
    """From the 1st of ``month`` (``YYYY-MM``, default this month, UTC) to its end or now."""
    try:
        start = (
            datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
            if month
            else now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        )
    except ValueError:
        raise ShowbackError(f"--month {month}: expected YYYY-MM, e.g. 2026-11") from None
    following = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    end = min(following, now)
    if end <= start:
        raise ShowbackError(f"--month {month}: the month has not started yet")
    return start, end


def instant_query(prometheus: Kube, prefix: str, promql: str, at: datetime) -> list[Any]:
    params = urllib.parse.urlencode({"query": promql, "time": f"{at.timestamp():.0f}"})
    try:
        reply = prometheus.get(f"{prefix}/api/v1/query?{params}")
    except VerifyError as err:
        raise ShowbackError(f"Prometheus: {err}") from None
    if not isinstance(reply, dict) or reply.get("status") != "success":
        raise ShowbackError(f"Prometheus answered {str(reply)[:200]}")
    return reply["data"]["result"]


def showback(prometheus: Kube, prefix: str, start: datetime, end: datetime) -> Report:
    def run(title: str) -> list[Any]:
        seconds = int((end - start).total_seconds())
        expr = dashboard_query(title).replace("$__range", f"{seconds}s").replace("$site", ".*")
        return instant_query(prometheus, prefix, expr, end)

    rows = [
        (r["metric"].get("site", ""), r["metric"].get("namespace", ""), float(r["value"][1]))
        for r in run(PER_NAMESPACE)
    ]
    billed = run(AWS_BILLED)
    return Report(
        start=start,
        end=end,
        per_namespace=sorted(rows, key=lambda row: (-row[2], row[0], row[1])),
        aws_billed=float(billed[0]["value"][1]) if billed else 0.0,
    )


def render(report: Report) -> str:
    stamp = "%Y-%m-%d %H:%M UTC"
    lines = [
        f"GPU-hours from {report.start.strftime(stamp)} to {report.end.strftime(stamp)}",
        "",
        f"{'SITE':<10} {'NAMESPACE':<32} {'GPU-HOURS':>10}",
    ]
    lines += [f"{s:<10} {n:<32} {h:>10.2f}" for s, n, h in report.per_namespace]
    if not report.per_namespace:
        lines.append("(no GPU was allocated to a pod)")
    for site in sorted({s for s, _, _ in report.per_namespace}):
        total = sum(h for s, _, h in report.per_namespace if s == site)
        lines.append(f"{site:<10} {'(all namespaces)':<32} {total:>10.2f}")
    lines += ["", f"AWS GPU-hours billed: {report.aws_billed:.2f}"]
    return "\n".join(lines)


def connect(args: argparse.Namespace) -> tuple[Kube, str]:
    """Prometheus itself (``--prometheus``), or the homelab API's proxy to its Service."""
    if args.prometheus:
        return Kube(server=args.prometheus.rstrip("/"), timeout=args.timeout), ""
    if args.kubeconfig:
        text = Path(args.kubeconfig).read_text()
    else:
        instead = "pass --kubeconfig FILE or --prometheus URL"
        text = read_stack_outputs("homelab", show_secrets=True, instead=instead)["kubeconfig"]
    try:
        return Kube.from_kubeconfig(text, args.timeout, args.kubeconfig or ""), PROXY
    except VerifyError as err:
        raise ShowbackError(f"kubeconfig: {err}") from None


def main(argv: list[str] | None = None, now: datetime | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev showback", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--month", help="YYYY-MM (default: this month, UTC)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prometheus", help="Prometheus base URL (default: the API's proxy)")
    source.add_argument("--kubeconfig", help="homelab kubeconfig (default: the stack output)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    args = parser.parse_args(argv)
    try:
        start, end = month_window(args.month, now or datetime.now(UTC))
        prometheus, prefix = connect(args)
        report = showback(prometheus, prefix, start, end)
    except (ShowbackError, StackOutputsError) as err:
        print(f"showback: {err}", file=sys.stderr)
        return 2
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
