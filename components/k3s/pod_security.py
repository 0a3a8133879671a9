"""Pod Security admission of both clusters (pure): the API server's AdmissionConfiguration
(``templates/pod-security-admission.yaml``) with ``restricted`` as every namespace's default and
named exemptions, and the labels of the namespaces the program declares.

Levels and labels: https://kubernetes.io/docs/concepts/security/pod-security-admission/. An
exemption skips a namespace entirely, so only namespaces whose pods need the host are exempt,
each with its reason (stacks/pod_security.py). A namespace label overrides the default level
for that namespace; the program sets one on every namespace it declares, and a level below
``restricted`` only with a reason (:func:`with_level`), while warnings and audit stay at
``restricted`` so what the lower level admits stays visible.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from components.base.templates import render

PSA_CONFIG_PATH = "/var/lib/rancher/k3s/server/psa.yaml"
"""Where k3s's hardening guide keeps it (https://docs.k3s.io/security/hardening-guide)."""
LEVELS = ("privileged", "baseline", "restricted")
Level = Literal["privileged", "baseline", "restricted"]
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
REASON_ANNOTATION = "hybridgpu.io/pod-security-reason"

SYSTEM_EXEMPTIONS: Mapping[str, str] = {
    "kube-system": (
        "k3s's own components (CoreDNS, metrics-server, local-path-provisioner's hostPath helper "
        "pods, svclb, helm-install jobs) and CSI node plugins"
    ),
}


def apiserver_arg() -> str:
    """The ``kube-apiserver-arg`` entry of a k3s server's config.yaml."""
    return f"admission-control-config-file={PSA_CONFIG_PATH}"


def render_admission_config(exemptions: Mapping[str, str], owner: str) -> str:
    """The AdmissionConfiguration: ``restricted`` by default, ``exemptions`` (namespace ->
    reason, every reason non-empty) exempt. ``owner`` names where the reasons live."""
    for namespace, reason in exemptions.items():
        if not reason.strip():
            raise ValueError(f"exempt namespace '{namespace}' needs a reason")
    return render(
        __file__,
        "pod-security-admission.yaml",
        {
            "EXEMPT_NAMESPACES": json.dumps(sorted(exemptions)),
            "CONFIG_OWNER": owner,
        },
    )


def namespace_labels(level: Level = "restricted") -> dict[str, str]:
    """Pod Security labels of a namespace the program declares: enforced at ``level``, with
    warnings and audit annotations at ``restricted`` so what a lower level admits stays visible."""
    if level not in LEVELS:
        raise ValueError(f"pod security level '{level}' is not one of {LEVELS}")
    return {
        ENFORCE_LABEL: level,
        f"{ENFORCE_LABEL}-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }


def with_level(namespace: dict[str, Any], level: Level, reason: str = "") -> dict[str, Any]:
    """``namespace`` (a Namespace manifest) labelled with ``level``; below ``restricted`` the
    reason is required and kept as an annotation."""
    if level != "restricted" and not reason.strip():
        raise ValueError(f"namespace '{namespace['metadata']['name']}' at '{level}' needs a reason")
    metadata = dict(namespace["metadata"])
    metadata["labels"] = {**metadata.get("labels", {}), **namespace_labels(level)}
    if level != "restricted":
        metadata["annotations"] = {**metadata.get("annotations", {}), REASON_ANNOTATION: reason}
    return {**namespace, "metadata": metadata}
