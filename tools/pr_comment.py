"""The pull-request comment: what the change does to each stack's offline plan.

The preview workflow runs ``./dev plan <stack> --json`` on the base and on the head commit and
renders the difference with this module; the workflow then creates or updates one comment carrying
``MARKER``. Resources are matched by URN, so a rename shows as one removed and one added resource
(which is what the engine would do without an alias). Secret inputs are redacted in the plans, so
a changed secret value does not show.

    python -m tools.pr_comment --base build/base --head build/head \\
        --base-ref 1a2b3c4 --head-ref 5d6e7f8 > comment.md
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.offline import STACK_ORDER

MARKER = "<!-- hybridgpu-offline-plan-diff -->"
MAX_COMMENT_CHARS = 60_000  # GitHub refuses comment bodies over 65,536 characters
MAX_PATHS_PER_RESOURCE = 12
MAX_TEXT_DIFF_LINES = 40


@dataclass
class StackDiff:
    stack: str
    base_count: int | None
    head_count: int | None
    added: list[Mapping[str, Any]] = field(default_factory=list)
    removed: list[Mapping[str, Any]] = field(default_factory=list)
    changed: list[tuple[Mapping[str, Any], list[str], list[str]]] = field(default_factory=list)
    """(head resource, changed input paths, text diff lines of changed multi-line inputs)."""
    exports: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.removed or self.changed or self.exports or self.error)


def leaf_changes(base: Any, head: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, base value, head value) of every differing leaf."""
    if isinstance(base, Mapping) and isinstance(head, Mapping):
        for key in sorted(set(base) | set(head), key=str):
            child = f"{path}.{key}" if path else str(key)
            yield from leaf_changes(base.get(key), head.get(key), child)
    elif isinstance(base, list) and isinstance(head, list) and len(base) == len(head):
        for index, (b, h) in enumerate(zip(base, head, strict=True)):
            yield from leaf_changes(b, h, f"{path}[{index}]")
    elif base != head:
        yield path or ".", base, head


def _text_diff(path: str, base: Any, head: Any) -> list[str]:
    if not (isinstance(base, str) and isinstance(head, str) and "\n" in base + head):
        return []
    lines = list(
        difflib.unified_diff(
            base.splitlines(), head.splitlines(), f"base/{path}", f"head/{path}", lineterm="", n=1
        )
    )
    if len(lines) > MAX_TEXT_DIFF_LINES:
        lines = [*lines[:MAX_TEXT_DIFF_LINES], f"... {len(lines) - MAX_TEXT_DIFF_LINES} more lines"]
    return lines


def diff_stack(
    stack: str, base: Mapping[str, Any] | None, head: Mapping[str, Any] | None
) -> StackDiff:
    result = StackDiff(
        stack,
        base.get("resourceCount") if base else None,
        head.get("resourceCount") if head else None,
    )
    if base is None or head is None:
        result.error = f"the offline plan failed on the {'base' if base is None else 'head'}"
        return result
    before = {r["urn"]: r for r in base.get("resources", [])}
    after = {r["urn"]: r for r in head.get("resources", [])}
    result.added = [after[u] for u in sorted(set(after) - set(before))]
    result.removed = [before[u] for u in sorted(set(before) - set(after))]
    for urn in sorted(set(before) & set(after)):
        if before[urn] == after[urn]:
            continue
        paths: list[str] = []
        text: list[str] = []
        for key in sorted(set(before[urn]) | set(after[urn])):
            if key == "inputs":
                for path, old, new in leaf_changes(before[urn].get(key), after[urn].get(key)):
                    paths.append(path)
                    text += _text_diff(path, old, new)
            elif before[urn].get(key) != after[urn].get(key):
                paths.append(f"({key})")
        result.changed.append((after[urn], paths, text))
    old_exports, new_exports = base.get("exports", {}), head.get("exports", {})
    result.exports = [
        name
        for name in sorted(set(old_exports) | set(new_exports))
        if old_exports.get(name) != new_exports.get(name)
    ]
    return result


def _code(text: object) -> str:
    return "`" + str(text).replace("`", "'") + "`"


def _resource_line(resource: Mapping[str, Any]) -> str:
    return f"- {_code(resource['type'])} **{_code(resource['name'])}**"


def _details(diff: StackDiff) -> list[str]:
    lines = [f"<details><summary>{diff.stack}: {_summary(diff)}</summary>", ""]
    for title, group in (("Added", diff.added), ("Removed", diff.removed)):
        if group:
            lines += [f"**{title}**", *(_resource_line(r) for r in group), ""]
    if diff.changed:
        lines.append("**Changed** (inputs the program declares)")
        for resource, paths, text in diff.changed:
            shown = ", ".join(_code(p) for p in paths[:MAX_PATHS_PER_RESOURCE])
            more = len(paths) - MAX_PATHS_PER_RESOURCE
            lines.append(
                f"{_resource_line(resource)}: {shown}{f' and {more} more' if more > 0 else ''}"
            )
            if text:
                lines += ["", "  ```diff", *(f"  {t}" for t in text), "  ```"]
        lines.append("")
    if diff.exports:
        lines += [f"**Stack outputs changed**: {', '.join(_code(e) for e in diff.exports)}", ""]
    return [*lines, "</details>", ""]


def _summary(diff: StackDiff) -> str:
    if diff.error:
        return diff.error
    if diff.unchanged:
        return "no change"
    parts = [
        f"{len(diff.added)} added" if diff.added else "",
        f"{len(diff.removed)} removed" if diff.removed else "",
        f"{len(diff.changed)} changed" if diff.changed else "",
        f"{len(diff.exports)} output(s) changed" if diff.exports else "",
    ]
    return ", ".join(p for p in parts if p)


def render(diffs: Sequence[StackDiff], base_ref: str, head_ref: str) -> str:
    lines = [
        MARKER,
        f"### Offline plan: {_code(base_ref)} → {_code(head_ref)}",
        "",
        "What the program declares, evaluated without credentials (`./dev plan <stack> --json`);",
        "the real `pulumi preview` comments (when configured) show create/update/replace.",
        "",
        "| stack | resources (base → head) | change |",
        "| --- | --- | --- |",
    ]
    for diff in diffs:
        counts = f"{diff.base_count if diff.base_count is not None else '—'} → " + (
            f"{diff.head_count if diff.head_count is not None else '—'}"
        )
        lines.append(f"| {diff.stack} | {counts} | {_summary(diff)} |")
    lines.append("")
    for diff in diffs:
        if not diff.unchanged and not diff.error:
            lines += _details(diff)
    body = "\n".join(lines)
    if len(body) > MAX_COMMENT_CHARS:
        note = "\n\n*(truncated: the full diff is in the workflow's job summary artifact)*\n"
        body = body[: MAX_COMMENT_CHARS - len(note)] + note
    return body


def _load(path: Path) -> Mapping[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the offline-plan diff comment")
    parser.add_argument("--base", type=Path, required=True, help="dir with <stack>.json of base")
    parser.add_argument("--head", type=Path, required=True, help="dir with <stack>.json of head")
    parser.add_argument("--base-ref", default="base")
    parser.add_argument("--head-ref", default="head")
    args = parser.parse_args(argv)
    diffs = [
        diff_stack(stack, _load(args.base / f"{stack}.json"), _load(args.head / f"{stack}.json"))
        for stack in STACK_ORDER
    ]
    print(render(diffs, args.base_ref, args.head_ref))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
