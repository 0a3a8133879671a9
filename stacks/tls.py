"""TLS that renews itself (issue #22): the aws-gpu stack's DNS-01 key, and the homelab's
cert-manager with the ClusterIssuer from ``hybridgpu:homelab.tls``."""

from __future__ import annotations

from typing import Any

import pulumi

from components.aws.acme_dns_user import AcmeDnsUser, AcmeDnsUserArgs
from components.platform.cert_manager import (
    CA_RENEW_BEFORE_DAYS,
    CA_VALIDITY_DAYS,
    AcmeRoute53,
    Issuer,
    PrivateCa,
)
from stacks.config import AwsSettings, ConfigError, HomelabConfig, key
from stacks.config.tls import ACME_ROUTE53
from stacks.cross_stack import checked
from stacks.outputs import AwsGpuReference
from stacks.renewal import RenewalClock


def aws_acme_dns(settings: AwsSettings, opts: pulumi.ResourceOptions) -> dict[str, Any]:
    """The DNS-01 key when ``aws.acmeDns01`` is set; the stack outputs the homelab reads."""
    acme = settings.acme_dns01
    if acme is None:
        return {
            "acmeDns01": {"hostedZoneId": None},
            "acmeDns01AccessKeyId": None,
            "acmeDns01SecretAccessKey": None,
        }
    user = AcmeDnsUser(
        "acme-dns01",
        AcmeDnsUserArgs(hosted_zone_id=acme.hosted_zone_id, region=settings.region),
        opts=opts,
    )
    return {
        "acmeDns01": {"hostedZoneId": acme.hosted_zone_id},
        "acmeDns01AccessKeyId": user.access_key_id,
        "acmeDns01SecretAccessKey": user.secret_access_key,
    }


def acme_zone_error(ours: str, theirs: dict[str, Any] | None) -> ConfigError | None:
    """Why the aws-gpu stack's DNS-01 key (``theirs``: its ``acmeDns01`` output) cannot answer
    challenges in the issuer's zone ``ours``; None when it can."""
    zone = (theirs or {}).get("hostedZoneId")
    if zone == ours:
        return None
    found = "has no DNS-01 key" if zone is None else f"made its key for zone '{zone}'"
    return ConfigError(
        f"{key('homelab')}.tls.issuer.hostedZoneId: '{ours}' but the aws-gpu stack {found}; "
        f"set {key('aws')}.acmeDns01.hostedZoneId to '{ours}' and update aws-gpu first"
    )


def check_acme_zone(config: HomelabConfig, aws_gpu: AwsGpuReference) -> pulumi.Output[Any]:
    """The ACME issuer's zone must be the one the aws-gpu stack's key may change (a gate
    check: nothing is registered after a mismatch)."""
    issuer = config.homelab.tls.issuer
    if issuer.type != ACME_ROUTE53:
        return pulumi.Output.from_input(None)
    ours = issuer.hosted_zone_id
    assert ours is not None
    return checked(aws_gpu.require("acmeDns01"), lambda theirs: acme_zone_error(ours, theirs))


def issuer_of(config: HomelabConfig, aws_gpu: AwsGpuReference, clock: RenewalClock) -> Issuer:
    settings = config.homelab.tls.issuer
    if settings.type == ACME_ROUTE53:
        assert settings.email is not None
        assert settings.hosted_zone_id is not None
        return AcmeRoute53(
            email=settings.email,
            server=settings.server,
            hosted_zone_id=settings.hosted_zone_id,
            region=settings.region,
            access_key_id=aws_gpu.require("acmeDns01AccessKeyId"),
            secret_access_key=aws_gpu.require("acmeDns01SecretAccessKey"),
        )
    return PrivateCa(
        common_name=settings.common_name,
        validity=clock.validity(CA_VALIDITY_DAYS, CA_RENEW_BEFORE_DAYS),
    )
