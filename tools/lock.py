"""The main venv's lock: ``requirements.txt``, every package ``./dev`` and ``pulumi install``
install (runtime and dev), exact versions with hashes, resolved from pyproject.toml's ranges.

``python -m tools.lock`` (``./dev lock``) re-resolves it with uv; :func:`stale` says why the
committed lock no longer matches the declared ranges (the test suite runs it, so CI fails on a
range changed without relocking). The lock records a digest of the ranges it was made from: a
changed range is caught even when the old pin still happens to satisfy it.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = REPO_ROOT / "pyproject.toml"
LOCK = REPO_ROOT / "requirements.txt"
EXTRAS = ("dev", "models")
"""Extras of pyproject.toml installed into the main venv beside the runtime dependencies."""
PYTHON_VERSION = "3.11"
"""Lowest Python the program supports (pyproject requires-python); the lock is universal
(``uv pip compile --universal``), so it holds for every platform and every newer Python."""
DIGEST_PREFIX = "# ranges-sha256: "
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")


def declared(pyproject: Path = PYPROJECT) -> list[str]:
    """Runtime dependencies and the installed extras, as declared (ranges)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [*project["dependencies"], *(req for extra in EXTRAS for req in extras[extra])]


def ranges_digest(requirements: list[str]) -> str:
    """Digest of the declared ranges (order-insensitive, whitespace-insensitive)."""
    normalized = sorted(str(Requirement(req)) for req in requirements)
    return hashlib.sha256(json.dumps(normalized).encode()).hexdigest()


def pins(lock_text: str) -> dict[str, list[str]]:
    """Package name -> locked versions (two where a marker splits them, e.g. by Python)."""
    found: dict[str, list[str]] = {}
    for line in lock_text.splitlines():
        match = _PIN.match(line)
        if match:
            found.setdefault(canonicalize_name(match[1]), []).append(match[2])
    return found


def stale(lock_text: str, requirements: list[str]) -> list[str]:
    """Why the lock does not match the declared ranges (empty: it does)."""
    problems: list[str] = []
    recorded = next(
        (
            line.removeprefix(DIGEST_PREFIX)
            for line in lock_text.splitlines()
            if line.startswith(DIGEST_PREFIX)
        ),
        None,
    )
    if recorded != ranges_digest(requirements):
        problems.append(
            "requirements.txt was locked from other ranges than pyproject.toml declares "
            "(dependencies, extras " + ", ".join(EXTRAS) + "); run ./dev lock"
        )
    locked = pins(lock_text)
    for raw in requirements:
        req = Requirement(raw)
        versions = locked.get(canonicalize_name(req.name))
        if not versions:
            problems.append(f"{req.name}: declared ({raw}) but not in requirements.txt")
        elif not all(req.specifier.contains(v, prereleases=True) for v in versions):
            problems.append(f"{req.name}: locked {', '.join(versions)} is outside {raw}")
    unhashed = [name for name, block in _blocks(lock_text) if "--hash=sha256:" not in block]
    if unhashed:
        problems.append(f"no hash for {', '.join(unhashed)}")
    return problems


def _blocks(lock_text: str) -> list[tuple[str, str]]:
    """(name, the requirement's lines) per locked package."""
    blocks: list[tuple[str, str]] = []
    for line in lock_text.splitlines():
        match = _PIN.match(line)
        if match:
            blocks.append((match[1], line))
        elif blocks and line.startswith(" "):
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + "\n" + line)
    return blocks


def compile_lock(uv: str) -> str:
    """Resolve the declared ranges with uv. Versions already in the lock are kept where they
    still satisfy the ranges (uv prefers the output file's pins), so relocking after a range
    change moves only what it must."""
    command = [
        uv, "pip", "compile", "-q", str(PYPROJECT),
        *(arg for extra in EXTRAS for arg in ("--extra", extra)),
        "--universal", "--python-version", PYTHON_VERSION, "--generate-hashes",
        "--no-header", "-o", str(LOCK),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO_ROOT)
    body = LOCK.read_text()
    header = (
        "# The main venv's lock (runtime + dev + models), made by `./dev lock` (tools/lock.py)\n"
        "# from pyproject.toml's ranges; read by ./dev (uv pip sync --require-hashes) and by\n"
        "# `pulumi install` (Pulumi.yaml toolchain pip: pip install -r requirements.txt, hash\n"
        "# checking because every line carries hashes). Do not edit: change a range, relock.\n"
        f"{DIGEST_PREFIX}{ranges_digest(declared())}\n"
    )
    return header + body


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        problems = stale(LOCK.read_text(), declared())
        for problem in problems:
            print(f"lock: {problem}", file=sys.stderr)
        return 1 if problems else 0
    uv = str(Path(sys.executable).parent / "uv")
    LOCK.write_text(compile_lock(uv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
