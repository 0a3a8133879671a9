#!/bin/bash
# Cordon and drain one node before Pulumi changes its k3s install (runs on a server, over SSH).
# A node that has not registered yet (first install) has nothing to drain. The annotation tells
# membership.sh to uncordon the node once the change is done; a node an operator cordoned by
# hand is left cordoned.
set -euo pipefail

# Parameters: filled in, shell-quoted, by components/k3s/scripts.py.
NODE_NAME=@NODE_NAME@
DRAIN_TIMEOUT_SECONDS=@DRAIN_TIMEOUT_SECONDS@
CHANGE=@CHANGE@

kubectl() { sudo k3s kubectl "$@"; }

if ! kubectl get node "$NODE_NAME" >/dev/null 2>&1; then
  echo "$NODE_NAME is not registered yet: nothing to drain"
  exit 0
fi
kubectl annotate node "$NODE_NAME" --overwrite "hybridgpu.io/drained-for=$CHANGE" >/dev/null
# --force: JupyterHub's single-user pods have no controller; their homes live on NFS.
kubectl drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --force \
  --timeout="${DRAIN_TIMEOUT_SECONDS}s"
echo "$NODE_NAME drained for change $CHANGE"
