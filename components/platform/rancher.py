"""Optional Rancher UI (the source design's). Off by default; the bootstrap password is generated
once and kept secret in state.

Its certificate comes from the cluster's issuer like every other ingress host: Rancher's chart
offers ``ingress.tls.source`` rancher (its own self-signed CA through cert-manager), letsEncrypt
(an HTTP-01 Issuer of its own, which a LAN-only lab cannot answer) or secret
(rancher/rancher chart/values.yaml@v2.14.4). ``secret`` is the one that takes ours: a
Certificate writes ``tls-rancher-ingress`` (``ingress.tls.secretName``). With the private CA,
``privateCA: true`` and the CA in ``tls-ca`` (key ``cacerts.pem``) let Rancher and its agents
verify that certificate (chart/values.yaml@v2.14.4 privateCA; Rancher docs "Adding TLS
Secrets")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.k3s.pod_security import with_level
from components.kube.charts import RANCHER, helm_release
from components.kube.ingress import ANNOTATIONS, INGRESS_CLASS, IngressTls, declare_certificate
from components.kube.objects import Manifest, declare, namespace_manifest, secret_manifest

NAMESPACE = "cattle-system"
APP = "rancher"
TLS_SECRET = "tls-rancher-ingress"  # noqa: S105 - the chart's default ingress.tls.secretName
CA_SECRET = "tls-ca"  # noqa: S105 - the Secret name Rancher reads with privateCA


@dataclass(frozen=True)
class RancherArgs:
    hostname: str
    bootstrap_password: pulumi.Input[str]
    tls: IngressTls
    ca_cert_pem: pulumi.Input[str] | None = None
    """The private CA signing the certificate (None: a publicly trusted one)."""
    replicas: int = 3


def render_namespace() -> Manifest:
    return with_level(
        namespace_manifest(NAMESPACE),
        "privileged",
        "Rancher's own namespace, exempt from Pod Security on the API server "
        "(stacks/pod_security.py RANCHER_NAMESPACES)",
    )


def render_ca_secret(ca_cert_pem: pulumi.Input[str]) -> Manifest:
    return secret_manifest(CA_SECRET, NAMESPACE, {"cacerts.pem": ca_cert_pem})


def render_values(hostname: str, replicas: int, private_ca: bool) -> dict[str, Any]:
    """Rancher chart values, the bootstrap password excluded."""
    return {
        "hostname": hostname,
        "replicas": replicas,
        "privateCA": private_ca,
        "ingress": {
            "ingressClassName": INGRESS_CLASS,
            "extraAnnotations": dict(ANNOTATIONS),
            "tls": {"source": "secret", "secretName": TLS_SECRET},
        },
    }


class Rancher(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: RancherArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:Rancher", name, None, opts)
        if args.tls.issuer is None:
            raise ValueError("Rancher takes its certificate from cert-manager: no issuer given")
        namespace = declare(
            f"{name}-namespace", render_namespace(), pulumi.ResourceOptions(parent=self)
        )
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        before_release: list[pulumi.Resource] = [namespace]
        if args.ca_cert_pem is not None:
            before_release.append(
                declare(f"{name}-ca", render_ca_secret(args.ca_cert_pem), in_namespace)
            )
        certificate = declare_certificate(
            f"{name}-certificate",
            app=APP,
            namespace=NAMESPACE,
            hostname=args.hostname,
            tls=args.tls,
            parent=self,
            depends_on=[namespace],
            # The Secret the chart's Ingress names (and Rancher reads) with source "secret".
            secret_name=TLS_SECRET,
        )
        assert certificate is not None
        certificate_values = render_values(
            args.hostname, args.replicas, private_ca=args.ca_cert_pem is not None
        )
        values = pulumi.Output.secret(
            pulumi.Output.from_input(args.bootstrap_password).apply(
                lambda password: {**certificate_values, "bootstrapPassword": password}
            )
        )
        self.release = helm_release(
            f"{name}-release",
            release_name="rancher",
            chart=RANCHER,
            namespace=NAMESPACE,
            values=values,
            create_namespace=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*before_release, certificate]),
        )
        self.register_outputs({"url": f"https://{args.hostname}/"})
