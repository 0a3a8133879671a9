"""Read a deployed stack's outputs with the Pulumi CLI (``pulumi stack output --json``)."""

from __future__ import annotations

import json
import subprocess
from typing import Any


class StackOutputsError(RuntimeError):
    """The CLI is missing or refused; the message says which and what to pass instead."""


def read_stack_outputs(stack: str, *, show_secrets: bool = False, instead: str) -> dict[str, Any]:
    """Outputs of ``stack``; ``instead`` names the option that avoids the CLI (for the error)."""
    command = ["pulumi", "stack", "output", "--json", "--stack", stack]
    if show_secrets:
        command.append("--show-secrets")
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    except FileNotFoundError:
        raise StackOutputsError(f"the pulumi CLI is not on PATH: {instead}") from None
    if result.returncode != 0:
        raise StackOutputsError(f"`{' '.join(command)}` failed: {result.stderr.strip()}; {instead}")
    return json.loads(result.stdout)
