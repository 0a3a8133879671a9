"""The shell scripts Pulumi runs on the homelab k3s nodes, kept as files in ``scripts/`` so they
are read and shellchecked as written, and filled by :func:`render` (pure).

A template declares each parameter on a line of its own, ``NAME=${NAME:?}`` (required, not
empty) or ``NAME=${NAME?}`` (may be empty); :func:`render` replaces exactly those lines with
shell-quoted values and refuses a missing or unknown parameter.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from functools import cache
from pathlib import Path

SCRIPTS_DIR = Path(__file__).parent / "scripts"
_PARAMETER = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=\$\{(?P=name):?\?\}$", re.MULTILINE)


@cache
def template(name: str) -> str:
    """The template text of ``scripts/<name>``."""
    return (SCRIPTS_DIR / name).read_text()


def parameters(name: str) -> tuple[str, ...]:
    """The parameters ``scripts/<name>`` declares, in order."""
    return tuple(m.group("name") for m in _PARAMETER.finditer(template(name)))


def render(name: str, **values: str | int | bool) -> str:
    """``scripts/<name>`` with its parameter lines set to ``values`` (shell-quoted)."""
    declared = parameters(name)
    missing = sorted(set(declared) - set(values))
    unknown = sorted(set(values) - set(declared))
    if missing or unknown:
        raise ValueError(f"{name}: missing parameters {missing}, unknown parameters {unknown}")

    def fill(match: re.Match[str]) -> str:
        value = values[match.group("name")]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return f"{match.group('name')}={shlex.quote(text)}"

    return _PARAMETER.sub(fill, template(name))


def digest(text: str) -> str:
    """A short, stable name for a script's content (what a drain was for)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
