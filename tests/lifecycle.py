"""What a real ``pulumi up`` would do after a config change, predicted from two offline runs of
the program (config A, then config B) and their recorded registrations.

The rules are the engine's and the providers', each with its source:

* A resource whose inputs are unchanged is left alone (``same``); a changed one is updated,
  unless a changed input is one its provider replaces on (the per-type tables below, from the
  provider sources) or one listed in its ``replace_on_changes`` (pulumi_command adds
  ``triggers[*]`` to every command); inputs in ``ignore_changes`` do not count
  (pulumi/pulumi pkg/resource/deploy/step_generator.go: processIgnoreChanges, then diff).
* A resource is also replaced when a resource it names in ``replace_with`` is replaced
  (pulumi/pulumi#20693) or the one it is ``deleted_with`` is (pulumi/pulumi#23818).
* A ``protect``ed resource is never deleted or replaced: the engine refuses the update.
* New URNs are created, missing ones deleted. Reads (StackReference) are not steps.

Only inputs are compared: a computed output changes only through the mocks' model of it
(e.g. a Kubernetes uid when the object is re-created, ``offline.run_stack(recreated=...)``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from components.proxmox.vm import REPLACING_INPUTS as VM_REPLACING_INPUTS
from tools.mocks import Registration
from tools.offline import StackRun

Step = Literal["same", "update", "replace", "create", "delete", "refused"]

REPLACING_INPUTS: Mapping[str, Sequence[str]] = {
    "proxmoxve:index/vmLegacy:VmLegacy": VM_REPLACING_INPUTS,
    # bpg/terraform-provider-proxmox@v0.111.1 fwprovider/nodes/resource_download_file.go:
    # RequiresReplace on content_type, file_name, datastore_id, node_name, url, checksum,
    # decompression_algorithm.
    "proxmoxve:download/file:File": (
        "contentType",
        "fileName",
        "datastoreId",
        "nodeName",
        "url",
        "checksum",
        "decompressionAlgorithm",
    ),
    # proxmoxtf/resource/file.go: ForceNew on every argument of a snippet.
    "proxmoxve:index/fileLegacy:FileLegacy": ("*",),
    # A Kubernetes object is another object under another name or namespace.
    "kubernetes:*": ("metadata.name", "metadata.namespace"),
}


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Leaf paths (``a.b[0].c``) of a plain value."""
    if isinstance(value, dict):
        if not value:
            return {path: {}}
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= flatten(item, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(value, list):
        if not value:
            return {path: []}
        out = {}
        for i, item in enumerate(value):
            out |= flatten(item, f"{path}[{i}]")
        return out
    return {path: value}


def changed_paths(old: Registration, new: Registration) -> set[str]:
    before, after = flatten(old.plain_inputs), flatten(new.plain_inputs)
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def matches(path: str, pattern: str) -> bool:
    """Whether ``path`` is ``pattern`` or inside it; ``[*]`` matches any index, ``*`` all."""
    if pattern == "*":
        return True
    regex = re.escape(pattern).replace(r"\[\*\]", r"\[\d+\]")
    return re.match(rf"^{regex}(\.|\[|$)", path) is not None


def _table(typ: str) -> Sequence[str]:
    for key, inputs in REPLACING_INPUTS.items():
        if typ == key or (key.endswith("*") and typ.startswith(key[:-1])):
            return inputs
    return ()


@dataclass
class Plan:
    steps: dict[str, Step]
    """URN -> what the update does to it."""
    changed: dict[str, set[str]] = field(default_factory=dict)
    """URN -> input paths that differ (ignored ones excluded)."""
    new: dict[str, Registration] = field(default_factory=dict)
    old: dict[str, Registration] = field(default_factory=dict)

    def step(self, typ: str, name: str) -> Step:
        return self.steps[self._urn(typ, name)]

    def changes(self, typ: str, name: str) -> set[str]:
        return self.changed.get(self._urn(typ, name), set())

    def _urn(self, typ: str, name: str) -> str:
        found = [
            urn
            for urn, reg in (self.new | self.old).items()
            if reg.type == typ and reg.name == name
        ]
        if len(found) != 1:
            raise KeyError(f"expected one {typ} named {name!r}, found {found}")
        return found[0]

    def by_step(self, step: Step, types: Iterable[str] | None = None) -> list[str]:
        wanted = set(types) if types is not None else None
        return sorted(
            (self.new | self.old)[urn].name
            for urn, s in self.steps.items()
            if s == step and (wanted is None or (self.new | self.old)[urn].type in wanted)
        )


def plan(before: StackRun, after: StackRun, *, deleted_with_replaces: bool = True) -> Plan:
    """``deleted_with_replaces``: whether a resource is replaced with the one it is deleted with
    (pulumi/pulumi#23818, CLIs since July 2026); off, the rules of an older CLI."""
    old = {r.urn: r for r in before.managed()}
    new = {r.urn: r for r in after.managed()}
    result = Plan(steps={}, new=new, old=old)
    for urn, reg in new.items():
        if urn not in old:
            result.steps[urn] = "create"
            continue
        paths = {
            p
            for p in changed_paths(old[urn], reg)
            if not any(matches(p, ignored) for ignored in reg.ignore_changes)
        }
        result.changed[urn] = paths
        replacing = (*_table(reg.type), *reg.replace_on_changes)
        if not paths:
            result.steps[urn] = "same"
        elif reg.custom and any(matches(p, r) for p in paths for r in replacing):
            result.steps[urn] = "replace"
        else:
            result.steps[urn] = "update"
    for urn in old.keys() - new.keys():
        result.steps[urn] = "delete"
    # Replacements cascade to what is replaced or deleted with them, until nothing changes.
    cascading = True
    while cascading:
        cascading = False
        replaced = {u for u, s in result.steps.items() if s == "replace"}
        for urn, reg in new.items():
            if result.steps[urn] in ("update", "same") and (
                replaced & set(reg.replace_with)
                or (deleted_with_replaces and reg.deleted_with in replaced)
            ):
                result.steps[urn] = "replace"
                cascading = True
    for urn, step in result.steps.items():
        reg = old.get(urn) or new[urn]
        if step in ("replace", "delete") and reg.protect:
            result.steps[urn] = "refused"
    return result
