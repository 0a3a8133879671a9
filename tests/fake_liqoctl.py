"""A fake ``liqoctl`` the peering scripts run against, recording exactly what it was called with.

Each call writes its argv (NUL-separated, as the shell split it) to ``argv/<n>`` under the run
directory, so checks read the arguments liqoctl would really receive (quoting, arrays and line
continuations resolved by bash), plus a human-readable log of the arguments and of the kubeconfig
files it could see. ``version`` answers ``$FAKE_VERSION``; ``unpeer`` fails with
``$FAKE_UNPEER_ERROR`` when set.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from components.federation.liqo_peering import CONSUMER_ENV, PROVIDER_ENV
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


def run_script(
    script: str,
    run_dir: Path,
    *,
    version: str = "v1.2.0",
    path_has_liqoctl: bool = True,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with bash, the fake liqoctl first on PATH, both kubeconfigs in the env."""
    bash = require("bash")
    bin_dir = run_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "argv").mkdir(exist_ok=True)
    if path_has_liqoctl:
        fake = bin_dir / "liqoctl"
        fake.write_text(FAKE_LIQOCTL)
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {
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
