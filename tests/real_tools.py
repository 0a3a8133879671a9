"""Locating the real tools the tests check rendered artifacts with.

These checks never skip: a missing tool is a failing test with the install hint (``./dev test``
installs them on a fresh machine).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL_HINT = {
    "nebula": "apt-get install nebula",
    "nebula-cert": "apt-get install nebula",
    "shellcheck": "apt-get install shellcheck",
    "gpg": "apt-get install gnupg",
    "cloud-init": "apt-get install cloud-init",
    "ip": "apt-get install iproute2",
    "ping": "apt-get install iputils-ping",
    "busybox": "apt-get install busybox",
    "promtool": "apt-get install prometheus",
}


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        hint = INSTALL_HINT.get(tool, "install it")
        pytest.fail(f"'{tool}' is not installed ({hint}); ./dev test installs it")
    return path


def run(
    *args: str | Path, check: bool = True, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        input=input,
    )


def shellcheck(script: str, tmp_path: Path, name: str = "script.sh") -> None:
    """Fail with shellcheck's findings unless the bash script is clean."""
    path = tmp_path / name
    path.write_text(script if script.startswith("#!") else "#!/bin/bash\n" + script)
    result = run(require("shellcheck"), "--shell=bash", "--severity=style", path, check=False)
    assert result.returncode == 0, f"shellcheck {name}:\n{result.stdout}{result.stderr}"


def cloud_init_schema(document: str, tmp_path: Path, name: str = "user-data.yaml") -> None:
    """Fail unless cloud-init accepts the document against its schema."""
    path = tmp_path / name
    path.write_text(document)
    result = run(require("cloud-init"), "schema", "--config-file", path, check=False)
    assert result.returncode == 0, f"cloud-init schema {name}:\n{result.stdout}{result.stderr}"
