"""push, list, rm and verify: what each does to the bucket, in the order that keeps every model a
reader can see complete.

A reader (Ollama on the GPU node) finds models by their manifests, so a manifest is written only
after every blob it names is in the bucket with its size, and removed before any of its blobs.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from tools.models.bucket import ModelBucket
from tools.models.layout import (
    Blob,
    LayoutError,
    Manifest,
    ModelName,
    file_chunks,
    local_blob_path,
    local_manifest_path,
    parse_manifest,
    sha256_of,
)

# Where a Linux install of Ollama as a system service keeps its models
# (https://github.com/ollama/ollama/blob/v0.32.15/docs/faq.mdx, "Where are models stored?").
SERVICE_MODELS_DIR = "/usr/share/ollama/.ollama/models"


class CommandError(RuntimeError):
    """A refusal or failure the command reports, exiting non-zero."""


@dataclass
class Console:
    out: TextIO = field(default_factory=lambda: sys.stdout)
    """Results (the list table, verify's findings)."""
    err: TextIO = field(default_factory=lambda: sys.stderr)
    """Progress and what is being done."""
    bars: bool | None = None
    """Progress bars: None shows them only when ``err`` is a terminal."""

    def say(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def result(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[[int], object]]:
        """A byte progress bar; the callback is safe from the transfer manager's threads."""
        lock = threading.Lock()
        with tqdm(
            total=total,
            desc=description,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=self.err,
            disable=None if self.bars is None else not self.bars,
            leave=False,
        ) as bar:

            def advance(count: int) -> None:
                with lock:
                    bar.update(count)

            yield advance


def human_bytes(count: int) -> str:
    """Decimal units, as ``ollama list`` shows sizes."""
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _short(blob: Blob) -> str:
    return f"sha256-{blob.hex[:12]}"


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@dataclass(frozen=True)
class PushResult:
    uploaded: tuple[Blob, ...]
    present: tuple[Blob, ...]
    manifest_written: bool


def _local_manifest(models_dir: Path, name: ModelName) -> Manifest:
    path = local_manifest_path(models_dir, name)
    if not path.is_file():
        raise CommandError(
            f"model {name} not found locally: no manifest {path}. Pull it first "
            f"(`ollama pull {name}`), or point --models-dir/OLLAMA_MODELS at the Ollama models "
            f"directory (a Linux service install keeps it in {SERVICE_MODELS_DIR})"
        )
    return parse_manifest(path.read_bytes(), str(path))


def _blobs_to_upload(
    bucket: ModelBucket, models_dir: Path, name: ModelName, manifest: Manifest, console: Console
) -> list[tuple[Blob, Path]]:
    """The manifest's blobs the bucket lacks (or holds with another size), with their files;
    refuses a blob missing locally or of the wrong size."""
    to_upload = []
    for blob in manifest.blobs:
        local = local_blob_path(models_dir, blob)
        if not local.is_file():
            raise CommandError(f"{name}: blob {local} is missing locally; re-pull the model")
        if (actual := local.stat().st_size) != blob.size:
            raise CommandError(
                f"{name}: {local} has {actual} bytes, its manifest says {blob.size}: the file "
                f"is damaged; re-pull the model (`ollama pull {name}`). Nothing was uploaded."
            )
        remote = bucket.blob_size(blob)
        if remote == blob.size:
            console.say(f"  {_short(blob)}: already in the bucket")
            continue
        if remote is not None:
            console.say(f"  {_short(blob)}: the bucket's copy has {remote} bytes: replacing it")
        to_upload.append((blob, local))
    return to_upload


def _check_names(
    to_upload: list[tuple[Blob, Path]], name: ModelName, console: Console
) -> dict[str, tuple[int, int]]:
    """Hashes every file to upload against its name; returns each file's (size, mtime)."""
    stamps = {}
    for blob, local in to_upload:
        stamps[blob.digest] = _stamp(local)
        with console.bar(f"sha256 {_short(blob)}", blob.size) as progress:
            actual = sha256_of(lambda local=local: file_chunks(local), progress)
        if actual != blob.hex:
            raise CommandError(
                f"checksum mismatch: {local} hashes to sha256:{actual}, not its name; the "
                f"file is corrupt. Re-pull the model (`ollama pull {name}`). Nothing was uploaded."
            )
    return stamps


def push(bucket: ModelBucket, models_dir: Path, name: ModelName, console: Console) -> PushResult:
    manifest = _local_manifest(models_dir, name)
    bucket.check_access()
    console.say(f"push {name} ({human_bytes(manifest.size)}) to {bucket.url}")
    to_upload = _blobs_to_upload(bucket, models_dir, name, manifest, console)
    # Every blob to upload is checked against its name before the first byte leaves.
    stamps = _check_names(to_upload, name, console)
    for blob, local in to_upload:
        with console.bar(f"upload {_short(blob)}", blob.size) as progress:
            bucket.upload_blob(local, blob, progress)
        if _stamp(local) != stamps[blob.digest]:
            bucket.delete_blob(blob)
            raise CommandError(f"{local} changed while it was uploaded; run push again")
        if (uploaded := bucket.blob_size(blob)) != blob.size:
            raise CommandError(f"{_short(blob)}: the bucket holds {uploaded} bytes after upload")
        console.say(f"  {_short(blob)}: uploaded {human_bytes(blob.size)}")

    # The manifest last, once every blob it names is in the bucket (re-checked: a concurrent rm
    # may have removed a shared one).
    absent = [blob for blob in manifest.blobs if bucket.blob_size(blob) != blob.size]
    if absent:
        names = ", ".join(_short(blob) for blob in absent)
        raise CommandError(f"{name}: {names} vanished from the bucket; manifest not written")
    previous = bucket.read_manifest(name)
    written = previous != manifest.raw
    if written:
        bucket.write_manifest(name, manifest.raw)
    state = "up to date" if not written else "written" if previous is None else "replaced"
    console.say(f"  manifest {name}: {state}")
    uploaded_blobs = tuple(blob for blob, _ in to_upload)
    return PushResult(
        uploaded=uploaded_blobs,
        present=tuple(blob for blob in manifest.blobs if blob not in uploaded_blobs),
        manifest_written=written,
    )


def _users(manifests: Mapping[ModelName, Manifest]) -> dict[str, list[ModelName]]:
    """Digest -> the models using it."""
    users: dict[str, list[ModelName]] = defaultdict(list)
    for name, manifest in sorted(manifests.items()):
        for digest in manifest.digests:
            users[digest].append(name)
    return users


def list_models(bucket: ModelBucket, console: Console, *, as_json: bool = False) -> None:
    bucket.check_access()
    contents = bucket.contents()
    users = _users(contents.manifests)
    rows = []
    for name, manifest in sorted(contents.manifests.items(), key=lambda item: str(item[0])):
        blobs = []
        for blob in manifest.blobs:
            others = [str(other) for other in users[blob.digest] if other != name]
            blobs.append({"digest": blob.digest, "size": blob.size, "sharedWith": others})
        rows.append({"name": str(name), "size": manifest.size, "blobs": blobs})
    if as_json:
        console.result(json.dumps(rows, indent=2))
    else:
        table = [("NAME", "SIZE", "BLOBS", "SHARED")]
        for row in rows:
            shared = [blob for blob in row["blobs"] if blob["sharedWith"]]
            others = sorted({other for blob in shared for other in blob["sharedWith"]})
            shared_text = (
                f"{len(shared)} ({human_bytes(sum(b['size'] for b in shared))}) with "
                + ", ".join(others)
                if shared
                else "-"
            )
            table.append(
                (row["name"], human_bytes(row["size"]), str(len(row["blobs"])), shared_text)
            )
        widths = [max(len(line[i]) for line in table) for i in range(3)]
        for line in table:
            cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
            console.result("  ".join([*cells, line[3]]))
        unreferenced = set(contents.blobs) - contents.referenced()
        console.result(
            f"{len(rows)} models, {human_bytes(sum(contents.blobs.values()))} in "
            f"{len(contents.blobs)} blobs ({len(unreferenced)} referenced by no manifest)"
        )
    if contents.problems:
        console.say(f"{len(contents.problems)} objects Ollama cannot use; run `models verify`")


def remove(bucket: ModelBucket, name: ModelName, console: Console) -> list[Blob]:
    """Deletes the manifest, then the blobs no remaining manifest references; returns those."""
    bucket.check_access()
    raw = bucket.read_manifest(name)
    if raw is None:
        raise CommandError(f"model {name} is not in {bucket.url}")
    try:
        manifest = parse_manifest(raw, bucket.manifest_key(name))
    except LayoutError as error:
        bucket.delete_manifest(name)
        console.say(f"removed manifest {name}; it was unreadable ({error}), its blobs stay")
        return []
    bucket.delete_manifest(name)
    console.say(f"removed manifest {name}")
    remaining = bucket.contents()
    unreadable = [p for p in remaining.problems if p.startswith("manifests/")]
    if unreadable:
        console.say(
            "blobs kept: some manifests cannot be read, so which blobs they use is unknown: "
            + "; ".join(unreadable)
        )
        return []
    users = _users(remaining.manifests)
    deleted = []
    for blob in manifest.blobs:
        if users.get(blob.digest):
            shared = ", ".join(str(other) for other in users[blob.digest])
            console.say(f"  {_short(blob)}: kept, used by {shared}")
            continue
        bucket.delete_blob(blob)
        deleted.append(blob)
        console.say(f"  {_short(blob)}: deleted ({human_bytes(blob.size)})")
    return deleted


def verify(bucket: ModelBucket, console: Console, *, sha256: bool = False) -> list[str]:
    """Every manifest's blobs present with their sizes (and content hashing to their names with
    ``sha256``); returns the problems, each naming the model and blob."""
    bucket.check_access()
    contents = bucket.contents()
    problems = list(contents.problems)
    for name, manifest in sorted(contents.manifests.items()):
        for blob in manifest.blobs:
            size = contents.blobs.get(blob.digest)
            if size is None:
                problems.append(f"{name}: blob {blob.filename} is missing")
            elif size != blob.size:
                problems.append(
                    f"{name}: blob {blob.filename} has {size} bytes, the manifest says {blob.size}"
                )
    if sha256:
        for digest, size in sorted(contents.blobs.items()):
            blob = Blob(digest, size)
            with console.bar(f"sha256 {_short(blob)}", size) as progress:
                actual = sha256_of(bucket.blob_chunks(blob), progress)
            if actual != blob.hex:
                problems.append(f"blob {blob.filename}: its content hashes to sha256:{actual}")
    for digest in sorted(set(contents.blobs) - contents.referenced()):
        console.say(f"note: {Blob(digest, 0).filename} is referenced by no manifest")
    for problem in problems:
        console.result(f"BAD {problem}")
    checked = "sizes and sha256" if sha256 else "sizes"
    console.result(
        f"{len(contents.manifests)} models, {len(contents.blobs)} blobs, {checked} checked: "
        + (f"{len(problems)} problems" if problems else "OK")
    )
    return problems
