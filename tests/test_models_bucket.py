"""``./dev models`` against a real moto server on loopback, with synthetic Ollama models
directories: what reaches the bucket, in which order, and what a reader sees meanwhile."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from tests.moto_server import MotoServer
from tests.ollama_models import (
    LICENSE,
    LICENSE_MEDIA_TYPE,
    TEMPLATE,
    TEMPLATE_MEDIA_TYPE,
    blob_name,
    two_models,
    write_model,
)
from tools.models.bucket import ModelBucket
from tools.models.commands import CommandError, Console, list_models, push, remove, verify
from tools.models.layout import ModelName

PREFIX = "ollama/"
MIB = 1024 * 1024
# S3's smallest part is 5 MiB: a 12 MiB blob goes up in three parts.
SMALL_PARTS = TransferConfig(
    multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=2
)
WRITES = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}
TINY = ModelName.parse("tiny:1b")
OTHER = ModelName.parse("team/other:2b")
_bucket_numbers = itertools.count()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def bucket(moto: MotoServer) -> ModelBucket:
    name = f"models-{next(_bucket_numbers)}"
    moto.create_bucket(name)
    # A client of its own: the Recorder registers event handlers on it.
    return ModelBucket(moto.new_client("s3"), name, PREFIX, transfer=SMALL_PARTS)


class Recorder:
    """Every S3 request the client makes, as (operation, key), in order; at the manifest write,
    what an independent reader could list in the bucket."""

    def __init__(self, bucket: ModelBucket, reader: Any) -> None:
        self.bucket = bucket
        self.reader = reader
        self.calls: list[tuple[str, str | None]] = []
        self.seen_at_manifest_write: dict[str, int] | None = None
        self.fail_on: tuple[str, int] | None = None
        bucket.client.meta.events.register("before-parameter-build.s3", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        key = params.get("Key")
        self.calls.append((model.name, key))
        if model.name == "PutObject" and key and "/manifests/" in f"/{key}":
            listing = self.reader.list_objects_v2(Bucket=self.bucket.bucket, Prefix=PREFIX)
            self.seen_at_manifest_write = {o["Key"]: o["Size"] for o in listing["Contents"]}
        if self.fail_on is not None:
            operation, nth = self.fail_on
            count = sum(1 for name, _ in self.calls if name == operation)
            if model.name == operation and count == nth:
                raise ConnectionError(f"injected failure at {operation} #{nth}")

    def writes(self) -> list[tuple[str, str | None]]:
        return [(name, key) for name, key in self.calls if name in WRITES]


def _keys(moto: MotoServer, bucket: ModelBucket) -> dict[str, int]:
    listing = moto.client("s3").list_objects_v2(Bucket=bucket.bucket)
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


def _blob_keys(blobs: dict[str, bytes]) -> dict[str, int]:
    return {f"{PREFIX}blobs/{name}": len(content) for name, content in blobs.items()}


def test_push_uploads_every_blob_before_the_manifest(
    moto: MotoServer, bucket: ModelBucket, tmp_path: Path
) -> None:
    tiny, _ = two_models(tmp_path, big_weights=12 * MIB)
    recorder = Recorder(bucket, moto.client("s3"))

    result = push(bucket, tmp_path, TINY, Console(bars=False))

    manifest_key = f"{PREFIX}manifests/registry.ollama.ai/library/tiny/1b"
    writes = recorder.writes()
    assert writes[-1] == ("PutObject", manifest_key)
    assert [key for _, key in writes].count(manifest_key) == 1
    # The 12 MiB weights went up in three parts through the transfer manager.
    weights_key = f"{PREFIX}blobs/{blob_name(bytes(range(256)) * (12 * MIB // 256))}"
    assert [name for name, key in writes if key == weights_key] == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    # At the moment the manifest was written, a reader already saw every blob, whole.
    assert recorder.seen_at_manifest_write == _blob_keys(tiny.blobs)
    assert _keys(moto, bucket) == {**_blob_keys(tiny.blobs), manifest_key: len(tiny.manifest)}
    stored = moto.client("s3").get_object(Bucket=bucket.bucket, Key=manifest_key)
    assert stored["Body"].read() == tiny.manifest  # byte for byte what Ollama wrote
    assert len(result.uploaded) == 4
    assert result.manifest_written


def test_a_second_push_uploads_nothing(
    moto: MotoServer, bucket: ModelBucket, tmp_path: Path
) -> None:
    two_models(tmp_path, big_weights=12 * MIB)
    push(bucket, tmp_path, TINY, Console(bars=False))
    recorder = Recorder(bucket, moto.client("s3"))

    result = push(bucket, tmp_path, TINY, Console(bars=False))

    assert recorder.writes() == []
    assert result.uploaded == ()
    assert not result.manifest_written
    assert {name for name, _ in recorder.calls} <= {"HeadBucket", "HeadObject", "GetObject"}


def test_a_corrupted_local_blob_is_refused_before_anything_is_uploaded(
    moto: MotoServer, bucket: ModelBucket, tmp_path: Path
) -> None:
    tiny, _ = two_models(tmp_path)
    # Same size, one byte flipped: only the content hash can tell. It is the last blob of the
    # manifest, so the others would have been uploaded first by a tool that hashed as it went.
    template = tmp_path / "blobs" / list(tiny.blobs)[-1]
    content = bytearray(template.read_bytes())
    content[0] ^= 0xFF
    template.write_bytes(bytes(content))
    recorder = Recorder(bucket, moto.client("s3"))

    with pytest.raises(CommandError, match="checksum mismatch") as refused:
        push(bucket, tmp_path, TINY, Console(bars=False))

    assert str(template) in str(refused.value)
    assert "Nothing was uploaded" in str(refused.value)
    assert recorder.writes() == []
    assert _keys(moto, bucket) == {}


def test_an_interrupted_push_leaves_no_manifest_and_resumes(
    moto: MotoServer, bucket: ModelBucket, tmp_path: Path
) -> None:
    two_models(tmp_path, big_weights=12 * MIB)
    recorder = Recorder(bucket, moto.client("s3"))
    recorder.fail_on = ("UploadPart", 2)  # mid-way through the multipart weights

    with pytest.raises(ConnectionError, match="injected failure"):
        push(bucket, tmp_path, TINY, Console(bars=False))

    keys = _keys(moto, bucket)
    assert not [key for key in keys if "/manifests/" in key]
    # The transfer manager aborted the multipart upload: no parts left behind either.
    uploads = moto.client("s3").list_multipart_uploads(Bucket=bucket.bucket)
    assert uploads.get("Uploads", []) == []

    recorder.fail_on = None
    before = len(recorder.calls)
    result = push(bucket, tmp_path, TINY, Console(bars=False))
    assert result.manifest_written
    # The rerun uploads only what the bucket lacks.
    assert len(result.uploaded) == 4 - len(keys)
    assert [key for _, key in recorder.writes()[-1:]] == [
        f"{PREFIX}manifests/registry.ollama.ai/library/tiny/1b"
    ]
    assert len(recorder.calls) > before
    assert verify(bucket, Console(bars=False), sha256=True) == []


def test_rm_keeps_the_blobs_another_model_uses(
    moto: MotoServer, bucket: ModelBucket, tmp_path: Path
) -> None:
    tiny, other = two_models(tmp_path)
    push(bucket, tmp_path, TINY, Console(bars=False))
    push(bucket, tmp_path, OTHER, Console(bars=False))
    shared = set(tiny.blobs) & set(other.blobs)
    assert len(shared) == 2

    deleted = remove(bucket, TINY, Console(bars=False))

    assert {blob.filename for blob in deleted} == set(tiny.blobs) - shared
    other_manifest = f"{PREFIX}manifests/registry.ollama.ai/team/other/2b"
    assert _keys(moto, bucket) == {
        **_blob_keys(other.blobs),
        other_manifest: len(other.manifest),
    }
    assert verify(bucket, Console(bars=False)) == []
    with pytest.raises(CommandError, match=r"model tiny:1b is not in s3://"):
        remove(bucket, TINY, Console(bars=False))


def test_verify_reports_a_deleted_blob_and_a_tampered_one(
    moto: MotoServer, bucket: ModelBucket, tmp_path: Path
) -> None:
    tiny, other = two_models(tmp_path)
    push(bucket, tmp_path, TINY, Console(bars=False))
    push(bucket, tmp_path, OTHER, Console(bars=False))
    assert verify(bucket, Console(bars=False), sha256=True) == []
    s3 = moto.client("s3")
    weights = list(tiny.blobs)[1]
    s3.delete_object(Bucket=bucket.bucket, Key=f"{PREFIX}blobs/{weights}")

    assert verify(bucket, Console(bars=False)) == [f"tiny:1b: blob {weights} is missing"]

    # Same size, other bytes: only --sha256 notices.
    other_weights = list(other.blobs)[1]
    original = other.blobs[other_weights]
    s3.put_object(
        Bucket=bucket.bucket,
        Key=f"{PREFIX}blobs/{other_weights}",
        Body=original[::-1],
    )
    assert len(verify(bucket, Console(bars=False))) == 1
    problems = verify(bucket, Console(bars=False), sha256=True)
    assert problems[0] == f"tiny:1b: blob {weights} is missing"
    assert problems[1].startswith(f"blob {other_weights}: its content hashes to sha256:")


def test_list_shows_sizes_and_shared_blobs(
    moto: MotoServer, bucket: ModelBucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, other = two_models(tmp_path)
    push(bucket, tmp_path, TINY, Console(bars=False))
    push(bucket, tmp_path, OTHER, Console(bars=False))
    capsys.readouterr()

    list_models(bucket, Console(bars=False), as_json=True)
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"tiny:1b", "team/other:2b"}
    assert rows["tiny:1b"]["size"] == sum(len(c) for c in tiny.blobs.values())
    shared = {b["digest"] for b in rows["tiny:1b"]["blobs"] if b["sharedWith"] == ["team/other:2b"]}
    assert {d.replace(":", "-") for d in shared} == set(tiny.blobs) & set(other.blobs)

    list_models(bucket, Console(bars=False))
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "BLOBS", "SHARED"]
    assert table[1].startswith("team/other:2b")
    assert "2 (" in table[1]
    assert table[1].endswith("with tiny:1b")
    assert table[-1].startswith("2 models,")


def test_a_changed_model_uploads_only_its_new_blob_and_replaces_the_manifest(
    moto: MotoServer, bucket: ModelBucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, _ = two_models(tmp_path)
    push(bucket, tmp_path, TINY, Console(bars=False))
    # `ollama pull tiny:1b` again after upstream changed the weights: same tag, new manifest.
    updated = write_model(
        tmp_path,
        tiny.relpath,
        weights=b"GGUF tiny weights, version 2",
        config=b'{"model_format":"gguf","model_family":"tiny"}',
        extra_layers=((LICENSE_MEDIA_TYPE, LICENSE), (TEMPLATE_MEDIA_TYPE, TEMPLATE)),
    )
    capsys.readouterr()

    result = push(bucket, tmp_path, TINY, Console(bars=False))

    new_weights = blob_name(b"GGUF tiny weights, version 2")
    assert [blob.filename for blob in result.uploaded] == [new_weights]
    assert "manifest tiny:1b: replaced" in capsys.readouterr().err
    stored = bucket.read_manifest(TINY)
    assert stored == updated.manifest
    assert verify(bucket, Console(bars=False)) == []
    # The old weights are referenced by nothing now: verify says so without failing.
    assert f"note: {blob_name(b'GGUF tiny weights')} is referenced by no manifest" in (
        capsys.readouterr().err
    )
