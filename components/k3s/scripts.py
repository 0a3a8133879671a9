"""The shell scripts Pulumi runs on the homelab k3s nodes, kept as template files in
``templates/`` (read and shellchecked as written) and filled by :func:`render` (pure): each
``@NAME@`` placeholder stands alone as ``NAME=@NAME@`` and gets a shell-quoted value, so any
value is safe in the script (components/base/templates.py does the substitution and refuses a
missing or unused value).
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from components.base.templates import PLACEHOLDER, fill, read_template

TEMPLATES_DIR = Path(__file__).parent / "templates"


def template(name: str) -> str:
    """The template text of ``templates/<name>``."""
    return read_template(__file__, name)


def parameters(name: str) -> tuple[str, ...]:
    """The placeholders ``templates/<name>`` declares, in order."""
    return tuple(dict.fromkeys(PLACEHOLDER.findall(template(name))))


def render(name: str, **values: str | int | bool) -> str:
    """``templates/<name>`` with every placeholder set to its shell-quoted value."""
    quoted = {
        key: shlex.quote(str(value).lower() if isinstance(value, bool) else str(value))
        for key, value in values.items()
    }
    return fill(template(name), quoted)


def digest(text: str) -> str:
    """A short, stable name for a script's content (what a drain was for)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
