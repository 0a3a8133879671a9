#!/bin/bash
# Install the pinned k3s release (@K3S_ROLE@) if another version (or none) is installed, and keep
# the unit enabled so the node rejoins after every stop/start. Run by the node agent after each
# sync (components/aws/templates/install-k3s.sh); idempotent, prints no secret.
#
# The installer comes from the release's own tag (so it is pinned too) and checks the binary
# against the release's sha256sum file.
set -euo pipefail
readonly version="@K3S_VERSION@"
readonly unit="@K3S_UNIT@"
readonly role="@K3S_ROLE@"
if [ "$role" = server ]; then
  # The API audit log's directory, created 0700 before k3s starts as k3s's hardening guide does
  # (k3s-io/docs docs/security/hardening-guide.md); the policy is a synced file.
  install -d -m 0700 /var/lib/rancher/k3s/server/logs
fi
if [[ "$(k3s --version 2>/dev/null || true)" != *"k3s version ${version} "* ]]; then
  installer=$(mktemp)
  trap 'rm -f "$installer"' EXIT
  curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 \
    --retry 5 --retry-delay 5 --output "$installer" "@INSTALLER_URL@"
  # INSTALL_K3S_SKIP_START: this script starts the unit itself (below), bounded.
  INSTALL_K3S_VERSION="$version" INSTALL_K3S_EXEC="@K3S_ROLE@" INSTALL_K3S_SKIP_START=true \
    sh "$installer" </dev/null >/dev/null
  echo "hybridgpu: installed k3s ${version}; restarting ${unit}"
  systemctl daemon-reload
  systemctl enable "$unit"
  systemctl restart --no-block "$unit"
fi
# GPUs only through the device plugin (its volume-mounts device list): the NVIDIA runtime must
# ignore NVIDIA_VISIBLE_DEVICES in unprivileged containers (NVIDIA gpu-operator docs security.rst
# "Preventing Unprivileged Access to GPUs"; `nvidia-ctk config --in-place --set`, NVIDIA
# container-toolkit docs). The runtime reads its config.toml per container: no restart needed.
if command -v nvidia-ctk >/dev/null 2>&1; then
  nvidia-ctk config --in-place --set accept-nvidia-visible-devices-envvar-when-unprivileged=false
  nvidia-ctk config --in-place --set accept-nvidia-visible-devices-as-volume-mounts=true
fi
systemctl enable "$unit" >/dev/null 2>&1
if ! systemctl is-active --quiet "$unit"; then
  # A server is waited for (bounded); an agent is not: an agent that cannot reach its server
  # would block `systemctl start` forever (TimeoutStartSec=0 in the k3s unit).
  @START_COMMAND@
fi
