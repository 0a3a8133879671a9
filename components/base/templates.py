"""Template files beside the components: shell scripts, systemd units and configs kept as real
files (so shellcheck and readers see them as written) with ``@NAME@`` placeholders, which never
clash with shell's ``${name}``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")


def fill(template: str, values: Mapping[str, str | int]) -> str:
    """Replace every ``@NAME@``; a placeholder without a value, or a value without a placeholder,
    is an error (a typo must not ship a literal ``@NAME@`` to a node)."""
    used = set(PLACEHOLDER.findall(template))
    missing = sorted(used - set(values))
    unused = sorted(set(values) - used)
    if missing or unused:
        raise ValueError(f"template placeholders: missing values {missing}, unused values {unused}")
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def read_template(module_file: str, name: str) -> str:
    """The text of template ``name`` in the directory of ``module_file`` (pass ``__file__``)."""
    return (Path(module_file).resolve().parent / "templates" / name).read_text()


def render(module_file: str, name: str, values: Mapping[str, str | int]) -> str:
    return fill(read_template(module_file, name), values)
