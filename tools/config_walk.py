"""The config models walked into reference rows: each field's path (as `pulumi config set
--path` takes it), type, default, allowed values and meaning (the field's docstring). Generic:
nested models, lists of models, Optional, Annotated constraints, Literal choices, and a field's
``json_schema_extra={"allowed": ...}`` for a rule a validator enforces (tools/gen_docs.py)."""

from __future__ import annotations

import ipaddress
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

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


def code(value: Any) -> str:
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


def constraints(metadata: list[Any]) -> list[str]:
    """Range, length and pattern constraints of a field or a list item, in words."""
    found: dict[str, Any] = {}
    named: list[str] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            named.extend(constraints(item.metadata))
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


def describe_type(annotation: Any) -> tuple[str, list[str]]:
    """(type in words, constraints of the items) of a leaf field."""
    annotation, metadata = _unannotate(_strip_optional(annotation)[0])
    allowed = constraints(metadata)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "string", ["one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))]
    if origin in (tuple, list):
        item_type, item_allowed = describe_type(typing.get_args(annotation)[0])
        return f"list of {item_type}", [f"each: {w}" for w in item_allowed] + allowed
    if origin is dict:
        key_type, _ = describe_type(typing.get_args(annotation)[0])
        value_type, _ = describe_type(typing.get_args(annotation)[1])
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
    return code(value)


def walk(
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
            allowed = constraints([*field.metadata, *list_meta])
            if "allowed" in allowed_extra:
                allowed = [str(allowed_extra["allowed"])]
            yield KeyRow(
                path,
                kind,
                "required" if required else ("empty" if is_list and not value else "see below"),
                "; ".join(allowed),
                field.description or (nested.__doc__ or "").strip(),
            )
            yield from walk(
                nested,
                f"{path}[]" if is_list else path,
                None if is_list or value is None else value,
                required or required_parent,
            )
            continue
        type_words, allowed = describe_type(field.annotation)
        allowed = [*allowed, *constraints(field.metadata)]
        if "allowed" in allowed_extra:
            allowed = [str(allowed_extra["allowed"])]
        yield KeyRow(
            path,
            type_words,
            _default(field, value, required),
            "; ".join(dict.fromkeys(allowed)),
            field.description or "",
        )
