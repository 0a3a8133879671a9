"""The k3s config.yaml each homelab node's install command carries (``CONFIG_B64`` and the other
parameters of components/k3s/templates/install.sh), read back from a recorded run."""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from tools.offline import StackRun


def script_parameters(script: str) -> dict[str, str]:
    """``NAME=value`` lines of a rendered script, shell-unquoted."""
    found = re.findall(r"^([A-Z][A-Z0-9_]*)=(\S*)$", script, re.MULTILINE)
    return {name: (shlex.split(value) or [""])[0] for name, value in found}


@dataclass(frozen=True)
class NodeInstall:
    node: str
    parameters: dict[str, str]
    config: dict[str, Any]
    """The decoded config.yaml."""


def homelab_installs(run: StackRun) -> Iterator[NodeInstall]:
    """Every homelab node's k3s install command, with its parameters and config.yaml."""
    for reg in run.by_type("command:remote:Command"):
        if not (reg.name.startswith("homelab-k3s-") and reg.name.endswith("-install")):
            continue
        node = reg.name.removeprefix("homelab-k3s-").removesuffix("-install")
        params = script_parameters(reg.plain_inputs["create"])
        config = yaml.safe_load(base64.b64decode(params["CONFIG_B64"]))
        yield NodeInstall(node, params, config)
