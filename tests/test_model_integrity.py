"""The GPU-side model integrity check: verify_models.sh, run by busybox sh (the shell of the
pinned busybox image) on synthetic Ollama trees, good and tampered; and its wiring as the Ollama
Deployment's init container, run from the command the homelab stack records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.federation.ollama import MODELS_PATH, VERIFY_MODELS_SCRIPT
from components.kube.charts import BUSYBOX_IMAGE
from tests.ollama_models import LocalModel, blob_name, two_models
from tests.real_tools import require, run
from tools.offline import StackRun


def verify(models: Path, command: list[str] | None = None) -> Any:
    """Runs the check as the init container does: ``sh -c <script> verify-models <dir>``."""
    command = command or ["/bin/sh", "-c", VERIFY_MODELS_SCRIPT.read_text(), "verify-models"]
    assert command[:2] == ["/bin/sh", "-c"]
    return run(require("busybox"), "sh", "-c", *command[2:], models, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, LocalModel, LocalModel]:
    models = tmp_path / "models"
    tiny, other = two_models(models)
    return models, tiny, other


def test_the_script_is_shellcheck_clean() -> None:
    result = run(
        require("shellcheck"), "--shell=sh", "--severity=style", VERIFY_MODELS_SCRIPT, check=False
    )
    assert result.returncode == 0, result.stdout


def test_a_good_tree_passes(tree: tuple[Path, LocalModel, LocalModel]) -> None:
    models, tiny, other = tree
    result = verify(models)
    assert result.returncode == 0, result.stderr
    blobs = len(set(tiny.blobs) | set(other.blobs))
    assert result.stdout.strip() == (
        f"verify-models: {blobs} blobs and 2 manifests in {models} verified"
    )


def test_an_empty_tree_passes(tmp_path: Path) -> None:
    result = verify(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "0 blobs and 0 manifests" in result.stdout


def test_a_tampered_blob_fails_naming_it(tree: tuple[Path, LocalModel, LocalModel]) -> None:
    models, tiny, _ = tree
    weights = models / "blobs" / list(tiny.blobs)[1]
    content = bytearray(weights.read_bytes())
    content[-1] ^= 0x01  # same size: only the hash tells
    weights.write_bytes(bytes(content))

    result = verify(models)

    assert result.returncode == 1
    (bad,) = [line for line in result.stderr.splitlines() if " BAD " in line]
    assert bad.startswith(f"verify-models: BAD {weights}: content hashes to ")
    assert bad.endswith("not to its name")


def test_a_missing_or_resized_blob_fails_naming_the_manifest(
    tree: tuple[Path, LocalModel, LocalModel],
) -> None:
    models, tiny, other = tree
    (models / "blobs" / list(tiny.blobs)[1]).unlink()
    template = next(name for name in other.blobs if name in tiny.blobs)
    (models / "blobs" / template).write_bytes(b"")  # also fails its hash

    result = verify(models)

    assert result.returncode == 1
    tiny_manifest = models / "manifests" / tiny.relpath
    other_manifest = models / "manifests" / other.relpath
    errors = result.stderr
    assert f"{tiny_manifest}: blob {list(tiny.blobs)[1]} is missing" in errors
    size = len(other.blobs[template])
    assert f"{other_manifest}: blob {template} has 0 bytes, the manifest says {size}" in errors
    assert f"{models}/blobs/{template}: content hashes to" in errors


@pytest.mark.parametrize(
    ("digest", "problem"),
    [
        ("sha256:../../../../etc/passwd", "is not sha256:<64 lowercase hex>"),
        ("sha256:" + "AB" * 32, "is not sha256:<64 lowercase hex>"),
        ("md5:" + "ab" * 16, "is not sha256:<64 lowercase hex>"),
    ],
)
def test_a_manifest_with_a_bad_digest_fails(tmp_path: Path, digest: str, problem: str) -> None:
    manifest = tmp_path / "manifests" / "registry.ollama.ai" / "library" / "evil" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"config": {"digest": digest, "size": 1}, "layers": []}))
    result = verify(tmp_path)
    assert result.returncode == 1
    assert f"{manifest}: digest '{digest}' {problem}" in result.stderr


def test_a_registry_formatted_manifest_is_read(tmp_path: Path) -> None:
    """Pulled manifests are stored as the registry sent them (server/images.go writes the bytes
    unchanged): indentation and key order must not matter."""
    weights = b"weights"
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / blob_name(weights)).write_bytes(weights)
    missing = "sha256:" + "cd" * 32
    document = {
        "layers": [
            {"size": len(weights), "digest": "sha256:" + blob_name(weights)[7:], "mediaType": "m"},
            {"size": 5, "mediaType": "m", "digest": missing},
        ],
        "config": {"digest": "", "size": 0},
        "schemaVersion": 2,
    }
    manifest = tmp_path / "manifests" / "hf.co" / "someone" / "model" / "q4"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps(document, indent=4))

    result = verify(tmp_path)

    assert result.returncode == 1
    assert result.stderr.count(" BAD ") == 1
    assert f"blob sha256-{'cd' * 32} is missing" in result.stderr


@pytest.mark.parametrize(
    "stray",
    [
        "blobs/sha256-" + "ab" * 32 + "-partial",  # an interrupted `ollama pull`
        "blobs/notes.txt",
        "manifests/registry.ollama.ai/library/model",  # a manifest one level too high
    ],
)
def test_anything_else_in_the_tree_fails(tmp_path: Path, stray: str) -> None:
    path = tmp_path / stray
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    result = verify(tmp_path)
    assert result.returncode == 1
    assert f"BAD {path}: " in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert verify(tmp_path / "absent").returncode == 2


# --- the init container of the Ollama Deployment, as the homelab stack records it -------------


def _pod(homelab_run: StackRun) -> dict[str, Any]:
    deployment = homelab_run.one("kubernetes:apps/v1:Deployment", "ollama-deployment")
    return deployment.plain_inputs["spec"]["template"]["spec"]


def test_ollama_starts_after_the_check_as_an_unprivileged_read_only_init_container(
    homelab_run: StackRun,
) -> None:
    pod = _pod(homelab_run)
    (init,) = pod["initContainers"]
    assert init["image"] == BUSYBOX_IMAGE
    assert init["args"] == [MODELS_PATH]
    context = init["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] != 0
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(init["resources"]["limits"]) == {"cpu", "memory"}
    # The same models volume as Ollama, read-only; readable through the pod's fsGroup.
    (mount,) = init["volumeMounts"]
    (ollama,) = pod["containers"]
    ollama_mount = next(m for m in ollama["volumeMounts"] if m["name"] == "models")
    assert mount == ollama_mount == {"name": "models", "mountPath": MODELS_PATH, "readOnly": True}
    assert pod["securityContext"]["fsGroup"] == context["runAsGroup"]


def test_the_recorded_init_command_refuses_a_tampered_tree(
    homelab_run: StackRun, tree: tuple[Path, LocalModel, LocalModel]
) -> None:
    (init,) = _pod(homelab_run)["initContainers"]
    models, tiny, _ = tree
    assert verify(models, init["command"]).returncode == 0
    blob = models / "blobs" / next(iter(tiny.blobs))
    blob.write_bytes(blob.read_bytes().upper())
    failed = verify(models, init["command"])
    assert failed.returncode == 1
    assert f"BAD {blob}: content hashes to" in failed.stderr
