"""Secrets that reach a command or a Kubernetes Secret are Pulumi secrets.

A plain value is written to the state file unencrypted, shown in the preview diff and in the
PR comment of the preview workflow. Which values are secrets:

* everything in a Kubernetes Secret's ``data``/``stringData`` (by definition);
* a command's SSH credentials (``connection.privateKey``/``password``, also of the proxy);
* a command's environment variable or Helm value whose name says secret (``*_TOKEN``,
  ``*PASSWORD``, ``client_secret``, ``KUBECONFIG``, ...), and any environment value or stdin
  whose content is key material (a PEM private key, a kubeconfig client key, ``NAME_TOKEN=...``).

The engine sends secret markers to the pack (analyzer_plugin.go ``KeepSecrets: true``) and the
pack keeps them (``pack.keep_secret_markers``), so "is a Pulumi secret" is read, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from hybridgpu_policy.resources import Resource
from hybridgpu_policy.values import get, is_secret, is_unknown, plain, walk

COMMANDS = frozenset({"command:remote:Command", "command:local:Command"})
KUBE_SECRETS = frozenset({"kubernetes:core/v1:Secret", "kubernetes:core/v1:SecretPatch"})
HELM_RELEASES = frozenset({"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"})
CONNECTION_SECRETS = (
    "privateKey",
    "password",
    "privateKeyPassword",
    "proxy.privateKey",
    "proxy.password",
    "proxy.privateKeyPassword",
)
# A name that holds a secret, compared lower-case without separators ("K3S_TOKEN" -> "k3stoken").
SECRET_NAME = re.compile(
    r"(^secret|password|passwd|passphrase|token|apikey|privatekey|secretkey|secretaccesskey|"
    r"clientsecret|credential|credentials|kubeconfig|clientkey|clientkeydata)$"
)
# An environment variable ending in SECRET holds one (DB_SECRET); a Helm value usually names the
# Kubernetes Secret to read (tlsSecret, passwordSecret), so only the list above counts there.
ENV_SECRET_NAME = re.compile(r"secret$")
# ... and never a name of where a secret is kept ("existingSecret: my-secret", "secretName").
SECRET_REFERENCE = re.compile(r"^(existing|use|create|auto|enable)|(ref|name|file|path|enabled)$")
SECRET_CONTENT = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
    r"|client-key-data:\s*\S"
    r"|^\s*(?:export\s+)?[A-Za-z0-9_]*(?:PASSWORD|TOKEN|SECRET)[A-Za-z0-9_]*=[^\s$]",
    re.MULTILINE,
)


def names_a_secret(key: str, *, environment: bool = False) -> bool:
    normalized = re.sub(r"[^a-z0-9]", "", key.lower())
    if SECRET_REFERENCE.search(normalized):
        return False
    return bool(
        SECRET_NAME.search(normalized) or (environment and ENV_SECRET_NAME.search(normalized))
    )


def looks_like_key_material(value: Any) -> bool:
    return isinstance(value, str) and bool(SECRET_CONTENT.search(value))


def _exposed(value: Any) -> bool:
    """A value that is present, known and not a Pulumi secret."""
    return value is not None and value != "" and not is_secret(value) and not is_unknown(value)


FIX = "Fix: pass it as a Pulumi secret (config.require_secret, pulumi.Output.secret(...))."


def _command_violations(resource: Resource) -> Iterator[str]:
    connection = get(resource.props, "connection")
    if connection is not None and not is_secret(connection):
        for path in CONNECTION_SECRETS:
            if _exposed(get(connection, path)):
                yield f"{resource.label}: connection.{path} is plain text. {FIX}"
    environment = get(resource.props, "environment")
    if isinstance(environment, Mapping) and not is_secret(environment):
        for name, value in sorted(plain(environment).items()):
            if not _exposed(environment.get(name)):
                continue
            if names_a_secret(name, environment=True) or looks_like_key_material(value):
                yield (
                    f"{resource.label}: environment variable {name} carries a secret as plain "
                    f"text (state file, preview diff). {FIX}"
                )
    stdin = get(resource.props, "stdin")
    if _exposed(stdin) and looks_like_key_material(stdin):
        yield f"{resource.label}: stdin carries key material as plain text. {FIX}"


def _kube_secret_violations(resource: Resource) -> Iterator[str]:
    for field in ("data", "stringData"):
        entries = get(resource.props, field)
        if entries is None or is_secret(entries) or is_unknown(entries):
            continue
        for key, value in sorted(entries.items()) if isinstance(entries, Mapping) else ():
            if _exposed(value):
                yield (
                    f"{resource.label}: {field}.{key} of a Kubernetes Secret is plain text in "
                    f"the Pulumi state. {FIX}"
                )


def _helm_value_violations(resource: Resource) -> Iterator[str]:
    for path, value, secret in walk(get(resource.props, "values")):
        key = path.rsplit(".", 1)[-1]
        if secret or not isinstance(value, str) or not value or is_unknown(value):
            continue
        if "[" not in key and names_a_secret(key):
            yield (
                f"{resource.label}: Helm value {path} carries a secret as plain text (the "
                f"chart puts it in a Kubernetes Secret; Pulumi keeps it in state). {FIX}"
            )


def secrets_are_pulumi_secrets(resource: Resource, _config: Mapping[str, Any]) -> Iterator[str]:
    if resource.type in COMMANDS:
        yield from _command_violations(resource)
    elif resource.type in KUBE_SECRETS:
        yield from _kube_secret_violations(resource)
    elif resource.type in HELM_RELEASES:
        yield from _helm_value_violations(resource)
