"""What EC2 offers where the GPU worker goes, checked before the worker is registered: the
instance type in the zone (an error), and a spot price cap against the current price (a
warning)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from stacks.config import ConfigError, GpuWorkerSettings, key


def offered_instance_type(
    provider: aws.Provider, instance_type: str, zone: pulumi.Input[str]
) -> pulumi.Output[str]:
    """``instance_type`` once EC2 confirms it is offered in ``zone``; a clear error otherwise,
    before the worker is registered (not every GPU type exists in every zone)."""
    offerings = aws.ec2.get_instance_type_offerings_output(
        location_type="availability-zone",
        filters=pulumi.Output.from_input(zone).apply(
            lambda where: [
                aws.ec2.GetInstanceTypeOfferingsFilterArgs(
                    name="instance-type", values=[instance_type]
                ),
                aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="location", values=[where]),
            ]
        ),
        opts=pulumi.InvokeOutputOptions(provider=provider),
    )

    def check(values: list[Any]) -> str:
        offered, where = values
        if instance_type not in (offered or []):
            raise ConfigError(
                f"{key('aws')}.gpuWorker.instanceType: {instance_type} is not offered in "
                f"{where}; pick another type or set {key('aws')}.availabilityZone to a zone that "
                f"offers it (aws ec2 describe-instance-type-offerings --location-type "
                f"availability-zone --filters Name=instance-type,Values={instance_type})"
            )
        return instance_type

    return pulumi.Output.all(offerings.instance_types, zone).apply(check)


def spot_price_check(
    provider: aws.Provider, worker: GpuWorkerSettings, zone: pulumi.Input[str]
) -> pulumi.Output[str]:
    """For a spot worker with a price cap: warn when the zone's current spot price is above the
    cap, naming both (the request would wait unfulfilled, status ``price-too-low``,
    https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-request-status.html). A warning, not
    an error: prices move, and a running worker's unrelated ``up`` must not be blocked by a spike.
    Resolves to the market, so the worker can be gated on it."""
    if worker.market != "spot" or worker.spot.max_price_usd_per_hour is None:
        return pulumi.Output.from_input(worker.market)
    cap = float(worker.spot.max_price_usd_per_hour)
    price = aws.ec2.get_spot_price_output(
        instance_type=worker.instance_type,
        availability_zone=zone,
        filters=[aws.ec2.GetSpotPriceFilterArgs(name="product-description", values=["Linux/UNIX"])],
        opts=pulumi.InvokeOutputOptions(provider=provider),
    )

    def check(values: list[Any]) -> str:
        current, where = values
        if current and float(current) > cap:
            pulumi.log.warn(
                f"{key('aws')}.gpuWorker.spot.maxPriceUsdPerHour: {cap} is below the current spot "
                f"price of {worker.instance_type} in {where} ({current} USD/h): a new request "
                "stays unfulfilled (price-too-low) until the price falls; raise the cap, leave it "
                "unset (capped at the on-demand price), or use market: on-demand"
            )
        return worker.market

    return pulumi.Output.all(price.spot_price, zone).apply(check)
