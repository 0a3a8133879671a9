"""Ollama's models directory, as Ollama v0.32.15 (the image pinned in components/kube/charts.py)
lays it out and reads it. Pure: no AWS here.

- A model ``host/namespace/model:tag`` has its manifest at
  ``manifests/<host>/<namespace>/<model>/<tag>`` (``types/model/name.go`` ``Name.Filepath``;
  ``manifest/manifest.go`` ``Manifests`` globs exactly those four levels), with defaults
  ``registry.ollama.ai``, ``library`` and ``latest`` (``DefaultName``), so ``llama3.1:8b`` is
  ``manifests/registry.ollama.ai/library/llama3.1/8b``.
- Each blob is ``blobs/sha256-<hex>``: the digest ``sha256:<hex>`` with ``:`` replaced by ``-``
  (``manifest/paths.go`` ``BlobsPath``, which accepts only ``sha256[:-]`` + 64 hex digits).
- A manifest is JSON ``{schemaVersion, mediaType, config: Layer, layers: [Layer]}`` with
  ``Layer = {mediaType, digest, size, from?, name?}`` (``manifest/manifest.go``,
  ``manifest/layer.go``); the model's blobs are the config's and every layer's digests.
- The models directory is ``$OLLAMA_MODELS``, else ``$HOME/.ollama/models``
  (``envconfig/config.go`` ``Models``).

All paths: https://github.com/ollama/ollama/tree/v0.32.15
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MANIFESTS_DIR = "manifests"
BLOBS_DIR = "blobs"
# Ollama itself writes lowercase hex (fmt "%x"); anything else is refused rather than guessed.
DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
BLOB_NAME = re.compile(r"^sha256-([0-9a-f]{64})$")
HASH_CHUNK = 8 * 1024 * 1024

# types/model/name.go isValidPart/isValidLen: first character alphanumeric or '_', then
# alphanumerics, '_', '-', '.' (not in a namespace) and ':' (host only); 1-80 characters
# (host 1-350).
_PART = {
    "host": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}$"),
    "namespace": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$"),
    "model": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$"),
    "tag": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$"),
}


class LayoutError(ValueError):
    """A name, manifest or blob that is not what Ollama writes."""


@dataclass(frozen=True, order=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """``[host/][namespace/]model[:tag]`` with Ollama's defaults (``ParseName``)."""
        rest = text.strip().split("://", 1)[-1]
        if "@" in rest:
            raise LayoutError(f"model name '{text}': a digest (@sha256:...) is not supported")
        tag = ""
        if rest.rfind(":") > rest.rfind("/"):
            rest, tag = rest.rsplit(":", 1)
        parts = rest.split("/")
        if len(parts) > 3:
            raise LayoutError(f"model name '{text}' has more than host/namespace/model")
        *prefix, model = parts
        namespace = prefix[-1] if prefix else DEFAULT_NAMESPACE
        host = prefix[0] if len(prefix) == 2 else DEFAULT_HOST
        return cls._valid(cls(host, namespace, model, tag or DEFAULT_TAG), text)

    @classmethod
    def from_relpath(cls, relpath: str) -> ModelName:
        """The name of a manifest at ``manifests/<relpath>`` (``ParseNameFromFilepath``)."""
        parts = relpath.split("/")
        if len(parts) != 4:
            raise LayoutError(f"'{relpath}' is not <host>/<namespace>/<model>/<tag>")
        return cls._valid(cls(*parts), relpath)

    @classmethod
    def _valid(cls, name: ModelName, text: str) -> ModelName:
        for part, pattern in _PART.items():
            value = getattr(name, part)
            if not pattern.match(value):
                raise LayoutError(
                    f"model name '{text}': {part} '{value}' is not valid for Ollama "
                    f"(letters, digits, '_', '-'{'' if part == 'namespace' else ', ' + repr('.')}; "
                    "starting with a letter, digit or '_')"
                )
        return name

    @property
    def relpath(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}/{self.tag}"

    def __str__(self) -> str:
        """The shortest form Ollama shows (``ollama list``): defaults left out."""
        if self.host == DEFAULT_HOST and self.namespace == DEFAULT_NAMESPACE:
            return f"{self.model}:{self.tag}"
        if self.host == DEFAULT_HOST:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"


@dataclass(frozen=True)
class Blob:
    digest: str
    """``sha256:<hex>``."""
    size: int

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    @property
    def filename(self) -> str:
        return blob_filename(self.digest)


def blob_filename(digest: str) -> str:
    match = DIGEST.match(digest)
    if match is None:
        raise LayoutError(f"'{digest}' is not a sha256 digest (sha256:<64 lowercase hex>)")
    return f"sha256-{match.group(1)}"


def digest_of_filename(filename: str) -> str | None:
    match = BLOB_NAME.match(filename)
    return f"sha256:{match.group(1)}" if match else None


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    """The bytes as stored: published unchanged, so Ollama reads exactly what it wrote."""
    blobs: tuple[Blob, ...]
    """Config first, then the layers, each digest once."""

    @property
    def size(self) -> int:
        return sum(blob.size for blob in self.blobs)

    @property
    def digests(self) -> frozenset[str]:
        return frozenset(blob.digest for blob in self.blobs)


def _layer(value: Any, where: str) -> Blob | None:
    if not isinstance(value, Mapping):
        raise LayoutError(f"{where} is not an object")
    digest, size = value.get("digest", ""), value.get("size")
    if digest == "":
        # Ollama skips layers without a digest (manifest.go RemoveLayers).
        return None
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise LayoutError(f"{where}.digest {digest!r} is not sha256:<64 lowercase hex>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LayoutError(f"{where}.size {size!r} is not a byte count")
    return Blob(digest, size)


def parse_manifest(raw: bytes, source: str) -> Manifest:
    """The blobs a manifest references; a :class:`LayoutError` naming ``source`` otherwise."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LayoutError(f"manifest {source} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise LayoutError(f"manifest {source} is not a JSON object")
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise LayoutError(f"manifest {source} has no 'layers' list")
    found: dict[str, Blob] = {}
    entries = [("config", document.get("config", {}))]
    entries += [(f"layers[{i}]", layer) for i, layer in enumerate(layers)]
    for where, value in entries:
        blob = _layer(value, f"manifest {source}: {where}")
        if blob is None:
            continue
        known = found.setdefault(blob.digest, blob)
        if known.size != blob.size:
            raise LayoutError(
                f"manifest {source}: {blob.digest} is listed with sizes {known.size} and "
                f"{blob.size}"
            )
    if not found:
        raise LayoutError(f"manifest {source} references no blob")
    return Manifest(raw=raw, blobs=tuple(found.values()))


def default_models_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the local Ollama keeps its models (``envconfig.Models``)."""
    environ = os.environ if environ is None else environ
    configured = environ.get("OLLAMA_MODELS", "")
    return Path(configured) if configured else Path.home() / ".ollama" / "models"


def local_manifest_path(models_dir: Path, name: ModelName) -> Path:
    return models_dir / MANIFESTS_DIR / Path(*name.relpath.split("/"))


def local_blob_path(models_dir: Path, blob: Blob) -> Path:
    return models_dir / BLOBS_DIR / blob.filename


def sha256_of(
    chunks: Iterator[bytes] | Callable[[], Iterator[bytes]],
    progress: Callable[[int], object] | None = None,
) -> str:
    """Hex SHA-256 of a stream of chunks, reporting each chunk's length."""
    digest = hashlib.sha256()
    for chunk in chunks() if callable(chunks) else chunks:
        digest.update(chunk)
        if progress is not None:
            progress(len(chunk))
    return digest.hexdigest()


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            yield chunk
