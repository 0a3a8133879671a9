"""A fake ``liqoctl`` the peering scripts run against, recording exactly what it was called with.

Each call writes its argv (NUL-separated, as the shell split it) to ``argv/<n>`` under the run
directory, so checks read the arguments liqoctl would really receive (quoting, arrays and line
continuations resolved by bash), plus a human-readable log of the arguments and of the kubeconfig
files it could see. ``version`` answers ``$FAKE_VERSION``; ``unpeer`` fails with
``$FAKE_UNPEER_ERROR`` when set.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

from components.federation.liqo_peering import (
    ARCHIVE_ENV,
    CONSUMER_ENV,
    LIQOCTL_SHA256,
    PLATFORMS,
    PROVIDER_ENV,
)
from tests.real_tools import require

FAKE_LIQOCTL = """#!/bin/bash
n=$(find "$FAKE_ARGV_DIR" -type f | wc -l)
printf '%s\\0' "$@" > "$FAKE_ARGV_DIR/$n"
if [ "$1" = version ]; then echo "Client version: $FAKE_VERSION"; exit 0; fi
{
  echo "ARGS $*"
  for f in $(printf '%s\\n' "$@" | grep '/consumer$\\|/provider$'); do
    echo "FILE $f $(stat -c %a "$f") $(cat "$f")"
  done
} >> "$FAKE_LOG"
if [ "$1" = unpeer ] && [ -n "${FAKE_UNPEER_ERROR:-}" ]; then
  echo "$FAKE_UNPEER_ERROR" >&2
  exit 1
fi
"""


def archive_bytes(content: str = FAKE_LIQOCTL) -> bytes:
    """A release-shaped ``liqoctl-<os>-<arch>.tar.gz`` (``liqoctl`` and ``LICENSE``) holding the
    fake; byte-identical on every call (fixed mtimes), so its SHA-256 can be pinned."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data, mode in (("liqoctl", content.encode(), 0o755), ("LICENSE", b"x\n", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


ARCHIVE_SHA256 = hashlib.sha256(archive_bytes()).hexdigest()
PINNED = dict.fromkeys(PLATFORMS.values(), ARCHIVE_SHA256)
"""What the test settings pin: the fake archive's SHA-256 on every platform."""


def run_script(
    script: str,
    run_dir: Path,
    *,
    version: str = "v1.2.0",
    archive: bytes | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with bash, the fake liqoctl's archive named by $HYBRIDGPU_LIQOCTL_ARCHIVE
    (``archive``: other bytes, e.g. a tampered archive; ``b""``: no archive given, so the script
    downloads from its URL), both kubeconfigs in the env. Scripts recorded from a stack run pin
    the real release archives: their digests are swapped for the fake archive's here, and only
    here. The fake is also on PATH, for snippets that call ``liqoctl`` directly."""
    bash = require("bash")
    for real in {d for digests in LIQOCTL_SHA256.values() for d in digests.values()}:
        script = script.replace(f"sha={real}", f"sha={ARCHIVE_SHA256}")
    bin_dir = run_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "argv").mkdir(exist_ok=True)
    on_path = bin_dir / "liqoctl"
    on_path.write_text(FAKE_LIQOCTL)
    on_path.chmod(0o755)
    archive_env: dict[str, str] = {}
    data = archive_bytes() if archive is None else archive
    if data:
        path = run_dir / "liqoctl-archive.tar.gz"
        path.write_bytes(data)
        archive_env[ARCHIVE_ENV] = str(path)
    env = {
        **archive_env,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_VERSION": version,
        "FAKE_LOG": str(run_dir / "log"),
        "FAKE_ARGV_DIR": str(run_dir / "argv"),
        "TMPDIR": str(run_dir),
        CONSUMER_ENV: "consumer-kubeconfig-content",
        PROVIDER_ENV: "provider-kubeconfig-content",
        **(extra_env or {}),
    }
    return subprocess.run(  # noqa: PLW1510 - the caller checks the result
        [bash, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )


def invocations(run_dir: Path) -> list[list[str]]:
    """The argv of every liqoctl call of the run, in call order."""
    calls = sorted((run_dir / "argv").iterdir(), key=lambda p: int(p.name))
    return [call.read_bytes().decode().split("\0")[:-1] for call in calls]
