"""How a bad configuration is reported: one ``ConfigError`` whose lines each name the full config
key (``hybridgpu:homelab.gpuWorkers[1].ip``), the bad value and what is allowed."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import pulumi
from pydantic import BaseModel, ValidationError

from stacks.config.fields import PROJECT, key


class ConfigError(pulumi.RunError):
    """Invalid stack configuration. ``RunError`` makes the Pulumi CLI print it without a trace."""


_M = TypeVar("_M", bound=BaseModel)
RELATIVE_PATH_PREFIX = re.compile(
    r"^(\[\d+\]|[A-Za-z][A-Za-z0-9]*)(\[\d+\])*(\.[A-Za-z][A-Za-z0-9]*(\[\d+\])*)*: "
)

Locate = Callable[[tuple[int | str, ...]], str]
"""Maps a pydantic location of a project-wide model back to the operator's config key."""


def validate(
    model: type[_M], data: Any, config_key: str | None, locate: Locate | None = None
) -> _M:
    """Validate, turning pydantic's error into one line per problem that names the key.

    ``config_key`` is the stack object's key (``aws``, ``homelab``); for the project-wide keys it
    is None and ``locate`` names each problem's key instead."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe(err, config_key, locate)) from None


def describe(err: ValidationError, config_key: str | None, locate: Locate | None = None) -> str:
    lines = []
    problems = err.errors()
    for problem in problems:
        if problem["type"] == "too_short" and any(
            other is not problem and other["loc"][: len(problem["loc"])] == problem["loc"]
            for other in problems
        ):
            continue  # the list is short only because one of its items was rejected: say that

        path = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"]
        ).lstrip(".")
        where = key(config_key) if config_key else ""
        if config_key is None and locate is not None and problem["loc"]:
            # project-wide keys: map section.field back to the operator's key
            where = locate(problem["loc"])
            path = ""
        full = f"{where}.{path}" if where and path else (where or path)
        message = problem["msg"].removeprefix("Value error, ")
        if message.startswith(f"{PROJECT}:"):
            full = ""  # a cross-field check that already names its keys
        elif RELATIVE_PATH_PREFIX.match(message) and full:
            # a model-level check that names the field relative to the model: join the paths
            full, message = f"{full}.{message.split(': ', 1)[0]}", message.split(": ", 1)[1]
            full = full.replace(".[", "[")
        value = problem.get("input")
        shown = (
            ""
            if isinstance(value, dict | list) or value is None or str(value) in message
            else f" (got {value!r})"
        )
        lines.append(f"{full}: {message}{shown}" if full else f"{message}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
