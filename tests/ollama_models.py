"""Synthetic Ollama models directories, laid out as Ollama v0.32.15 writes them: blobs named
``sha256-<hex>`` of their content, manifests as Go's ``json.Encoder`` writes them (compact,
newline-terminated; manifest/manifest.go ``WriteManifest``) under
``manifests/<host>/<namespace>/<model>/<tag>``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
LICENSE_MEDIA_TYPE = "application/vnd.ollama.image.license"
TEMPLATE_MEDIA_TYPE = "application/vnd.ollama.image.template"


def digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def blob_name(content: bytes) -> str:
    return digest(content).replace(":", "-")


@dataclass(frozen=True)
class LocalModel:
    relpath: str
    """<host>/<namespace>/<model>/<tag>"""
    manifest: bytes
    blobs: dict[str, bytes]
    """Blob file name -> content."""


def write_model(
    models_dir: Path,
    relpath: str,
    *,
    weights: bytes,
    config: bytes,
    extra_layers: tuple[tuple[str, bytes], ...] = (),
) -> LocalModel:
    """A model whose config and layers are real files; returns what was written."""
    layers = [(MODEL_MEDIA_TYPE, weights), *extra_layers]
    blobs = {blob_name(content): content for _, content in [(CONFIG_MEDIA_TYPE, config), *layers]}
    for name, content in blobs.items():
        path = models_dir / "blobs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": digest(config), "size": len(config)},
        "layers": [
            {"mediaType": media, "digest": digest(content), "size": len(content)}
            for media, content in layers
        ],
    }
    raw = (json.dumps(manifest, separators=(",", ":")) + "\n").encode()
    path = models_dir / "manifests" / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return LocalModel(relpath=relpath, manifest=raw, blobs=blobs)


# Shared by the two models below, as Ollama's license and template layers often are.
LICENSE = b"Synthetic model license, shared by both test models.\n"
TEMPLATE = b"{{ .System }} {{ .Prompt }}"


def two_models(models_dir: Path, big_weights: int = 0) -> tuple[LocalModel, LocalModel]:
    """``tiny:1b`` (weights of ``big_weights`` bytes if given) and ``team/other:2b``, sharing
    their license and template blobs."""
    shared = ((LICENSE_MEDIA_TYPE, LICENSE), (TEMPLATE_MEDIA_TYPE, TEMPLATE))
    weights = bytes(range(256)) * (big_weights // 256) if big_weights else b"GGUF tiny weights"
    tiny = write_model(
        models_dir,
        "registry.ollama.ai/library/tiny/1b",
        weights=weights,
        config=b'{"model_format":"gguf","model_family":"tiny"}',
        extra_layers=shared,
    )
    other = write_model(
        models_dir,
        "registry.ollama.ai/team/other/2b",
        weights=b"GGUF other weights",
        config=b'{"model_format":"gguf","model_family":"other"}',
        extra_layers=shared,
    )
    return tiny, other
