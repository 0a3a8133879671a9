"""The main venv's lock (requirements.txt): made from pyproject.toml's ranges, every package
hash-pinned; a range changed without `./dev lock` fails here (and so in CI)."""

from __future__ import annotations

import yaml

from tools import lock, offline


def test_the_lock_matches_the_declared_ranges() -> None:
    problems = lock.stale(lock.LOCK.read_text(), lock.declared())
    assert problems == [], "\n".join(problems)


def test_a_changed_range_without_relocking_is_stale() -> None:
    requirements = lock.declared()
    widened = [
        "pulumi-aws>=7.51,<9" if req.startswith("pulumi-aws") else req for req in requirements
    ]
    assert widened != requirements
    problems = lock.stale(lock.LOCK.read_text(), widened)
    assert any("run ./dev lock" in p for p in problems)
    # a range the locked version falls outside is named
    narrowed = [*requirements, "pydantic>=99"]
    problems = lock.stale(lock.LOCK.read_text(), narrowed)
    assert any(p.startswith("pydantic: locked") for p in problems)


def test_every_locked_package_has_hashes() -> None:
    text = lock.LOCK.read_text()
    assert lock.stale(text, lock.declared()) == []
    dropped = text.replace("    --hash=sha256:", "    # hash removed ", 2)
    assert any(p.startswith("no hash for") for p in lock.stale(dropped, lock.declared()))


def test_pulumi_install_reads_the_lock() -> None:
    """Pulumi.yaml's pip toolchain runs `pip install -r requirements.txt` in the virtualenv
    (pulumi/pulumi sdk/python/toolchain/pip.go@v3.259.0, InstallDependencies); with hashes on
    every line pip checks all of them, so `pulumi install` and ./dev install the same files."""
    project = yaml.safe_load((offline.REPO_ROOT / "Pulumi.yaml").read_text())
    assert project["runtime"]["options"] == {"toolchain": "pip", "virtualenv": ".venv"}
    assert lock.LOCK.name == "requirements.txt"
    assert "pulumi" in lock.pins(lock.LOCK.read_text())
