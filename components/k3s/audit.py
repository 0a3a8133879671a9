"""API audit logging of both k3s clusters (pure): the audit policy (``templates/
audit-policy.yaml``) and the kube-apiserver arguments that enable it, as k3s's hardening guide
sets them (k3s-io/docs docs/security/hardening-guide.md, "API Server audit configuration": a
policy file, ``audit-log-path`` under ``/var/lib/rancher/k3s/server/logs``, 30 days, 10 files,
100 MB each). kube-apiserver rotates the log itself (``audit-log-max*``,
https://kubernetes.io/docs/tasks/debug/cluster-debugging/audit/#log-backend)."""

from __future__ import annotations

from components.base.templates import read_template

AUDIT_POLICY_PATH = "/etc/rancher/k3s/audit-policy.yaml"
"""Beside config.yaml; read by kube-apiserver at start (a change needs a k3s restart)."""
AUDIT_LOG_PATH = "/var/lib/rancher/k3s/server/logs/audit.log"
AUDIT_LOG_MAX_AGE_DAYS = 30
AUDIT_LOG_MAX_BACKUPS = 10
AUDIT_LOG_MAX_SIZE_MB = 100


def render_audit_policy() -> str:
    return read_template(__file__, "audit-policy.yaml")


def audit_apiserver_args() -> list[str]:
    """``kube-apiserver-arg`` entries of a server's config.yaml."""
    return [
        f"audit-policy-file={AUDIT_POLICY_PATH}",
        f"audit-log-path={AUDIT_LOG_PATH}",
        f"audit-log-maxage={AUDIT_LOG_MAX_AGE_DAYS}",
        f"audit-log-maxbackup={AUDIT_LOG_MAX_BACKUPS}",
        f"audit-log-maxsize={AUDIT_LOG_MAX_SIZE_MB}",
    ]
