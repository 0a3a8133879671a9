"""NodeFiles: everything an EC2 node needs after its first boot, published for the node's own
agent (runtime/node_agent) to pull: one SSM SecureString per file and a manifest of them.

Why this instead of user data: user data is applied once, at the first boot, and changing it
makes the provider stop and start the instance (terraform-provider-aws ``resourceInstanceUpdate``:
user data can only be modified on a stopped instance), which applies nothing; and it is readable
by every process on the node through IMDS and by anyone with ``ec2:DescribeInstanceAttribute``.
Published here, a changed certificate, config or k3s version reaches a running node on its next
sync and a stopped GPU worker at its next boot, without starting it; only the node's own role may
read its path.

Consistency: the manifest (every file's destination, mode, owner and SHA-256) is written after
all files (``depends_on``). A node that reads while an update is half done finds a file whose
checksum differs from the manifest it read, refuses the whole set and keeps its current files.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

from components.aws.parameters import (
    STANDARD_TIER_BYTES,
    SecureParameters,
    SecureParametersArgs,
)
from components.base.files import NodeFile

GZIP_ENCODING = "gzip+base64"
FILES_PREFIX = "files"
MANIFEST_NAME = "manifest"


def encode(content: str) -> tuple[str, str]:
    """(value, encoding) of a file as stored: plain text when it fits a standard parameter,
    else gzip (no timestamp, so the same content always gives the same value) and base64."""
    if len(content.encode()) <= STANDARD_TIER_BYTES:
        return content, ""
    packed = gzip.compress(content.encode(), mtime=0)
    return base64.b64encode(packed).decode(), GZIP_ENCODING


def split(value: str, parts: int) -> list[str]:
    """``value`` in ``parts`` pieces of at most a standard parameter each (ASCII when split)."""
    if parts == 1:
        return [value]
    size = STANDARD_TIER_BYTES
    pieces = [value[i : i + size] for i in range(0, len(value), size)]
    if len(pieces) > parts:
        raise ValueError(f"{len(value)} bytes need {len(pieces)} parts, {parts} were planned")
    return pieces + [""] * (parts - len(pieces))


def parts_for(content: str) -> int:
    """How many standard parameters a known content needs."""
    value = encode(content)[0]
    return max(1, -(-len(value) // STANDARD_TIER_BYTES))


def render_manifest(
    files: Sequence[NodeFile],
    run: Sequence[Sequence[str]] = (),
    enable: Sequence[str] = (),
    parts: Mapping[str, int] | None = None,
) -> str:
    """The manifest the node agent reads (runtime/node_agent/hybridgpu_node.py parse_manifest)."""
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise ValueError(f"file names repeat: {sorted(n for n in names if names.count(n) > 1)}")
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise ValueError(
            f"two files share a path: {sorted(p for p in paths if paths.count(p) > 1)}"
        )
    entries = []
    for f in files:
        entry: dict[str, object] = {
            "name": f.name,
            "path": f.path,
            "mode": f.mode,
            "owner": f.owner,
            "sha256": hashlib.sha256(f.content.encode()).hexdigest(),
        }
        encoding = encode(f.content)[1]
        if encoding:
            entry["encoding"] = encoding
        if f.restart:
            entry["restart"] = list(f.restart)
        if (parts or {}).get(f.name, 1) > 1:
            entry["parts"] = (parts or {})[f.name]
        entries.append(entry)
    document = {"files": entries, "run": [list(c) for c in run], "enable": list(enable)}
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


@dataclass(frozen=True)
class FileSpec:
    """A file whose destination is known at plan time and whose content may be an Output."""

    name: str
    path: str
    mode: str
    content: pulumi.Input[str]
    owner: str = "root"
    restart: tuple[str, ...] = ()

    @property
    def parts(self) -> int:
        """Parameters the stored value takes: known contents are split over free standard
        parameters; an Output content (certificates, configs, keys: small) takes one, of the
        advanced tier if it must."""
        return parts_for(self.content) if isinstance(self.content, str) else 1


@dataclass(frozen=True)
class NodeFilesArgs:
    path: str
    """SSM path of the node, e.g. ``/hybridgpu/aws-gpu/gpu-worker``."""
    files: Sequence[FileSpec]
    role: str
    """``Role`` tag (the node kind)."""
    run: Sequence[Sequence[str]] = field(default_factory=tuple)
    """Idempotent commands the agent runs after writing files (installers), in order."""
    enable: Sequence[str] = field(default_factory=tuple)
    """systemd units kept enabled and running."""


class NodeFiles(pulumi.ComponentResource):
    manifest: pulumi.Output[str]
    """The manifest text (secret only because it is derived from secrets; holds no secret)."""
    manifest_parameter: SecureParameters
    digest: pulumi.Output[str]
    """SHA-256 of the manifest: changes whenever anything the node gets changes."""

    def __init__(
        self, name: str, args: NodeFilesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:NodeFiles", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        contents = {spec.name: pulumi.Output.from_input(spec.content) for spec in args.files}
        specs = {spec.name: spec for spec in args.files}
        values: dict[str, pulumi.Input[str]] = {}
        for key, content in contents.items():
            count = specs[key].parts
            encoded = content.apply(lambda c: encode(c)[0])
            if count == 1:
                values[key] = encoded
                continue
            for i in range(count):
                values[f"{key}/part-{i:02d}"] = encoded.apply(
                    lambda v, i=i, count=count: split(v, count)[i]
                )
        stored = SecureParameters(
            f"{name}-files",
            SecureParametersArgs(
                path=f"{args.path}/{FILES_PREFIX}",
                values=values,
                role=args.role,
                description="hybridgpu node file (see the manifest beside it)",
            ),
            opts=child,
        )

        def manifest_of(values: Mapping[str, str]) -> str:
            files = [
                NodeFile(
                    name=key,
                    path=specs[key].path,
                    mode=specs[key].mode,
                    content=values[key],
                    owner=specs[key].owner,
                    restart=specs[key].restart,
                )
                for key in specs
            ]
            return render_manifest(
                files, args.run, args.enable, {key: spec.parts for key, spec in specs.items()}
            )

        self.manifest = pulumi.Output.all(**contents).apply(manifest_of)
        self.manifest_parameter = SecureParameters(
            f"{name}-manifest",
            SecureParametersArgs(
                path=args.path,
                values={MANIFEST_NAME: self.manifest},
                role=args.role,
                description="hybridgpu node manifest: files, checksums, installers",
            ),
            # Written after every file, so a reader never sees a manifest ahead of its files.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(stored.parameters.values())),
        )
        self.digest = pulumi.Output.unsecret(
            self.manifest.apply(lambda text: hashlib.sha256(text.encode()).hexdigest())
        )
        self.register_outputs({"digest": self.digest})
