"""How every web app is exposed: one Ingress shape on k3s's Traefik (HTTPS only) and where its
certificate comes from, shared by the manifests the program declares (Open WebUI) and the
ingress values of the charts it installs (Grafana, JupyterHub).

A host's certificate comes from cert-manager as a ``Certificate`` object (not the
``cert-manager.io/cluster-issuer`` ingress annotation): the object is declared by the program,
so it shows in the plan and validates against cert-manager's CRD, and it works the same for
Ingresses a chart renders, whose annotations the program would otherwise have to thread through
each chart's values. A manual ``tlsSecret`` overrides it: that secret is used and no Certificate
is made for the host."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.kube.objects import Manifest, declare

INGRESS_CLASS = "traefik"
# HTTPS only: Traefik's websecure entry point, TLS on the router (traefik/traefik@v3.3
# docs/content/routing/providers/kubernetes-ingress.md, router.entrypoints / router.tls).
ANNOTATIONS: Mapping[str, str] = {
    "traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
    "traefik.ingress.kubernetes.io/router.tls": "true",
}
CERTIFICATE_API = "cert-manager.io/v1"


@dataclass(frozen=True)
class IngressTls:
    """Where the certificates of the cluster's ingress hosts come from."""

    issuer: str | None
    """cert-manager ClusterIssuer signing them; None: no cert-manager (Traefik's default
    certificate unless a host has a manual secret)."""
    ready: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """What a Certificate waits for: cert-manager's CRDs and the issuer."""


def tls_secret_name(app: str, tls: IngressTls | None, manual_secret: str | None) -> str | None:
    """The Secret an app's Ingress serves: the manual one when set, else the one cert-manager
    writes for it (``<app>-tls``), else none."""
    if manual_secret is not None:
        return manual_secret
    if tls is None or tls.issuer is None:
        return None
    return f"{app}-tls"


def ingress_tls(hostname: str, secret_name: str | None) -> list[dict[str, Any]]:
    """An Ingress's ``spec.tls`` (also the charts' ``ingress.tls``)."""
    return [] if secret_name is None else [{"hosts": [hostname], "secretName": secret_name}]


def chart_ingress_values(hostname: str, secret_name: str | None) -> dict[str, Any]:
    """The ``ingress`` values the charts share (kube-prometheus-stack 88.5.3 grafana.ingress,
    jupyterhub 4.4.0 ingress: enabled, ingressClassName, annotations, hosts, tls)."""
    values: dict[str, Any] = {
        "enabled": True,
        "ingressClassName": INGRESS_CLASS,
        "annotations": dict(ANNOTATIONS),
        "hosts": [hostname],
    }
    tls = ingress_tls(hostname, secret_name)
    if tls:
        values["tls"] = tls
    return values


def render_ingress(
    app: str, namespace: str, hostname: str, port_name: str, secret_name: str | None
) -> Manifest:
    """An Ingress sending every path of ``hostname`` to the Service ``app``'s named port."""
    spec: dict[str, Any] = {
        "ingressClassName": INGRESS_CLASS,
        "rules": [
            {
                "host": hostname,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": app, "port": {"name": port_name}}},
                        }
                    ]
                },
            }
        ],
    }
    tls = ingress_tls(hostname, secret_name)
    if tls:
        spec["tls"] = tls
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": app, "namespace": namespace, "annotations": dict(ANNOTATIONS)},
        "spec": spec,
    }


def render_certificate(
    app: str, namespace: str, hostname: str, secret_name: str, issuer: str
) -> Manifest:
    """A cert-manager Certificate for one host (cert-manager/cert-manager
    deploy/crds/cert-manager.io_certificates.yaml@v1.19.1: spec.secretName and spec.issuerRef
    required; dnsNames; issuerRef.kind ClusterIssuer, group cert-manager.io). Renewal is
    cert-manager's: by default 2/3 through the certificate's life (spec.renewBefore unset)."""
    return {
        "apiVersion": CERTIFICATE_API,
        "kind": "Certificate",
        "metadata": {"name": app, "namespace": namespace},
        "spec": {
            "secretName": secret_name,
            "dnsNames": [hostname],
            "issuerRef": {"name": issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
            # A new key at every renewal (the CRD's default since v1.18 is Always; stated so
            # the plan says it).
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        },
    }


def declare_certificate(
    name: str,
    *,
    app: str,
    namespace: str,
    hostname: str,
    tls: IngressTls | None,
    parent: pulumi.Resource,
    manual_secret: str | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    secret_name: str | None = None,
) -> pulumi.Resource | None:
    """The host's Certificate, unless a manual secret overrides it or there is no issuer.
    ``secret_name``: where a chart expects it, instead of ``<app>-tls``."""
    if manual_secret is not None or tls is None or tls.issuer is None:
        return None
    secret = secret_name or tls_secret_name(app, tls, None)
    assert secret is not None
    return declare(
        name,
        render_certificate(app, namespace, hostname, secret, tls.issuer),
        pulumi.ResourceOptions(parent=parent, depends_on=[*tls.ready, *depends_on]),
    )
