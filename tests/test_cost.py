"""The offline plan's cost table (issue #15): the printed idle and busy figures of two configs
(the example stack config = the default profile, and the frugal profile of the README) checked
against the dated price table, summed here by hand."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import yaml

from tests import fixture_configs
from tools import cost, plan

PRICES = yaml.safe_load(cost.PRICES.read_text())
HOURS = 730
IPV4 = 0.005 * HOURS  # $3.65
GP3 = 0.08
S3_20GB = 20 * 0.023


def _printed(tmp_path: Path, *sets: str) -> dict[str, float]:
    """Plan aws-gpu, return {item: USD} of the cost block as printed."""
    argv = ["aws-gpu", "--artifacts", str(tmp_path / "artifacts")]
    for item in sets:
        argv += ["--set", item]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert plan.main(argv) == 0
    text = out.getvalue()
    block = text[text.index("Monthly cost, AWS list prices of 2026-11") :]
    figures = {}
    for line in block.splitlines():
        match = re.match(r"^\s+(\d+\.\d+)\s+(.*)$", line)
        if match:
            figures[match.group(2)] = float(match.group(1))
    return figures


def test_the_price_table_is_dated_and_has_the_profiles_types() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}", PRICES["date"])
    assert PRICES["region"] == "us-west-2"
    for instance_type in ("t3a.small", "t3.small", "g4dn.xlarge"):
        assert instance_type in PRICES["instance_usd_per_hour"]
    # The three prices the project's reference notes checked (mission-facts.md).
    assert PRICES["instance_usd_per_hour"]["t3.small"] == 0.0208
    assert PRICES["public_ipv4_usd_per_hour"] == 0.005
    assert PRICES["ebs_usd_per_gib_month"]["gp3"] == 0.08


def test_default_profile_idle_and_busy_figures(tmp_path: Path) -> None:
    """The example config: the AWS side sleeps (gpuWaker.sleepAfterMinutes 30), so idle bills
    no instance hour, only the Elastic IP, both volumes and S3."""
    figures = _printed(tmp_path)
    t3a_small, g4dn_xlarge = 0.0188, 0.526
    expected = {
        "control node t3a.small (asleep: stopped while idle)": 0.0,
        "public IPv4 of the control node (Elastic IP)": IPV4,
        "control node gp3 16 GiB": 16 * GP3,
        "GPU worker gp3 115 GiB (stopped)": 115 * GP3,
        "S3 models (20 GB assumed)": S3_20GB,
    }
    for item, usd in expected.items():
        assert figures[item] == pytest.approx(usd, abs=0.005), item
    assert figures["idle total per month"] == pytest.approx(sum(expected.values()), abs=0.01)
    assert figures["idle total per month"] == pytest.approx(14.59, abs=0.01)
    assert figures["idle total per month"] <= 15.00  # the target for the default
    # Busy: g4dn.xlarge on demand, its public IPv4 and the awake control node, per GPU hour.
    assert figures["per GPU hour"] == pytest.approx(g4dn_xlarge + 0.005 + t3a_small, abs=0.0001)
    # Each wake's tail: the worker until its idle stop (15 min), the control node until it
    # sleeps (15 + 30 min).
    worker_tail = 15 / 60 * (g4dn_xlarge + 0.005)
    assert figures["GPU worker until its idle stop (15 min)"] == pytest.approx(
        worker_tail, abs=1e-4
    )
    control_tail = 45 / 60 * t3a_small
    assert figures["control node until it sleeps (15 + 30 min)"] == pytest.approx(
        control_tail, abs=1e-4
    )


def test_a_control_node_that_never_sleeps_bills_every_hour(tmp_path: Path) -> None:
    figures = _printed(tmp_path, "hybridgpu:aws.gpuWaker.sleepAfterMinutes=null")
    control = HOURS * 0.0188
    assert figures["control node t3a.small (730 h)"] == pytest.approx(control, abs=0.005)
    assert figures["idle total per month"] == pytest.approx(
        control + IPV4 + 16 * GP3 + 115 * GP3 + S3_20GB, abs=0.01
    )
    assert "control node until it sleeps (15 + 30 min)" not in figures


def test_frugal_profile_idle_figures(tmp_path: Path) -> None:
    """The frugal profile: the AWS side sleeps too, the control node on 10 GiB, the worker on
    plain Ubuntu 24.04 with the driver installed at first boot (README "Small worker image")."""
    fixture = fixture_configs.load(fixture_configs.FIXTURES / "valid" / "aws-frugal.yaml")
    aws = json.dumps(fixture.overrides["hybridgpu:aws"])
    figures = _printed(tmp_path, f"hybridgpu:aws={aws}")
    expected = {
        "control node t3a.small (asleep: stopped while idle)": 0.0,
        "public IPv4 of the control node (Elastic IP)": IPV4,
        "control node gp3 10 GiB": 10 * GP3,
        "GPU worker gp3 24 GiB (stopped)": 24 * GP3,
        "S3 models (20 GB assumed)": S3_20GB,
    }
    for item, usd in expected.items():
        assert figures[item] == pytest.approx(usd, abs=0.005), item
    assert figures["idle total per month"] == pytest.approx(sum(expected.values()), abs=0.01)
    assert figures["idle total per month"] == pytest.approx(6.83, abs=0.01)
    assert figures["idle total per month"] <= 7.00  # the target for a frugal profile
    assert figures["control node until it sleeps (10 + 15 min)"] == pytest.approx(
        25 / 60 * 0.0188, abs=1e-4
    )


def test_an_instance_type_without_a_price_is_named() -> None:
    table = cost.load_prices()
    with pytest.raises(KeyError, match=r"no price for p5\.48xlarge"):
        table.instance_hour("p5.48xlarge")


def test_plan_json_carries_the_figures(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            plan.main(["aws-gpu", "--artifacts", str(tmp_path / "a"), "--json", str(target)]) == 0
        )
    data = json.loads(target.read_text())["costUsd"]
    assert data == {"pricesDate": "2026-11", "idlePerMonth": 14.59, "busyPerGpuHour": 0.5498}
