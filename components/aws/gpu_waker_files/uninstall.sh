#!/bin/bash
# Removes gpu-waker from the AWS control node (Pulumi delete; hybridgpu). Idempotent.
set -euo pipefail
readonly PREFIX="@PREFIX@"
readonly ETC_DIR="@ETC_DIR@"
readonly UNIT="gpu-waker.service"
systemctl disable --now "$UNIT" >/dev/null 2>&1 || true
rm -f "@SYSTEMD_DIR@/$UNIT"
systemctl daemon-reload
k3s kubectl -n "@SA_NAMESPACE@" delete secret "@SA_SECRET@" --ignore-not-found >/dev/null || true
rm -rf "$PREFIX" "$ETC_DIR"
echo "gpu-waker: removed"
