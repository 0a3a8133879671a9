"""cert-manager and the one ClusterIssuer every ingress certificate of the homelab comes from:
ACME DNS-01 through Route 53 (public names, Let's Encrypt by default) or a private CA the program
owns (LAN-only labs). cert-manager renews each Certificate itself (2/3 through its life), so
nothing here needs a ``pulumi up`` to stay valid; only the private CA's own certificate follows
the stack's renewal window (10 years, re-issued for the same key a year before it ends).

Field names below are cert-manager's CRDs at v1.19.1 (cert-manager/cert-manager
deploy/crds/cert-manager.io_clusterissuers.yaml@v1.19.1); tests validate the objects against
those CRDs. A ClusterIssuer reads its Secrets from the "cluster resource namespace", by default
the namespace cert-manager runs in (cert-manager docs, configuration/#cluster-resource-namespace),
so the CA and the Route 53 key live in ``cert-manager``."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_random as random

from components.base.renewal import Validity
from components.base.x509_ca import ca_from_seed
from components.k3s.pod_security import with_level
from components.kube.charts import CERT_MANAGER, helm_release
from components.kube.network_policies import (
    NamespaceIsolation,
    NamespaceIsolationArgs,
    from_api_server,
)
from components.kube.objects import Manifest, declare, namespace_manifest, secret_manifest

NAMESPACE = "cert-manager"
RELEASE = "cert-manager"
ISSUER_PREFIX = "hybridgpu"
CA_SECRET = "hybridgpu-ca"  # noqa: S105 - a Secret object name, not a credential
ROUTE53_SECRET = "route53-credentials"  # noqa: S105 - a Secret object name, not a credential
ACME_ACCOUNT_SECRET = "hybridgpu-acme-account"  # noqa: S105 - a Secret object name
CA_VALIDITY_DAYS = 3650
CA_RENEW_BEFORE_DAYS = 365
# The webhook's pods and port: the chart's selector labels (name "webhook", the release as
# instance; deploy/charts/cert-manager/templates/webhook-deployment.yaml@v1.19.1) and
# webhook.securePort (values.yaml@v1.19.1: 10250).
WEBHOOK_PODS = {
    "app.kubernetes.io/name": "webhook",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "webhook",
}
WEBHOOK_PORT = 10250
# Resolvers for the DNS-01 self-check. A homelab's own DNS server often answers the lab's zone
# itself (split horizon); cert-manager would then look for the TXT record there and wait forever.
# Public resolvers see what Let's Encrypt sees (values.yaml@v1.19.1 dns01RecursiveNameservers,
# dns01RecursiveNameserversOnly).
PUBLIC_RESOLVERS = "1.1.1.1:53,9.9.9.9:53"

# cert-manager's pods run as non-root with the RuntimeDefault seccomp profile, no privilege
# escalation, all capabilities dropped, read-only root (values.yaml@v1.19.1 securityContext /
# containerSecurityContext of the controller, webhook, cainjector and startupapicheck).
POD_SECURITY_REASON = ""


@dataclass(frozen=True)
class AcmeRoute53:
    """ACME with DNS-01 challenges answered in one Route 53 hosted zone."""

    email: str
    server: str
    hosted_zone_id: str
    region: str
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Input[str]


@dataclass(frozen=True)
class PrivateCa:
    common_name: str
    validity: pulumi.Input[Validity]


Issuer = AcmeRoute53 | PrivateCa


def render_namespace() -> Manifest:
    return with_level(namespace_manifest(NAMESPACE), "restricted", POD_SECURITY_REASON)


def render_values(issuer: Issuer) -> dict[str, Any]:
    """cert-manager chart values (deploy/charts/cert-manager/values.yaml@v1.19.1)."""
    values: dict[str, Any] = {
        # The CRDs with the chart, kept when the release is uninstalled (crds.keep, default
        # true): removing them would delete every Certificate.
        "crds": {"enabled": True, "keep": True},
    }
    if isinstance(issuer, AcmeRoute53):
        values["dns01RecursiveNameservers"] = PUBLIC_RESOLVERS
        values["dns01RecursiveNameserversOnly"] = True
    return values


def issuer_name(issuer: Issuer) -> str:
    """The ClusterIssuer's name changes with what signs the certificates (the issuer type, the
    ACME directory, the CA's subject). cert-manager re-issues a Certificate at once when the
    issuer recorded on its Secret no longer matches its ``issuerRef``
    (cert-manager/cert-manager controller/certificates/policies/policies.go: the trigger chain
    includes the readiness checks, among them ``SecretIssuerAnnotationsMismatch``); a change of
    the issuer's spec under the same name is no trigger. With one fixed name, switching Let's
    Encrypt staging to production, ACME to a private CA or renaming the CA would leave every host
    on its old certificate until its normal renewal, weeks later."""
    if isinstance(issuer, AcmeRoute53):
        kind, signer = "acme", issuer.server
    else:
        kind, signer = "ca", issuer.common_name
    digest = hashlib.sha256(signer.encode()).hexdigest()[:8]
    return f"{ISSUER_PREFIX}-{kind}-{digest}"


def render_acme_issuer(issuer: AcmeRoute53) -> Manifest:
    """spec.acme (required: server, privateKeySecretRef) with one dns01.route53 solver: the
    hosted zone named (hostedZoneID: no ListHostedZonesByName lookup needed), the key from a
    Secret (accessKeyIDSecretRef, secretAccessKeySecretRef), the region set as the CRD's
    description asks when a static key is used."""
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": issuer_name(issuer)},
        "spec": {
            "acme": {
                "email": issuer.email,
                "server": issuer.server,
                "privateKeySecretRef": {"name": ACME_ACCOUNT_SECRET},
                "solvers": [
                    {
                        "dns01": {
                            "route53": {
                                "region": issuer.region,
                                "hostedZoneID": issuer.hosted_zone_id,
                                "accessKeyIDSecretRef": {
                                    "name": ROUTE53_SECRET,
                                    "key": "access-key-id",
                                },
                                "secretAccessKeySecretRef": {
                                    "name": ROUTE53_SECRET,
                                    "key": "secret-access-key",
                                },
                            }
                        }
                    }
                ],
            }
        },
    }


def render_route53_secret(
    access_key_id: pulumi.Input[str], secret_access_key: pulumi.Input[str]
) -> Manifest:
    return secret_manifest(
        ROUTE53_SECRET,
        NAMESPACE,
        {"access-key-id": access_key_id, "secret-access-key": secret_access_key},
    )


def render_ca_issuer(issuer: PrivateCa) -> Manifest:
    """spec.ca (required: secretName): signs with the key pair in that Secret."""
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": issuer_name(issuer)},
        "spec": {"ca": {"secretName": CA_SECRET}},
    }


def render_ca_secret(cert_pem: pulumi.Input[str], key_pem: pulumi.Input[str]) -> Manifest:
    """A ``kubernetes.io/tls`` Secret (tls.crt, tls.key), what the ca issuer reads."""
    return secret_manifest(
        CA_SECRET, NAMESPACE, {"tls.crt": cert_pem, "tls.key": key_pem}, "kubernetes.io/tls"
    )


@dataclass(frozen=True)
class CertManagerArgs:
    issuer: Issuer
    wait_for: Sequence[pulumi.Resource] = field(default_factory=tuple)


class CertManager(pulumi.ComponentResource):
    issuer_name: str
    issuer: pulumi.Resource
    """The ClusterIssuer: what a Certificate waits for (it exists after the CRDs)."""
    ca_cert_pem: pulumi.Output[str] | None
    """The private CA's certificate (public; None with ACME): what users trust."""

    def __init__(
        self, name: str, args: CertManagerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:CertManager", name, None, opts)
        namespace = declare(
            f"{name}-namespace", render_namespace(), pulumi.ResourceOptions(parent=self)
        )
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        NamespaceIsolation(
            f"{name}-isolation",
            NamespaceIsolationArgs(
                namespace=NAMESPACE,
                allows=(from_api_server("allow-from-api-server", WEBHOOK_PODS, [WEBHOOK_PORT]),),
                wait_for=(namespace,),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        release = helm_release(
            f"{name}-release",
            release_name=RELEASE,
            chart=CERT_MANAGER,
            namespace=NAMESPACE,
            values=render_values(args.issuer),
            create_namespace=False,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[namespace, *args.wait_for],
                # Until issue #22 the Rancher component installed this same Helm release.
                aliases=[
                    pulumi.Alias(
                        name="rancher-cert-manager",
                        parent=pulumi.create_urn("rancher", "hybridgpu:platform:Rancher"),
                    )
                ],
            ),
        )
        self.ca_cert_pem = None
        issuer = args.issuer
        # The CA's key seed exists whatever the issuer type: a new seed is a new CA every user
        # would have to trust again (protected), and a protected resource the program stopped
        # declaring would refuse a switch to ACME; switching back brings the same CA back.
        seed = random.RandomBytes(
            f"{name}-ca-key-seed",
            length=32,
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        if isinstance(issuer, AcmeRoute53):
            secret = declare(
                f"{name}-route53-credentials",
                render_route53_secret(
                    pulumi.Output.secret(issuer.access_key_id),
                    pulumi.Output.secret(issuer.secret_access_key),
                ),
                in_namespace,
            )
            manifest = render_acme_issuer(issuer)
        else:
            common_name = issuer.common_name
            material = pulumi.Output.all(seed.base64, issuer.validity).apply(
                lambda v: ca_from_seed(
                    base64.b64decode(v[0]), common_name, v[1].not_before, v[1].not_after
                )
            )
            self.ca_cert_pem = pulumi.Output.unsecret(material.apply(lambda m: m.cert_pem))
            secret = declare(
                f"{name}-ca",
                render_ca_secret(
                    self.ca_cert_pem, pulumi.Output.secret(material.apply(lambda m: m.key_pem))
                ),
                in_namespace,
            )
            manifest = render_ca_issuer(issuer)
        self.issuer_name = issuer_name(issuer)
        self.issuer = declare(
            f"{name}-issuer",
            manifest,
            pulumi.ResourceOptions(parent=self, depends_on=[release, secret]),
        )
        self.release = release
        self.register_outputs({"issuer": self.issuer_name, "caCertPem": self.ca_cert_pem})
