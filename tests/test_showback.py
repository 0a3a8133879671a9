"""``./dev showback`` (issue #22, GPU showback) against Prometheus HTTP API replies recorded from a
real Prometheus (tests/fixtures/showback/prometheus-replies.json says how), served on loopback by
``./dev verify``'s test server. The replies are keyed by the exact request path, so a query that
is not the showback dashboard's (or a wrong range or time) gets a 404 and fails the test."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fake_kube_api import FakeApi, kubeconfig, silent_port
from tools import showback

RECORDED = json.loads(
    (Path(__file__).parent / "fixtures" / "showback" / "prometheus-replies.json").read_text()
)
NOW = datetime.fromisoformat(RECORDED["now"])


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = showback.main([*argv, "--timeout", "3"], now=NOW)
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()[3:] if line and "billed" not in line]


def test_last_months_gpu_hours_per_namespace_and_site_and_aws_billed(
    serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(FakeApi(RECORDED["replies"]))
    code, out, err = run(["--prometheus", server, "--month", "2026-11"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "GPU-hours from 2026-11-01 00:00 UTC to 2026-12-01 00:00 UTC"
    # team-a: 4 h on the 3rd and 1 h on the 4th; team-b 1.5 h; Ollama on AWS 2 h. Largest first,
    # then one total per site.
    assert rows(out) == [
        ["homelab", "team-a", "5.00"],
        ["aws", "llm", "2.00"],
        ["homelab", "team-b", "1.50"],
        ["aws", "(all", "namespaces)", "2.00"],
        ["homelab", "(all", "namespaces)", "6.50"],
    ]
    # The worker ran (booting, then ready) from 13:50 to 16:10: 2 h 20 min of its one GPU.
    assert out.splitlines()[-1] == "AWS GPU-hours billed: 2.33"


def test_this_month_without_allocations_reports_none(
    serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(FakeApi(RECORDED["replies"]))
    code, out, _ = run(["--prometheus", server], capsys)
    assert code == 0
    assert out.splitlines()[0] == "GPU-hours from 2026-12-01 00:00 UTC to 2026-12-02 09:30 UTC"
    assert "(no GPU was allocated to a pod)" in out
    assert out.splitlines()[-1] == "AWS GPU-hours billed: 0.00"


def test_through_the_homelab_apis_service_proxy(
    serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeApi({showback.PROXY + path: reply for path, reply in RECORDED["replies"].items()})
    config = tmp_path / "homelab.kubeconfig"
    config.write_text(kubeconfig(serve(api)))
    code, out, err = run(["--kubeconfig", str(config), "--month", "2026-11"], capsys)
    assert (code, err) == (0, "")
    assert ["homelab", "team-a", "5.00"] in rows(out)
    assert showback.PROXY == (
        "/api/v1/namespaces/monitoring/services/monitoring-kube-prometheus-prometheus:9090/proxy"
    )


def test_the_queries_are_the_dashboards_with_the_months_range() -> None:
    """What the recorded paths encode: the dashboard's two month panels, $__range = the seconds
    since the 1st, evaluated at the end of the window."""
    (first, second) = list(RECORDED["replies"])[:2]
    assert "2592000s" in first  # November: 30 days
    assert first.endswith(f"&time={datetime(2026, 12, 1, tzinfo=UTC).timestamp():.0f}")
    for title in (showback.PER_NAMESPACE, showback.AWS_BILLED):
        assert "$__range" in showback.dashboard_query(title)
    assert "gpu_worker_billed_gpus" in second


def test_an_error_reply_fails_clearly(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = serve(FakeApi({}))
    code, out, err = run(["--prometheus", server, "--month", "2026-11"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("showback: Prometheus: GET /api/v1/query?query=")
    assert "HTTP 404" in err


def test_an_unresponsive_prometheus_fails_within_the_bound(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sock, port = silent_port()
    try:
        started = time.monotonic()
        code, _, err = run(["--prometheus", f"http://127.0.0.1:{port}"], capsys)
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    assert code == 2
    assert "timed out" in err
    assert elapsed < 3.0 + 1.0


@pytest.mark.parametrize(
    ("month", "message"),
    [("2027-01", "has not started yet"), ("2026-13", "expected YYYY-MM"), ("nov", "YYYY-MM")],
)
def test_a_bad_month_is_rejected(month: str, message: str) -> None:
    with pytest.raises(showback.ShowbackError, match=message):
        showback.month_window(month, NOW)


def test_the_month_window_ends_at_the_months_end_or_now() -> None:
    assert showback.month_window("2026-02", NOW) == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert showback.month_window("2026-12", NOW) == (datetime(2026, 12, 1, tzinfo=UTC), NOW)
    assert showback.month_window(None, NOW)[0] == datetime(2026, 12, 1, tzinfo=UTC)
