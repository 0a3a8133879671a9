"""docs/reference.md, generated from the code: every config key of both stacks (from the
pydantic models in stacks/config/ and Pulumi.yaml's project keys) and every stack output (from
stacks/outputs.py), so the reference cannot drift from what the program accepts and exports.

``python -m tools.gen_docs`` (``./dev docs``) writes it; ``--check`` exits non-zero when the file
differs from what this prints (the test suite runs the same comparison).

The walk is generic: a field added to any model, a stack key added to ``*_STACK_KEYS`` with its
model in :data:`STACK_OBJECTS`, or an output added to a contract appears on the next run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml
from pydantic import BaseModel

from stacks import config as stack_config
from stacks import outputs
from stacks.config import loading
from stacks.config.project import NebulaSettings, NetworkPlan
from tools import config_walk

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
    stack_config.STACK_HOMELAB: (
        *stack_config.HOMELAB_SECRET_KEYS,
        *loading.HOMELAB_OPTIONAL_SECRET_KEYS,
    ),
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def project_rows() -> list[config_walk.KeyRow]:
    """The project-wide keys: type and constraints from the models, default and meaning from
    Pulumi.yaml (a test keeps its defaults equal to the models')."""
    declared = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]
    models: dict[str, type[BaseModel]] = {"network": NetworkPlan, "nebula": NebulaSettings}
    rows = []
    for config_key, (section, alias) in stack_config.PROJECT_KEYS.items():
        model = models[section] if section else stack_config.ProjectSettings
        field = next(f for n, f in model.model_fields.items() if (f.alias or n) == alias)
        type_words, allowed = config_walk.describe_type(field.annotation)
        allowed = [*allowed, *config_walk.constraints(field.metadata)]
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if "allowed" in extra:
            allowed = [str(extra["allowed"])]
        spec = declared[stack_config.key(config_key)]
        rows.append(
            config_walk.KeyRow(
                stack_config.key(config_key),
                type_words,
                config_walk.code(spec["default"]),
                "; ".join(dict.fromkeys(allowed)),
                " ".join(str(spec["description"]).split()),
            )
        )
    return rows


def stack_rows(stack: str) -> list[config_walk.KeyRow]:
    rows: list[config_walk.KeyRow] = []
    objects = STACK_OBJECTS[stack]
    for stack_key in STACK_KEYS[stack]:
        if stack_key in SECRET_KEYS[stack]:
            continue
        if stack_key not in objects:
            raise KeyError(f"{stack}: stack key '{stack_key}' has no model in STACK_OBJECTS")
        model = objects[stack_key]
        rows.append(
            config_walk.KeyRow(
                stack_config.key(stack_key),
                "object",
                "required",
                "",
                (model.__doc__ or "").strip(),
            )
        )
        rows.extend(config_walk.walk(model, stack_config.key(stack_key), None, True))
    return rows


STACK_READER = re.compile(r"\baws_gpu\.require\(\s*\"(\w+)\"")
DEV_COMMAND_READERS: dict[str, tuple[str, re.Pattern[str]]] = {
    # ./dev command -> (its module, how it reads an output by name)
    "./dev mesh-join": (
        "tools/mesh_join.py",
        re.compile(r"_require\(outputs, \"(\w+)\"|outputs\.get\(\"(\w+)\""),
    ),
    "./dev models": ("tools/models/cli.py", re.compile(r"^\w+_OUTPUT = \"(\w+)\"", re.M)),
    "./dev backups": ("tools/backups.py", re.compile(r"^\w*OUTPUT = \"(\w+)\"", re.M)),
    "./dev restore": ("tools/restore.py", re.compile(r"\"(etcdBackup\w+)\"")),
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
