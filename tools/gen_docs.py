"""docs/reference.md, generated from the code: every config key of both stacks (from the
pydantic models in stacks/config/ and Pulumi.yaml's project keys) and every stack output (from
stacks/outputs.py), so the reference cannot drift from what the program accepts and exports.

``python -m tools.gen_docs`` (``./dev docs``) writes it; ``--check`` exits non-zero when the file
differs from what this prints (the test suite runs the same comparison).

The walk is generic: a field added to any model, a stack key added to ``*_STACK_KEYS`` with its
model in :data:`STACK_OBJECTS`, or an output added to a contract appears on the next run.
"""

from __future__ import annotations

import ipaddress
import re
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from stacks import config as stack_config
from stacks import outputs
from stacks.config import loading
from stacks.config.project import NebulaSettings, NetworkPlan

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE = REPO_ROOT / "docs" / "reference.md"

STACK_OBJECTS: dict[str, dict[str, type[BaseModel]]] = {
    stack_config.STACK_AWS_GPU: {"aws": stack_config.AwsSettings},
    stack_config.STACK_HOMELAB: {"homelab": stack_config.HomelabSettings},
}
"""Structured stack keys (``hybridgpu:aws``) and the model that validates each."""
STACK_KEYS: dict[str, tuple[str, ...]] = {
    stack_config.STACK_AWS_GPU: loading.AWS_GPU_STACK_KEYS,
    stack_config.STACK_HOMELAB: loading.HOMELAB_STACK_KEYS,
}
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    stack_config.STACK_AWS_GPU: stack_config.AWS_GPU_SECRET_KEYS,
    stack_config.STACK_HOMELAB: stack_config.HOMELAB_SECRET_KEYS,
}
# Names for the reusable field types of stacks/config/fields.py (by their validator).
VALIDATOR_TYPES = {
    "_k3s_version": "k3s release tag (v1.33.5+k3s1; no channel)",
    "_exact_version": "exact version (1.2.3 or v1.2.3)",
    "_dns_label": "DNS label",
    "_ssh_public_key": "OpenSSH public key line",
    "_host_name": "host name",
    "_address_or_host_name": "IP address or host name",
    "_pinned_image": "image with an exact tag or digest",
    "_admin_cidr": "IPv4 CIDR, not /0",
}
DASH = "\u2013"  # en dash between the ends of a range
PLAIN_TYPES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    ipaddress.IPv4Network: "IPv4 CIDR",
    ipaddress.IPv4Address: "IPv4 address",
}


@dataclass(frozen=True)
class KeyRow:
    path: str
    type: str
    default: str
    allowed: str
    meaning: str


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _code(value: Any) -> str:
    shown = yaml.safe_dump(_plain(value), default_flow_style=True, width=10_000).strip()
    shown = shown.removesuffix("\n...").removesuffix("...").strip()
    return f"`{shown}`"


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv4Address):
        return str(value)
    return value


def _constraints(metadata: list[Any]) -> list[str]:
    """Range, length and pattern constraints of a field or a list item, in words."""
    found: dict[str, Any] = {}
    named: list[str] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            named.extend(_constraints(item.metadata))
            continue
        for attribute in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
            value = getattr(item, attribute, None)
            if value is not None:
                found[attribute] = value
        if hasattr(item, "func") and getattr(item.func, "__name__", "") in VALIDATOR_TYPES:
            named.append(VALIDATOR_TYPES[item.func.__name__])
    words = list(named)
    low = found.get("ge", found.get("gt"))
    high = found.get("le", found.get("lt"))
    if low is not None and high is not None:
        words.append(
            f"{'>' if 'gt' in found else ''}{low}{DASH}{high}"
            + (" (exclusive)" if "lt" in found else "")
        )
    elif low is not None:
        words.append(f"{'>' if 'gt' in found else '≥'} {low}")
    elif high is not None:
        words.append(f"{'<' if 'lt' in found else '≤'} {high}")
    if "min_length" in found or "max_length" in found:
        words.append(
            f"length {found.get('min_length', 0)}{DASH}{found['max_length']}"
            if "max_length" in found
            else f"length ≥ {found['min_length']}"
        )
    if "pattern" in found:
        pattern = found["pattern"]
        words.append(f"matches `{getattr(pattern, 'pattern', pattern)}`")
    return words


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _unannotate(annotation: Any) -> tuple[Any, list[Any]]:
    metadata: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *extra = typing.get_args(annotation)
        metadata.extend(extra)
    return annotation, metadata


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The nested model of a field (and whether it is a list of them)."""
    annotation, _ = _unannotate(_strip_optional(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) in (tuple, list):
        item, _ = _unannotate(typing.get_args(annotation)[0])
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
    return None, False


def _describe_type(annotation: Any) -> tuple[str, list[str]]:
    """(type in words, constraints of the items) of a leaf field."""
    annotation, metadata = _unannotate(_strip_optional(annotation)[0])
    allowed = _constraints(metadata)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "string", ["one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))]
    if origin in (tuple, list):
        item_type, item_allowed = _describe_type(typing.get_args(annotation)[0])
        return f"list of {item_type}", [f"each: {w}" for w in item_allowed] + allowed
    if origin is dict:
        key_type, _ = _describe_type(typing.get_args(annotation)[0])
        value_type, _ = _describe_type(typing.get_args(annotation)[1])
        return f"map of {key_type} to {value_type}", allowed
    named = [w for w in allowed if w in VALIDATOR_TYPES.values()]
    base = PLAIN_TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))
    if named:
        base = named[0]
        allowed = [w for w in allowed if w != named[0]]
    return base, allowed


def _default(field: FieldInfo, value: Any, required: bool) -> str:
    if required:
        return "required"
    if value is None:
        return "unset"
    if value in ((), [], {}):
        return "empty"
    return _code(value)


def _walk(
    model: type[BaseModel], prefix: str, defaults: BaseModel | None, required_parent: bool
) -> Iterator[KeyRow]:
    for name, field in model.model_fields.items():
        alias = field.alias or name
        path = f"{prefix}.{alias}"
        required = field.is_required()
        if defaults is not None:
            value = getattr(defaults, name)
        elif field.default is not PydanticUndefined:
            value = field.default
        elif field.default_factory is not None:
            value = field.default_factory()  # type: ignore[call-arg]
        else:
            value = None
        nested, is_list = _model_of(field.annotation)
        allowed_extra = (
            (field.json_schema_extra or {}) if isinstance(field.json_schema_extra, dict) else {}
        )
        if nested is not None:
            kind = "list of objects" if is_list else "object"
            _, list_meta = _unannotate(_strip_optional(field.annotation)[0])
            allowed = _constraints([*field.metadata, *list_meta])
            if "allowed" in allowed_extra:
                allowed = [str(allowed_extra["allowed"])]
            yield KeyRow(
                path,
                kind,
                "required" if required else ("empty" if is_list and not value else "see below"),
                "; ".join(allowed),
                field.description or (nested.__doc__ or "").strip(),
            )
            yield from _walk(
                nested,
                f"{path}[]" if is_list else path,
                None if is_list or value is None else value,
                required or required_parent,
            )
            continue
        type_words, allowed = _describe_type(field.annotation)
        allowed = [*allowed, *_constraints(field.metadata)]
        if "allowed" in allowed_extra:
            allowed = [str(allowed_extra["allowed"])]
        yield KeyRow(
            path,
            type_words,
            _default(field, value, required),
            "; ".join(dict.fromkeys(allowed)),
            field.description or "",
        )


def project_rows() -> list[KeyRow]:
    """The project-wide keys: type and constraints from the models, default and meaning from
    Pulumi.yaml (a test keeps its defaults equal to the models')."""
    declared = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]
    models: dict[str, type[BaseModel]] = {"network": NetworkPlan, "nebula": NebulaSettings}
    rows = []
    for config_key, (section, alias) in stack_config.PROJECT_KEYS.items():
        model = models[section] if section else stack_config.ProjectSettings
        field = next(f for n, f in model.model_fields.items() if (f.alias or n) == alias)
        type_words, allowed = _describe_type(field.annotation)
        allowed = [*allowed, *_constraints(field.metadata)]
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if "allowed" in extra:
            allowed = [str(extra["allowed"])]
        spec = declared[stack_config.key(config_key)]
        rows.append(
            KeyRow(
                stack_config.key(config_key),
                type_words,
                _code(spec["default"]),
                "; ".join(dict.fromkeys(allowed)),
                " ".join(str(spec["description"]).split()),
            )
        )
    return rows


def stack_rows(stack: str) -> list[KeyRow]:
    rows: list[KeyRow] = []
    objects = STACK_OBJECTS[stack]
    for stack_key in STACK_KEYS[stack]:
        if stack_key in SECRET_KEYS[stack]:
            continue
        if stack_key not in objects:
            raise KeyError(f"{stack}: stack key '{stack_key}' has no model in STACK_OBJECTS")
        model = objects[stack_key]
        rows.append(
            KeyRow(
                stack_config.key(stack_key),
                "object",
                "required",
                "",
                (model.__doc__ or "").strip(),
            )
        )
        rows.extend(_walk(model, stack_config.key(stack_key), None, True))
    return rows


STACK_READER = re.compile(r"\baws_gpu\.require\(\s*\"(\w+)\"")
DEV_COMMAND_READERS: dict[str, tuple[str, re.Pattern[str]]] = {
    # ./dev command -> (its module, how it reads an output by name)
    "./dev mesh-join": (
        "tools/mesh_join.py",
        re.compile(r"_require\(outputs, \"(\w+)\"|outputs\.get\(\"(\w+)\""),
    ),
    "./dev models": ("tools/models/cli.py", re.compile(r"^\w+_OUTPUT = \"(\w+)\"", re.M)),
}


def readers() -> dict[str, dict[str, list[str]]]:
    """Stack -> output -> who reads it besides the user: the homelab stack (its StackReference
    reads in stacks/) and the ./dev commands that take a stack's outputs."""
    found: dict[str, dict[str, list[str]]] = {stack: {} for stack in outputs.CONTRACTS}
    for module in sorted((REPO_ROOT / "stacks").rglob("*.py")):
        for name in STACK_READER.findall(module.read_text()):
            entry = found["aws-gpu"].setdefault(name, [])
            if "homelab stack (StackReference)" not in entry:
                entry.append("homelab stack (StackReference)")
    for command, (module, pattern) in DEV_COMMAND_READERS.items():
        for match in pattern.finditer((REPO_ROOT / module).read_text()):
            name = next(group for group in match.groups() if group)
            found["aws-gpu"].setdefault(name, []).append(f"`{command}`")
    return found


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _doc(text: str) -> str:
    return " ".join(text.replace("``", "`").split())


def render() -> str:
    out = [
        "# Configuration and output reference",
        "",
        "<!-- Generated by `./dev docs` (tools/gen_docs.py) from stacks/config/, Pulumi.yaml",
        "and stacks/outputs.py. Do not edit: a test fails when this file differs from the",
        "generator. -->",
        "",
        "Paths are as `pulumi config set --path` and `./dev plan --set` take them; `[]` stands",
        "for any list index (`[0]`, `[1]`, ...). Unknown keys are rejected, so a typo never falls",
        "back to a default; every check runs before the first resource is registered.",
        "",
        "## Project-wide keys (both stacks)",
        "",
        "Declared with type, description and default in `Pulumi.yaml`; both stacks must see the",
        "same values (the homelab stack compares them with aws-gpu's `networkPlan`). Every",
        "range must be disjoint from every other (the AWS subnet lies inside the VPC).",
        "",
    ]
    key_header = ("key", "type", "default", "allowed", "meaning")
    out += _table(
        key_header,
        [(f"`{r.path}`", r.type, r.default, r.allowed, _doc(r.meaning)) for r in project_rows()],
    )
    role = loading.ROLE_KEY
    out += [
        "",
        f"Either stack may also set `{stack_config.key(role)}` (one of "
        + ", ".join(f"`{s}`" for s in stack_config.KNOWN_STACKS)
        + "): the stack's shape when its name is not a role or `<role>-<suffix>`.",
    ]
    meanings = loading.SECRET_MEANINGS
    for stack in stack_config.KNOWN_STACKS:
        out += ["", f"## Stack `{stack}`", ""]
        out += _table(
            key_header,
            [
                (f"`{r.path}`", r.type, r.default, r.allowed, _doc(r.meaning))
                for r in stack_rows(stack)
            ],
        )
        out += ["", "Secrets (set only with `pulumi config set --secret`):", ""]
        out += _table(
            ("key", "meaning"),
            [
                (f"`{stack_config.key(name)}`", meanings.get(name, ""))
                for name in SECRET_KEYS[stack]
            ],
        )
    out += [
        "",
        "## Stack outputs",
        "",
        "Declared once in `stacks/outputs.py` (the program exports exactly these). Secret outputs",
        "show only with `pulumi stack output --show-secrets`.",
    ]
    read_by = readers()
    for stack, specs in outputs.CONTRACTS.items():
        out += ["", f"### `{stack}`", ""]
        rows = []
        for spec in specs:
            rows.append(
                (
                    f"`{spec.name}`",
                    "yes" if spec.secret else "no",
                    ", ".join([*read_by[stack].get(spec.name, []), "the user"]),
                    _doc(spec.description),
                )
            )
        out += _table(("output", "secret", "read by", "meaning"), rows)
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv[:1] == ["--check"]:
        if not REFERENCE.exists() or REFERENCE.read_text() != text:
            print("docs/reference.md is out of date: run ./dev docs", file=sys.stderr)
            return 1
        return 0
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
