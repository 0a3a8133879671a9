"""Who may use the apps and the GPUs: JupyterHub admins by an immutable claim and HTTPS only,
GPUs only through the device plugin (both clusters), Open WebUI's cookies Secure, no token in
its pod, its admin password only by secret reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from components.aws.cloud_init import render_install_script
from stacks.config.homelab_apps import AuthenticatorSettings
from tests.real_tools import shellcheck
from tests.upstream_data import upstream_dir
from tools.offline import StackRun

RELEASE = "kubernetes:helm.sh/v3:Release"


def _values(run: StackRun, name: str) -> dict[str, Any]:
    values = run.one(RELEASE, name).plain_inputs["values"]
    return json.loads(values) if isinstance(values, str) else values


def test_jupyterhub_is_served_over_https_only(homelab_run: StackRun) -> None:
    ingress = _values(homelab_run, "jupyterhub-release")["ingress"]
    assert ingress["annotations"] == {
        "traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
        "traefik.ingress.kubernetes.io/router.tls": "true",
    }
    upstream = yaml.safe_load(
        (upstream_dir() / "charts" / "jupyterhub-4.4.0" / "values.yaml").read_text()
    )
    assert upstream["ingress"]["annotations"] == {}  # an open map upstream: ours is taken


def test_generic_oauth_admins_are_matched_on_sub_only() -> None:
    base = {
        "kind": "generic-oauth",
        "clientId": "hub",
        "adminUsers": ["0f6c2d4e-admin-sub"],
        "authorizeUrl": "https://idp.example/auth",
        "tokenUrl": "https://idp.example/token",
        "userdataUrl": "https://idp.example/userinfo",
    }
    assert AuthenticatorSettings.model_validate(base).username_claim == "sub"
    for mutable in ("preferred_username", "name", "email"):
        with pytest.raises(ValidationError, match="usernameClaim"):
            AuthenticatorSettings.model_validate({**base, "usernameClaim": mutable})


def test_gpus_only_through_the_device_plugin_on_the_homelab(homelab_run: StackRun) -> None:
    values = _values(homelab_run, "gpu-operator-release")
    toolkit = {e["name"]: e["value"] for e in values["toolkit"]["env"]}
    assert toolkit["ACCEPT_NVIDIA_VISIBLE_DEVICES_ENVVAR_WHEN_UNPRIVILEGED"] == "false"
    assert toolkit["ACCEPT_NVIDIA_VISIBLE_DEVICES_AS_VOLUME_MOUNTS"] == "true"
    plugin = {e["name"]: e["value"] for e in values["devicePlugin"]["env"]}
    assert plugin == {"DEVICE_LIST_STRATEGY": "volume-mounts"}
    upstream = yaml.safe_load(
        (upstream_dir() / "charts" / "gpu-operator-v26.7.0" / "values.yaml").read_text()
    )
    assert upstream["toolkit"]["env"] == [] and upstream["devicePlugin"]["env"] == []  # noqa: PT018


def test_gpus_only_through_the_device_plugin_on_aws(aws_gpu_run: StackRun, tmp_path: Path) -> None:
    values = _values(aws_gpu_run, "nvidia-device-plugin-release")
    assert values["deviceListStrategy"] == "volume-mounts"
    upstream = yaml.safe_load(
        (upstream_dir() / "charts" / "nvidia-device-plugin-0.20.0" / "values.yaml").read_text()
    )
    assert "deviceListStrategy" in upstream
    # The worker's own toolkit (from the AMI) is told the same at every sync.
    script = render_install_script(role="agent", k3s_version="v1.33.5+k3s1")
    for setting in (
        "accept-nvidia-visible-devices-envvar-when-unprivileged=false",
        "accept-nvidia-visible-devices-as-volume-mounts=true",
    ):
        assert f"nvidia-ctk config --in-place --set {setting}" in script
    shellcheck(script, tmp_path, "install-k3s.sh")


def test_open_webui_cookies_secure_no_token_password_by_reference(
    homelab_run: StackRun,
) -> None:
    deployment = homelab_run.one("kubernetes:apps/v1:Deployment", "open-webui-deployment")
    spec = deployment.plain_inputs["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WEBUI_SESSION_COOKIE_SECURE"]["value"] == "True"
    assert env["WEBUI_AUTH_COOKIE_SECURE"]["value"] == "True"
    password = env["WEBUI_ADMIN_PASSWORD"]
    assert "value" not in password
    assert password["valueFrom"]["secretKeyRef"]["key"] == "WEBUI_ADMIN_PASSWORD"
