"""Checks of the command-line tools' inputs against upstream's own definitions: the flags the
liqoctl scripts pass (``liqoctl/flags-<version>.json``), and Pulumi.yaml and the stack files as
the Pulumi CLI reads them (``pulumi/project-<version>.json`` and the CLI's own rules in
pulumi/pulumi@v3.259.0 sdk/go/common/workspace/project.go).

Each check returns a list of problems (empty: all good) naming the flag, field or key.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tests.upstream_checks import schema_errors
from tests.upstream_data import upstream_dir

PULUMI_SCHEMA_VERSION = "v3.259.0"


def liqoctl_flags(version: str) -> dict[str, Any]:
    """Flag names per liqoctl command at ``version``; no data for the version fails."""
    path = upstream_dir() / "liqoctl" / f"flags-{version}.json"
    if not path.is_file():
        pytest.fail(f"liqoctl {version}: no flag data at {path}; add it before bumping the pin")
    return json.loads(path.read_text())


def pulumi_project_schema() -> dict[str, Any]:
    """The schema the Pulumi CLI embeds to validate Pulumi.yaml
    (pulumi/pulumi@v3.259.0 sdk/go/common/workspace/project.json)."""
    path = upstream_dir() / "pulumi" / f"project-{PULUMI_SCHEMA_VERSION}.json"
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------
# liqoctl command lines
# ---------------------------------------------------------------------------------------------

SHORT_FLAGS = {"n": "namespace"}
"""Short forms the flag data names (its ``namespace`` note: ``--namespace/-n``)."""


def liqoctl_problems(argv: Sequence[str], flags: Mapping[str, Any]) -> list[str]:
    """Flags of one liqoctl invocation (argv without the program name) that the command does not
    take at the pinned version: its own flags, the root command's, the kubeconfig-access flags
    every command takes, and on commands that talk to both clusters their ``remote-`` forms and
    the Liqo namespace flag."""
    if not argv:
        return ["liqoctl called without a command"]
    command = argv[0]
    commands = flags["commands"]
    if command not in commands or command == "root":
        return [f"liqoctl {command}: no such command at {flags['liqoctl']}"]
    allowed = set(commands[command]) | set(commands.get("root", ())) | set(flags["global"])
    if command in flags["remote"]["commands"]:
        allowed |= set(flags["remote"]["flags"]) | {"namespace"}
    problems = []
    for token in argv[1:]:
        if token == "--":
            break
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0]
        elif re.fullmatch(r"-[A-Za-z]", token):
            name = SHORT_FLAGS.get(token[1], token)
        else:
            continue
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f"; did you mean --{close[0]}?" if close else ""
            problems.append(
                f"liqoctl {command}: {token} is not a flag of '{command}' at "
                f"{flags['liqoctl']}{hint}"
            )
    return problems


# ---------------------------------------------------------------------------------------------
# Pulumi.yaml and the stack files, as the Pulumi CLI reads them
# ---------------------------------------------------------------------------------------------

PROJECT_FIELDS_OUTSIDE_SCHEMA = ("requiredPulumiVersion",)
"""Top-level fields of the CLI's Project struct that project.json does not list
(pulumi/pulumi@v3.259.0 sdk/go/common/workspace/project.go, type Project)."""
STACK_FILE_FIELDS = (
    "secretsprovider",
    "encryptedkey",
    "encryptionsalt",
    "config",
    "environment",
    "mainEnvironment",
)
"""Fields of a stack file (project.go, type ProjectStack)."""


def _config_value_fits(type_name: str, items: Mapping[str, Any] | None, value: Any) -> bool:
    """The CLI's ValidateConfigValue (project.go): integers may be whole floats or integer
    strings, booleans the strings "true"/"false", arrays are checked item by item."""
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return True
        return isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value) is not None
    if type_name == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    if type_name == "object":
        return isinstance(value, dict)
    if not isinstance(value, list) or items is None:
        return False
    return all(_config_value_fits(items.get("type", ""), items.get("items"), v) for v in value)


def _project_key(project_name: str, key: str) -> str:
    return key if ":" in key else f"{project_name}:{key}"


def project_problems(project: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """What ``pulumi`` would reject in Pulumi.yaml (project.go ValidateProject: the embedded
    project.json schema, then Project.Validate), plus top-level fields the CLI does not know:
    it keeps those silently (``AdditionalKeys``), so a typo'd field would just be ignored."""
    name = project.get("name")
    if not isinstance(name, str) or not name:
        return ["Pulumi.yaml: the project needs a non-empty string 'name'"]
    problems = [
        f"Pulumi.yaml: {error}"
        for error in schema_errors(project, schema, "the Pulumi CLI's project.json")
    ]
    known = set(schema.get("properties", {})) | set(PROJECT_FIELDS_OUTSIDE_SCHEMA)
    for field in project:
        if field not in known:
            close = difflib.get_close_matches(field, sorted(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"Pulumi.yaml: '{field}' is not a project field the CLI reads{hint}")
    config = project.get("config")
    for key, declaration in config.items() if isinstance(config, dict) else []:
        if not isinstance(declaration, dict):
            continue  # shorthand default; the schema checked its type
        where = f"Pulumi.yaml config '{key}'"
        type_name = declaration.get("type")
        if "default" in declaration and "value" in declaration:
            problems.append(f"{where}: cannot have both 'default' and 'value'")
        namespaced = ":" not in key or key.startswith(f"{name}:")
        if not namespaced:
            if type_name is not None or "default" in declaration:
                problems.append(f"{where}: another package's key takes only a 'value'")
            continue
        if type_name == "array" and "items" not in declaration:
            problems.append(f"{where}: an array declares its 'items' type")
        default = declaration.get("default")
        items = declaration.get("items")
        if type_name and default is not None and not _config_value_fits(type_name, items, default):
            problems.append(f"{where}: default is not of type '{type_name}'")
    return problems


def stack_file_problems(
    stack: str, stack_file: Mapping[str, Any], project: Mapping[str, Any]
) -> list[str]:
    """A stack file's fields, and each value of a key Pulumi.yaml types checked against that
    type as the CLI does before running the program (secure values are checked once decrypted,
    which needs the stack's key: not here). A typed key with no default must be set."""
    where = f"Pulumi.{stack}.yaml"
    problems = [
        f"{where}: '{field}' is not a stack file field the CLI reads"
        for field in stack_file
        if field not in STACK_FILE_FIELDS
    ]
    values = stack_file.get("config") or {}
    name = str(project["name"])
    for key, declaration in (project.get("config") or {}).items():
        if not isinstance(declaration, dict) or declaration.get("type") is None:
            continue
        full_key = _project_key(name, key)
        if full_key not in values:
            if "default" not in declaration and "value" not in declaration:
                problems.append(f"{where}: missing '{full_key}' (typed, no default)")
            continue
        value = values[full_key]
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue
        if not _config_value_fits(declaration["type"], declaration.get("items"), value):
            problems.append(
                f"{where}: '{full_key}' is {value!r}, not of the declared type "
                f"'{declaration['type']}'"
            )
    return problems
