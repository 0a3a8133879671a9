"""Project-wide keys (declared with defaults in ``Pulumi.yaml``): the network plan of both sites,
Nebula tunables and the versions both clusters share."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from components.kube.charts import (
    LIQO_DEFAULT_VERSION,
)
from stacks.config.errors import ConfigError, validate
from stacks.config.fields import (
    DnsLabel,
    ExactVersion,
    K3sVersion,
    Model,
    Port,
    key,
)
from stacks.config.mtu import ALLOWED_NEBULA_MTU, liqo_mtu, mtu_problems


class NetworkPlan(Model):
    """Every address range of the system. All must be pairwise disjoint, except that the AWS
    subnet lies inside the AWS VPC.

    The k3s defaults 10.42.0.0/16 (pods) and 10.43.0.0/16 (services) are kept for the homelab;
    the AWS cluster gets its own pair so Liqo can route between the two without remapping, and
    the Nebula overlay stays clear of both (the source design's 10.42.0.0/16 overlay collided).
    """

    homelab_lan_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.10.0/24")
    aws_vpc_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.100.0.0/16")
    aws_subnet_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.100.1.0/24")
    nebula_overlay_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.200.0.0/16")
    homelab_pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.42.0.0/16")
    homelab_service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.43.0.0/16")
    aws_pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.52.0.0/16")
    aws_service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.53.0.0/16")

    @model_validator(mode="after")
    def _ranges_are_disjoint(self) -> NetworkPlan:
        if not self.aws_subnet_cidr.subnet_of(self.aws_vpc_cidr):
            raise ValueError(
                f"{key('awsSubnetCidr')}: {self.aws_subnet_cidr} is not inside "
                f"{key('awsVpcCidr')} {self.aws_vpc_cidr}"
            )
        ranges = self.named_ranges(include_subnet=False)
        names = list(ranges)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                if ranges[first].overlaps(ranges[second]):
                    raise ValueError(
                        f"{key(first)}: {ranges[first]} overlaps {key(second)} "
                        f"({ranges[second]}); the LAN, VPC, Nebula overlay and both clusters' "
                        "pod and service ranges must not overlap"
                    )
        return self

    def named_ranges(self, *, include_subnet: bool = True) -> dict[str, ipaddress.IPv4Network]:
        """Config key name -> range, in a stable order (used for checks and Liqo reservations)."""
        data = self.model_dump(by_alias=True)
        if not include_subnet:
            data.pop("awsSubnetCidr")
        return dict(data)


class NebulaSettings(Model):
    """Nebula tunables shared by both stacks (keys ``nebulaMtu`` ... in Pulumi.yaml)."""

    # 1300 is Nebula's documented "safe setting for internet based traffic"
    # (https://github.com/slackhq/nebula/blob/master/examples/config.yml, tun.mtu); the MTU plan
    # (stacks/config/mtu.py) bounds it to 1260..1400.
    mtu: int = Field(
        default=1300,
        ge=576,
        le=9001,
        json_schema_extra={
            "allowed": f"{ALLOWED_NEBULA_MTU[0]}\u2013{ALLOWED_NEBULA_MTU[1]} (the MTU plan)"
        },
    )
    """MTU of the Nebula tun device; every tunnel inside it is derived from it."""
    listen_port: Port = 4242
    """UDP port Nebula listens on."""
    operator_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.200.255.0/24")
    """Part of the overlay reserved for operators' machines (``hybridgpu:aws.operators``): no
    node may take an address there, so an operator added to aws-gpu never collides with a
    homelab VM the aws-gpu stack cannot see."""
    ca_validity_days: int = Field(default=3650, ge=30)
    """Lifetime of the mesh CA certificate."""
    cert_validity_days: int = Field(default=365, ge=1)
    """Lifetime of each host certificate (at most the CA's)."""
    cert_renew_before_days: int = Field(default=30, ge=1)
    """Host certificates are re-issued this close to expiry (less than their lifetime)."""

    @model_validator(mode="after")
    def _renewal_window_fits(self) -> NebulaSettings:
        if self.cert_renew_before_days >= self.cert_validity_days:
            raise ValueError(
                f"{key('nebulaCertRenewBeforeDays')}: {self.cert_renew_before_days} must be "
                f"smaller than {key('nebulaCertValidityDays')} ({self.cert_validity_days})"
            )
        if self.cert_validity_days > self.ca_validity_days:
            raise ValueError(
                f"{key('nebulaCertValidityDays')}: {self.cert_validity_days} exceeds "
                f"{key('nebulaCaValidityDays')} ({self.ca_validity_days}); a host certificate "
                "cannot outlive its CA"
            )
        return self


class ProjectSettings(Model):
    """All project-wide simple keys, validated together."""

    network: NetworkPlan
    nebula: NebulaSettings
    k3s_version: K3sVersion = "v1.33.5+k3s1"
    liqo_version: ExactVersion = LIQO_DEFAULT_VERSION
    """Liqo chart (and liqoctl) version of BOTH clusters: Liqo does not peer across minors."""
    llm_namespace: DnsLabel = "llm"
    """Namespace offloaded to AWS (same name on both clusters) where Ollama runs."""

    @model_validator(mode="after")
    def _operators_inside_the_overlay(self) -> ProjectSettings:
        operators, overlay = self.nebula.operator_cidr, self.network.nebula_overlay_cidr
        if not operators.subnet_of(overlay) or operators == overlay:
            raise ValueError(
                f"{key('nebulaOperatorCidr')}: {operators} must be a part of "
                f"{key('nebulaOverlayCidr')} {overlay} "
                "(and smaller than it); set both when you move the overlay"
            )
        return self

    @model_validator(mode="after")
    def _every_tunnel_fits(self) -> ProjectSettings:
        problems = mtu_problems(self.nebula.mtu)
        if problems:
            low, high = ALLOWED_NEBULA_MTU
            raise ValueError(
                f"{key('nebulaMtu')}: {self.nebula.mtu} does not fit the path: "
                + "; ".join(problems)
                + f". Use {low}..{high} (1300 is the default)"
            )
        return self

    @property
    def liqo_mtu(self) -> int:
        """MTU of Liqo's gateway tunnel: it fits inside Nebula's."""
        return liqo_mtu(self.nebula.mtu)


PROJECT_KEYS: Mapping[str, tuple[str, str]] = {
    # config key -> (section of ProjectSettings, field alias in that section)
    "homelabLanCidr": ("network", "homelabLanCidr"),
    "awsVpcCidr": ("network", "awsVpcCidr"),
    "awsSubnetCidr": ("network", "awsSubnetCidr"),
    "nebulaOverlayCidr": ("network", "nebulaOverlayCidr"),
    "homelabPodCidr": ("network", "homelabPodCidr"),
    "homelabServiceCidr": ("network", "homelabServiceCidr"),
    "awsPodCidr": ("network", "awsPodCidr"),
    "awsServiceCidr": ("network", "awsServiceCidr"),
    "nebulaMtu": ("nebula", "mtu"),
    "nebulaListenPort": ("nebula", "listenPort"),
    "nebulaOperatorCidr": ("nebula", "operatorCidr"),
    "nebulaCaValidityDays": ("nebula", "caValidityDays"),
    "nebulaCertValidityDays": ("nebula", "certValidityDays"),
    "nebulaCertRenewBeforeDays": ("nebula", "certRenewBeforeDays"),
    "k3sVersion": ("", "k3sVersion"),
    "liqoVersion": ("", "liqoVersion"),
    "llmNamespace": ("", "llmNamespace"),
}
"""Project-wide simple keys. ``Pulumi.yaml`` declares exactly these (a test checks it)."""


def _project_key_for(loc: tuple[int | str, ...]) -> str:
    for config_key, (section, alias) in PROJECT_KEYS.items():
        if (section and tuple(loc[:2]) == (section, alias)) or (
            not section and loc[:1] == (alias,)
        ):
            return key(config_key)
    return key(str(loc[0]))


def parse_project(values: Mapping[str, Any]) -> ProjectSettings:
    """Validate the project-wide keys (unset ones take their defaults)."""
    unknown = sorted(set(values) - set(PROJECT_KEYS))
    if unknown:
        raise ConfigError(
            f"{key(unknown[0])}: not a project-wide key; known: {sorted(PROJECT_KEYS)}"
        )
    data: dict[str, Any] = {"network": {}, "nebula": {}}
    for config_key, value in values.items():
        section, alias = PROJECT_KEYS[config_key]
        if section:
            data[section][alias] = value
        else:
            data[alias] = value
    return validate(ProjectSettings, data, None, _project_key_for)
