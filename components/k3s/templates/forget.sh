#!/bin/bash
# Remove one node from the cluster (runs on a server, over SSH): when the node leaves the config
# or its VM is replaced. Without this a replaced VM could not rejoin under its name (k3s keeps
# a node password per name until the Node is deleted, https://docs.k3s.io/architecture), and a
# removed server would stay an etcd member. A server's etcd member is removed first through
# k3s's member controller (etcd.k3s.cattle.io/remove, k3s-io/k3s pkg/etcd/member_controller.go).
set -euo pipefail

# Parameters: filled in, shell-quoted, by components/k3s/scripts.py.
NODE_NAME=@NODE_NAME@
IS_SERVER=@IS_SERVER@
TIMEOUT_SECONDS=@TIMEOUT_SECONDS@

kubectl() { sudo k3s kubectl "$@"; }

if ! kubectl get node "$NODE_NAME" >/dev/null 2>&1; then
  echo "$NODE_NAME is not in the cluster"
  exit 0
fi
# Best effort: the node may already be gone or unreachable.
kubectl drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --force \
  --timeout="${TIMEOUT_SECONDS}s" >/dev/null 2>&1 || true
if [ "$IS_SERVER" = true ]; then
  kubectl annotate node "$NODE_NAME" --overwrite etcd.k3s.cattle.io/remove=true >/dev/null
  deadline=$((SECONDS + TIMEOUT_SECONDS))
  until [ -n "$(kubectl get node "$NODE_NAME" \
    -o 'jsonpath={.metadata.annotations.etcd\.k3s\.cattle\.io/removed-node-name}')" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "k3s did not remove the etcd member of $NODE_NAME within ${TIMEOUT_SECONDS}s" >&2
      exit 1
    fi
    sleep 5
  done
fi
kubectl delete node "$NODE_NAME" --wait=true >/dev/null
echo "$NODE_NAME removed from the cluster"
