#!/bin/bash
# Bring one node's Kubernetes object in line with the config (runs on a server, over SSH):
# wait until the node is registered and Ready, set the labels and taints Pulumi manages
# (removing the managed ones the config no longer lists), and uncordon it if drain.sh cordoned
# it. k3s applies node-label/node-taint only at registration
# (https://docs.k3s.io/cli/agent#node-labels-and-taints-for-agents), so edits go through here.
set -euo pipefail

# Parameters: filled in, shell-quoted, by components/k3s/scripts.py.
NODE_NAME=@NODE_NAME@
LABELS=@LABELS@
TAINTS=@TAINTS@
WAIT_SECONDS=@WAIT_SECONDS@
CHANGE=@CHANGE@

readonly labels_note=hybridgpu.io/managed-labels
readonly taints_note=hybridgpu.io/managed-taints
readonly drained_note=hybridgpu.io/drained-for

kubectl() { sudo k3s kubectl "$@"; }

# key=value:Effect or key:Effect -> key:Effect (how kubectl names a taint to remove).
key_effect() {
  local key=${1%%:*}
  echo "${key%%=*}:${1##*:}"
}

annotation() {
  local key=${1//./\\.}
  kubectl get node "$NODE_NAME" -o "jsonpath={.metadata.annotations.${key}}"
}

deadline=$((SECONDS + WAIT_SECONDS))
until kubectl get node "$NODE_NAME" >/dev/null 2>&1; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "$NODE_NAME did not register within ${WAIT_SECONDS}s" >&2
    exit 1
  fi
  sleep 5
done
kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout="${WAIT_SECONDS}s" >/dev/null

# Labels: key=value words; a managed key no longer listed is removed ("key-").
read -r -a wanted_labels <<<"$LABELS"
label_keys=()
for label in "${wanted_labels[@]}"; do
  label_keys+=("${label%%=*}")
done
label_args=("${wanted_labels[@]}")
IFS=, read -r -a previous_labels <<<"$(annotation "$labels_note")"
for key in "${previous_labels[@]}"; do
  if [ -n "$key" ] && [[ " ${label_keys[*]} " != *" $key "* ]]; then
    label_args+=("$key-")
  fi
done
if [ "${#label_args[@]}" -gt 0 ]; then
  kubectl label node "$NODE_NAME" --overwrite "${label_args[@]}" >/dev/null
fi
joined_keys=$(IFS=,; echo "${label_keys[*]}")
kubectl annotate node "$NODE_NAME" --overwrite "$labels_note=$joined_keys" >/dev/null

# Taints: key=value:Effect words. A managed taint whose key and effect the config no longer
# lists is removed ("key:Effect-"); one whose value changed is overwritten below.
read -r -a wanted_taints <<<"$TAINTS"
wanted_key_effects=" "
for taint in "${wanted_taints[@]}"; do
  wanted_key_effects+="$(key_effect "$taint") "
done
IFS=, read -r -a previous_taints <<<"$(annotation "$taints_note")"
for taint in "${previous_taints[@]}"; do
  if [ -n "$taint" ] && [[ "$wanted_key_effects" != *" $(key_effect "$taint") "* ]]; then
    kubectl taint node "$NODE_NAME" "$(key_effect "$taint")-" >/dev/null 2>&1 || true
  fi
done
if [ "${#wanted_taints[@]}" -gt 0 ]; then
  kubectl taint node "$NODE_NAME" --overwrite "${wanted_taints[@]}" >/dev/null
fi
joined_taints=$(IFS=,; echo "${wanted_taints[*]}")
kubectl annotate node "$NODE_NAME" --overwrite "$taints_note=$joined_taints" >/dev/null

if [ -n "$(annotation "$drained_note")" ]; then
  kubectl uncordon "$NODE_NAME" >/dev/null
  kubectl annotate node "$NODE_NAME" "$drained_note-" >/dev/null
  echo "$NODE_NAME uncordoned"
fi
echo "$NODE_NAME is Ready with its labels and taints (change $CHANGE)"
