"""Values as the SDK serializes them: unwrapping secret markers, finding secret paths,
redacting for display, JSON-able forms."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.runtime import rpc


def unwrap(value: Any) -> Any:
    """The plain value, with every secret wrapper (at any depth) removed."""
    if rpc.is_rpc_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def secret_paths(value: Any, path: str = "") -> list[str]:
    """Dotted paths (``a.b[0]``) of every secret wrapper inside ``value``."""
    if rpc.is_rpc_secret(value):
        return [path or "."]
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += secret_paths(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += secret_paths(v, f"{path}[{i}]")
    return found


def redact(value: Any) -> Any:
    """The value with every secret replaced by ``"[secret]"`` (for printing and JSON plans)."""
    if rpc.is_rpc_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return jsonable(value)


def jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, pulumi.asset.StringAsset):
        return {"stringAsset": value.text}
    if isinstance(value, pulumi.asset.FileAsset):
        return {"fileAsset": str(value.path)}
    return repr(value)
