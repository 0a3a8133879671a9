"""A small Kubernetes API client on the standard library (a few GETs, a POST, a DELETE), and a
plain HTTP GET with a bearer token for gpu-waker; every call has a socket timeout."""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class VerifyError(RuntimeError):
    """A request failed; the message says which and why (status, refusal, timeout)."""


# ---------------------------------------------------------------------------------------------
# Kubernetes API access
# ---------------------------------------------------------------------------------------------


@dataclass
class Kube:
    """The API of one cluster, from its kubeconfig (current context)."""

    server: str
    timeout: float
    headers: dict[str, str] = field(default_factory=dict)
    context: ssl.SSLContext | None = None
    kubeconfig_path: str = ""

    @classmethod
    def from_kubeconfig(cls, text: str, timeout: float, path: str = "") -> Kube:
        config = yaml.safe_load(text)
        current = config.get("current-context")
        contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
        context = contexts.get(current) if current else next(iter(contexts.values()), None)
        if context is None:
            raise VerifyError("kubeconfig has no context")
        cluster = {c["name"]: c["cluster"] for c in config["clusters"]}[context["cluster"]]
        user = {u["name"]: u["user"] for u in config.get("users", [])}.get(context["user"], {})
        kube = cls(server=cluster["server"].rstrip("/"), timeout=timeout, kubeconfig_path=path)
        _http_only(kube.server)
        if kube.server.startswith("https://"):
            kube.context = _tls_context(cluster, user)
        if user.get("token"):
            kube.headers["Authorization"] = f"Bearer {user['token']}"
        return kube

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - http(s) only (from_kubeconfig)
            self.server + path,
            data=data,
            method=method,
            headers={"Accept": "application/json", "Content-Type": "application/json"}
            | self.headers,
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 - http(s) only (from_kubeconfig)
                request, timeout=self.timeout, context=self.context
            ) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            with suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("message", detail)
            raise VerifyError(f"{method} {path}: HTTP {err.code}: {detail.strip()[:200]}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise VerifyError(f"{method} {self.server}{path}: {reason}") from None
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text

    def get(self, path: str) -> Any:
        return self.request("GET", path)


def _http_only(url: str) -> None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise VerifyError(f"{url}: not an http(s) URL")


def _tls_context(cluster: dict[str, Any], user: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        context.load_verify_locations(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
    if user.get("client-certificate-data") and user.get("client-key-data"):
        # ssl loads a client pair from files only: a private temporary folder, removed at once.
        with tempfile.TemporaryDirectory() as folder:
            cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            os.chmod(key, 0o600)
            context.load_cert_chain(cert, key)
    return context


def http_get(url: str, token: str, timeout: float) -> tuple[int, dict[str, str], str]:
    _http_only(url)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as err:
        raise VerifyError(f"GET {url}: {getattr(err, 'reason', err)}") from None
