"""Ollama's names, paths and manifests as tools/models reads them (pure, no AWS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ollama_models import two_models
from tools.models.layout import (
    LayoutError,
    ModelName,
    default_models_dir,
    local_manifest_path,
    parse_manifest,
)

HEX = "ab" * 32


@pytest.mark.parametrize(
    ("text", "relpath", "shown"),
    [
        # Defaults of types/model/name.go DefaultName: registry.ollama.ai, library, latest.
        ("llama3.1:8b", "registry.ollama.ai/library/llama3.1/8b", "llama3.1:8b"),
        ("llama3.1", "registry.ollama.ai/library/llama3.1/latest", "llama3.1:latest"),
        ("team/model:q4", "registry.ollama.ai/team/model/q4", "team/model:q4"),
        (
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF/Q4_K_M",
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        ),
        # A host with a port: the ':' before the last '/' is not a tag.
        ("localhost:5000/ns/model", "localhost:5000/ns/model/latest", None),
        ("https://example.com/ns/model:1", "example.com/ns/model/1", None),
    ],
)
def test_names_map_to_ollamas_manifest_paths(text: str, relpath: str, shown: str | None) -> None:
    name = ModelName.parse(text)
    assert name.relpath == relpath
    assert ModelName.from_relpath(relpath) == name
    if shown is not None:
        assert str(name) == shown


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("my.team/model", "namespace 'my.team'"),
        ("model@sha256:" + HEX, "digest"),
        ("a/b/c/d", "more than host/namespace/model"),
        ("-model", "model '-model'"),
        ("model:-tag", "tag '-tag'"),
        ("model:" + "t" * 81, "tag"),
    ],
)
def test_names_ollama_rejects_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(LayoutError, match="model name") as error:
        ModelName.parse(text)
    assert problem in str(error.value)


def test_manifest_paths_other_than_four_levels_are_not_models() -> None:
    with pytest.raises(LayoutError):
        ModelName.from_relpath("registry.ollama.ai/library/model")


def _manifest(**changes: object) -> bytes:
    document: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": f"sha256:{'0' * 64}", "size": 10},
        "layers": [{"mediaType": "application/vnd.ollama.image.model",
                    "digest": f"sha256:{HEX}", "size": 99, "name": "a/b"}],
    }  # fmt: skip
    document.update(changes)
    return json.dumps(document).encode()


def test_a_manifest_names_its_config_and_layers() -> None:
    manifest = parse_manifest(_manifest(), "m")
    assert [(b.filename, b.size) for b in manifest.blobs] == [
        (f"sha256-{'0' * 64}", 10),
        (f"sha256-{HEX}", 99),
    ]
    assert manifest.size == 109


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        # Uppercase hex, a path in the digest (CVE-2024-37032 was a digest with a path in it).
        ({"layers": [{"digest": f"sha256:{HEX.upper()}", "size": 1}]}, "digest"),
        ({"layers": [{"digest": "sha256:../../../etc/passwd", "size": 1}]}, "digest"),
        ({"layers": [{"digest": f"sha256:{HEX}", "size": -1}]}, "size"),
        ({"layers": [{"digest": f"sha256:{HEX}", "size": "1"}]}, "size"),
        ({"layers": "none"}, "no 'layers' list"),
        (
            {
                "layers": [
                    {"digest": f"sha256:{HEX}", "size": 1},
                    {"digest": f"sha256:{HEX}", "size": 2},
                ]
            },
            "sizes 1 and 2",
        ),
    ],
)
def test_manifests_ollama_would_not_write_are_refused(
    changes: dict[str, object], problem: str
) -> None:
    with pytest.raises(LayoutError, match="manifest m") as error:
        parse_manifest(_manifest(**changes), "m")
    assert problem in str(error.value)


def test_not_json_is_refused() -> None:
    with pytest.raises(LayoutError, match="not JSON"):
        parse_manifest(b"\x00garbage", "m")


def test_the_models_dir_follows_ollama_models(tmp_path: Path) -> None:
    assert default_models_dir({"OLLAMA_MODELS": str(tmp_path)}) == tmp_path
    assert default_models_dir({}) == Path.home() / ".ollama" / "models"


def test_the_synthetic_tree_is_what_the_layout_reads(tmp_path: Path) -> None:
    tiny, _ = two_models(tmp_path)
    path = local_manifest_path(tmp_path, ModelName.parse("tiny:1b"))
    manifest = parse_manifest(path.read_bytes(), str(path))
    assert {blob.filename for blob in manifest.blobs} == set(tiny.blobs)
    for blob in manifest.blobs:
        assert (tmp_path / "blobs" / blob.filename).stat().st_size == blob.size
