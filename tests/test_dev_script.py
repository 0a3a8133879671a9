"""The ``./dev`` script's setup on a fresh Debian/Ubuntu: a Python without ensurepip (the
python3-venv package missing) is installed when root, or named, with a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools import offline

DEV = offline.REPO_ROOT / "dev"


def _fake_bin(tmp_path: Path, *, uid: int) -> Path:
    """python3 without ensurepip until apt-get installed python3-venv; `id -u` says ``uid``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    installed = tmp_path / "python3-venv-installed"
    scripts = {
        "python3": f"""#!/bin/sh
case "$*" in *ensurepip*) [ -e {installed} ] || exit 1 ;; esac
exec {sys.executable} "$@"
""",
        "id": f"#!/bin/sh\necho {uid}\n",
        "apt-get": f"""#!/bin/sh
echo "$*" >> {tmp_path}/apt-calls
case "$*" in *install*python3-venv*) touch {installed} ;; esac
""",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _ensure_python_venv(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DEV_SOURCE_ONLY": "1",
        "DEV_PYTHON3": str(bin_dir / "python3"),
    }
    return subprocess.run(
        ["bash", "-c", f"source {DEV} && ensure_python_venv"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_without_python3_venv_a_user_is_told_the_package_and_dev_fails(tmp_path: Path) -> None:
    result = _ensure_python_venv(_fake_bin(tmp_path, uid=1000))
    assert result.returncode != 0
    assert "python3-venv" in result.stderr
    assert not (tmp_path / "apt-calls").exists()


def test_without_python3_venv_root_installs_it(tmp_path: Path) -> None:
    result = _ensure_python_venv(_fake_bin(tmp_path, uid=0))
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "apt-calls").read_text().splitlines()
    assert any("install" in call and "python3-venv" in call for call in calls), calls


def test_a_python_that_makes_venvs_passes(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path, uid=1000)
    (tmp_path / "python3-venv-installed").touch()
    result = _ensure_python_venv(bin_dir)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "apt-calls").exists()


def test_the_uv_bootstrap_takes_the_locked_uv_with_its_hashes() -> None:
    result = subprocess.run(
        ["bash", "-c", f"source {DEV} && lock_entry uv"],
        capture_output=True,
        text=True,
        env={**os.environ, "DEV_SOURCE_ONLY": "1"},
        check=True,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("uv==")
    assert all("--hash=sha256:" in line for line in lines[1:])
    assert len(lines) > 2
