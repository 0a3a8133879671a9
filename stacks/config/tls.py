"""Where the homelab's ingress certificates come from (``hybridgpu:homelab.tls``), and the DNS-01
key the aws-gpu stack makes for it (``hybridgpu:aws.acmeDns01``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from stacks.config.fields import Model

# Let's Encrypt's production ACME directory (https://letsencrypt.org/docs/acme-protocol-updates/);
# staging, for trying a config out: https://acme-staging-v02.api.letsencrypt.org/directory
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
# A Route 53 hosted zone id as the console and API show it (Z followed by upper-case letters and
# digits).
HostedZoneId = Annotated[str, Field(pattern=r"^Z[A-Z0-9]{1,32}$")]
ACME_ROUTE53 = "acme-dns01-route53"
PRIVATE_CA = "private-ca"
# Fields each issuer type needs, and those only it takes.
_ACME_FIELDS = ("email", "hosted_zone_id")
_ACME_ONLY = ("email", "server", "hosted_zone_id", "region")
_CA_ONLY = ("common_name",)


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(p[:1].upper() + p[1:] for p in rest)


class IssuerSettings(Model):
    """The ClusterIssuer every ingress certificate is signed by."""

    type: Literal["acme-dns01-route53", "private-ca"] = "private-ca"
    """``acme-dns01-route53``: publicly trusted certificates (Let's Encrypt) for names in a
    Route 53 hosted zone, proven by DNS-01 (nothing needs to be reachable from the internet);
    the aws-gpu stack makes the key (``aws.acmeDns01``). ``private-ca``: a CA the program owns
    signs them (LAN-only labs); trust its certificate (output ``tlsCaCert``)."""
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    """acme: the ACME account's contact (expiry notices)."""
    server: str = Field(default=LETS_ENCRYPT, pattern=r"^https://\S+$")
    """acme: the ACME directory; default Let's Encrypt production."""
    hosted_zone_id: HostedZoneId | None = None
    """acme: the Route 53 hosted zone of the ingress host names; must be the zone of
    ``aws.acmeDns01.hostedZoneId`` (the key may change only that zone)."""
    region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    """acme: region for the AWS API client (Route 53 is global; its endpoint is us-east-1)."""
    common_name: str = Field(default="hybridgpu homelab CA", min_length=1, max_length=64)
    """private-ca: the CA certificate's subject, what users see when asked to trust it."""

    @model_validator(mode="after")
    def _fields_of_type(self) -> IssuerSettings:
        if self.type == ACME_ROUTE53:
            for name in _ACME_FIELDS:
                if getattr(self, name) is None:
                    raise ValueError(f"{_camel(name)}: required for type '{ACME_ROUTE53}'")
            others = _CA_ONLY
        else:
            others = _ACME_ONLY
        for name in others:
            if name in self.model_fields_set:
                raise ValueError(f"{_camel(name)}: not used by type '{self.type}'")
        return self


class TlsSettings(Model):
    """Certificates of every ingress host (Open WebUI, JupyterHub, Grafana, Rancher) from
    cert-manager; a ``tlsSecret`` set for an app overrides its certificate."""

    issuer: IssuerSettings = IssuerSettings()


class AcmeDns01Settings(Model):
    """An IAM user whose key may only write ACME challenge records in one hosted zone; the
    homelab's cert-manager reads the key from this stack's outputs."""

    hosted_zone_id: HostedZoneId
    """The Route 53 hosted zone of the homelab's ingress host names (the same as
    ``homelab.tls.issuer.hostedZoneId``): the only zone the key may write challenges in."""
