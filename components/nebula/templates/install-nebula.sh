#!/bin/bash
# Install Nebula @NEBULA_VERSION@ (pinned, checksum-verified). Idempotent: does nothing when that
# version is installed. Written by Pulumi: components/nebula/templates/install-nebula.sh
set -euo pipefail
want="@NEBULA_VERSION@"
installed=$(@BIN_DIR@/nebula -version 2>/dev/null || true)
if [ "$installed" = "Version: ${want#v}" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 5 --retry-delay 3 -o "$tmp/nebula.tar.gz" "@NEBULA_URL@"
echo "@NEBULA_SHA256@  $tmp/nebula.tar.gz" | sha256sum -c --quiet
tar -xzf "$tmp/nebula.tar.gz" -C "$tmp" nebula nebula-cert
install -m 0755 -o root -g root "$tmp/nebula" "$tmp/nebula-cert" @BIN_DIR@/
