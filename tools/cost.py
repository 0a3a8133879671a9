"""Monthly cost of the AWS side from the stack config and a dated price table (pure).

Idle = the GPU worker stopped. When the AWS side sleeps (``gpuWaker.sleepAfterMinutes``, the
default) the control node is stopped too, so idle bills no instance hour at all: the root
volumes, the Elastic IP (billed whether or not its instance runs) and the models in S3. When it
does not sleep, the control node runs all month. Busy adds, per GPU hour, the worker's instance
hour and public IPv4 (and the control node's hour when it sleeps otherwise). Each wake also
bills the tail after its last request: the worker until its idle stop, the control node until it
sleeps. A stopped instance bills no instance hours
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-lifecycle.html).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacks.config import PROJECT_KEYS, AwsSettings, parse_aws, parse_project
from tools import offline

PRICES = Path(__file__).resolve().parent / "prices" / "aws-us-west-2.yaml"
DEFAULT_MODELS_GB = 20.0
"""Assumed size of the model bucket (an 8B and a 14B model, quantized) when none is given."""


@dataclass(frozen=True)
class PriceTable:
    date: str
    region: str
    hours_per_month: float
    instance: dict[str, float]
    ebs_per_gib_month: dict[str, float]
    public_ipv4_per_hour: float
    s3_per_gb_month: float

    def instance_hour(self, instance_type: str) -> float:
        if instance_type not in self.instance:
            raise KeyError(
                f"no price for {instance_type} in {PRICES.name} ({self.date}); add it from "
                "https://aws.amazon.com/ec2/pricing/on-demand/"
            )
        return self.instance[instance_type]


def load_prices(path: Path = PRICES) -> PriceTable:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return PriceTable(
        date=str(data["date"]),
        region=str(data["region"]),
        hours_per_month=float(data["hours_per_month"]),
        instance={k: float(v) for k, v in data["instance_usd_per_hour"].items()},
        ebs_per_gib_month={k: float(v) for k, v in data["ebs_usd_per_gib_month"].items()},
        public_ipv4_per_hour=float(data["public_ipv4_usd_per_hour"]),
        s3_per_gb_month=float(data["s3_standard_usd_per_gb_month"]),
    )


@dataclass(frozen=True)
class CostLine:
    item: str
    usd_per_month: float


@dataclass(frozen=True)
class CostTable:
    prices: PriceTable
    idle: tuple[CostLine, ...]
    busy_per_gpu_hour: tuple[CostLine, ...]
    per_wake: tuple[CostLine, ...] = ()
    """What one wake bills after its last request (idle stop, then the control node's sleep)."""

    @property
    def idle_total(self) -> float:
        return sum(line.usd_per_month for line in self.idle)

    @property
    def busy_hour_total(self) -> float:
        return sum(line.usd_per_month for line in self.busy_per_gpu_hour)


def aws_costs(
    aws: AwsSettings, prices: PriceTable, *, models_gb: float = DEFAULT_MODELS_GB
) -> CostTable:
    hours = prices.hours_per_month
    control, worker = aws.control_node, aws.gpu_worker
    gp3 = prices.ebs_per_gib_month["gp3"]
    control_hour = prices.instance_hour(control.instance_type)
    worker_hour = prices.instance_hour(worker.instance_type)
    waker = aws.gpu_waker
    sleep_minutes = waker.control_sleep_minutes
    if sleep_minutes is None:
        control_idle = CostLine(
            f"control node {control.instance_type} ({hours:.0f} h)", hours * control_hour
        )
    else:
        control_idle = CostLine(
            f"control node {control.instance_type} (asleep: stopped while idle)", 0.0
        )
    idle = (
        control_idle,
        CostLine(
            "public IPv4 of the control node (Elastic IP)", hours * prices.public_ipv4_per_hour
        ),
        CostLine(f"control node gp3 {control.root_volume_gib} GiB", control.root_volume_gib * gp3),
        CostLine(
            f"GPU worker gp3 {worker.root_volume_gib} GiB (stopped)", worker.root_volume_gib * gp3
        ),
        CostLine(f"S3 models ({models_gb:g} GB assumed)", models_gb * prices.s3_per_gb_month),
    )
    busy = [
        CostLine(f"GPU worker {worker.instance_type} on demand (spot: at most that)", worker_hour),
        CostLine("public IPv4 of the running worker", prices.public_ipv4_per_hour),
    ]
    per_wake: list[CostLine] = []
    if waker.enabled:
        idle_stop_hours = waker.idle_stop_minutes / 60
        per_wake.append(
            CostLine(
                f"GPU worker until its idle stop ({waker.idle_stop_minutes} min)",
                idle_stop_hours * (worker_hour + prices.public_ipv4_per_hour),
            )
        )
    if sleep_minutes is not None:
        busy.append(CostLine(f"control node {control.instance_type} (awake)", control_hour))
        per_wake.append(
            CostLine(
                f"control node until it sleeps ({waker.idle_stop_minutes} + {sleep_minutes} min)",
                (waker.idle_stop_minutes + sleep_minutes) / 60 * control_hour,
            )
        )
    return CostTable(
        prices=prices, idle=idle, busy_per_gpu_hour=tuple(busy), per_wake=tuple(per_wake)
    )


def render(table: CostTable) -> list[str]:
    """The cost block of the offline plan."""
    p = table.prices
    lines = [f"Monthly cost, AWS list prices of {p.date} ({p.region}, tools/prices):"]
    lines.append("  idle (GPU worker stopped; the control node too when the AWS side sleeps):")
    for line in table.idle:
        lines.append(f"    {line.usd_per_month:8.2f}  {line.item}")
    lines.append(f"    {table.idle_total:8.2f}  idle total per month")
    lines.append("  busy, per GPU hour on top of idle:")
    for line in table.busy_per_gpu_hour:
        lines.append(f"    {line.usd_per_month:8.4f}  {line.item}")
    lines.append(f"    {table.busy_hour_total:8.4f}  per GPU hour")
    if table.per_wake:
        lines.append("  each wake, after its last request:")
        for line in table.per_wake:
            lines.append(f"    {line.usd_per_month:8.4f}  {line.item}")
    return lines


def aws_settings(overrides: dict[str, Any] | None = None) -> AwsSettings:
    """``hybridgpu:aws`` of the aws-gpu stack as the offline plan runs it (same overrides)."""
    config, _ = offline.runtime_config_for("aws-gpu", overrides)

    def value(raw: str) -> Any:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw

    project = parse_project(
        {
            name: value(config[f"{offline.PROJECT}:{name}"])
            for name in PROJECT_KEYS
            if f"{offline.PROJECT}:{name}" in config
        }
    )
    return parse_aws(project, json.loads(config[f"{offline.PROJECT}:aws"]))
