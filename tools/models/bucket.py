"""The model bucket under its prefix, holding the very tree Ollama reads as ``OLLAMA_MODELS``.

The aws-gpu stack mounts ``s3://<bucket>/<prefix>`` read-only at Ollama's models directory
(Mountpoint ``prefix`` option, components/federation/model_store.py), so the key
``<prefix>blobs/sha256-<hex>`` is the file ``$OLLAMA_MODELS/blobs/sha256-<hex>`` on the node and
``<prefix>manifests/<host>/<namespace>/<model>/<tag>`` its manifest. Uploads go through boto3's
transfer manager (``upload_file``: multipart above the threshold, parts in parallel, a failed
multipart upload aborted); nothing here writes S3 multipart by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tools.models.layout import (
    BLOBS_DIR,
    MANIFESTS_DIR,
    Blob,
    LayoutError,
    Manifest,
    ModelName,
    digest_of_filename,
    parse_manifest,
)

MIB = 1024 * 1024
# 64 MiB parts: a 600 GiB blob stays under S3's 10,000 parts (s3transfer raises the part size
# further by itself when a file needs it).
DEFAULT_TRANSFER = TransferConfig(
    multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB, max_concurrency=8
)
MANIFEST_CONTENT_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


class BucketError(RuntimeError):
    """The bucket cannot be used (missing, access denied)."""


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@dataclass
class BucketContents:
    """What the bucket holds under the prefix, as Ollama would see it."""

    manifests: dict[ModelName, Manifest] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)
    """Digest -> size of every well-named object under blobs/."""
    problems: list[str] = field(default_factory=list)
    """Objects Ollama could not use: unparsable manifests, misnamed or misplaced keys."""

    def referenced(self) -> set[str]:
        return {digest for manifest in self.manifests.values() for digest in manifest.digests}


class ModelBucket:
    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        transfer: TransferConfig = DEFAULT_TRANSFER,
    ) -> None:
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"prefix '{prefix}' must be empty or end with '/'")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.transfer = transfer

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def blob_key(self, blob: Blob) -> str:
        return f"{self.prefix}{BLOBS_DIR}/{blob.filename}"

    def manifest_key(self, name: ModelName) -> str:
        return f"{self.prefix}{MANIFESTS_DIR}/{name.relpath}"

    def check_access(self) -> None:
        """A clear error now rather than a failure after hashing gigabytes."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            code = error_code(error)
            if code in NOT_FOUND:
                raise BucketError(
                    f"bucket '{self.bucket}' does not exist (is the aws-gpu stack deployed? "
                    "is --bucket right?)"
                ) from None
            if code in ("403", "AccessDenied", "Forbidden"):
                raise BucketError(
                    f"access denied to bucket '{self.bucket}': these credentials (or the role "
                    "they assume) may not use it"
                ) from None
            raise

    def blob_size(self, blob: Blob) -> int | None:
        """Size of the blob's object, None if there is none."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.blob_key(blob))
        except ClientError as error:
            if error_code(error) in NOT_FOUND:
                return None
            raise
        return int(head["ContentLength"])

    def upload_blob(self, path: Path, blob: Blob, progress: Callable[[int], object]) -> None:
        self.client.upload_file(
            Filename=str(path),
            Bucket=self.bucket,
            Key=self.blob_key(blob),
            ExtraArgs={"ContentType": "application/octet-stream"},
            Callback=progress,
            Config=self.transfer,
        )

    def read_manifest(self, name: ModelName) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.manifest_key(name))
        except ClientError as error:
            if error_code(error) in NOT_FOUND:
                return None
            raise
        return response["Body"].read()

    def write_manifest(self, name: ModelName, raw: bytes) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.manifest_key(name),
            Body=raw,
            ContentType=MANIFEST_CONTENT_TYPE,
        )

    def delete_manifest(self, name: ModelName) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.manifest_key(name))

    def delete_blob(self, blob: Blob) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.blob_key(blob))

    def blob_chunks(self, blob: Blob) -> Iterator[bytes]:
        response = self.client.get_object(Bucket=self.bucket, Key=self.blob_key(blob))
        yield from response["Body"].iter_chunks(chunk_size=8 * MIB)

    def _objects(self, under: str) -> Iterator[tuple[str, int]]:
        """(key below ``prefix + under + '/'``, size) of every object there."""
        start = f"{self.prefix}{under}/"
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                if item["Key"].endswith("/"):
                    continue  # a directory marker, a directory to Mountpoint
                yield item["Key"][len(start) :], int(item["Size"])

    def contents(self) -> BucketContents:
        found = BucketContents()
        for relpath, size in self._objects(BLOBS_DIR):
            digest = digest_of_filename(relpath)
            if digest is None:
                found.problems.append(f"{BLOBS_DIR}/{relpath}: not a sha256-<hex> blob name")
            else:
                found.blobs[digest] = size
        for relpath, _ in self._objects(MANIFESTS_DIR):
            where = f"{MANIFESTS_DIR}/{relpath}"
            try:
                name = ModelName.from_relpath(relpath)
                raw = self.read_manifest(name)
                if raw is None:  # deleted since the listing
                    continue
                found.manifests[name] = parse_manifest(raw, where)
            except LayoutError as error:
                found.problems.append(f"{where}: {error}")
        return found
