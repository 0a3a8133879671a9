#!/bin/bash
# hybridgpu-imds-guard: keeps this node's pods away from the EC2 instance metadata service.
# Rendered by components/aws/imds_guard.py; run by hybridgpu-imds-guard.service before k3s.
#
# A pod's packets to 169.254.169.254 enter the host through PREROUTING (the pod network is
# routed, not local); host-network processes (k3s, the node agent, Node Termination Handler in
# IMDS mode) send from OUTPUT and are not affected. The raw table sees the packet before any
# ACCEPT of kube-router or flannel in filter/FORWARD can let it through.
#
# Pods of ALLOWED_NAMESPACES (Mountpoint for S3's pods, which read the instance role's
# credentials from IMDS themselves: awslabs/mountpoint-s3-csi-driver
# pkg/driver/node/credentialprovider/provider_driver.go, docs/UPGRADING_TO_V2.md) are let
# through by address: every INTERVAL seconds their ready sandboxes on this node are listed
# (crictl) and the allow chain is replaced in one iptables-restore. Until a new such pod is
# listed it is refused like any other (fail closed; Mountpoint's pod restarts on failure).
set -euo pipefail

readonly IMDS="169.254.169.254/32"
readonly POD_CIDR="@POD_CIDR@"
readonly ALLOWED_NAMESPACES="@ALLOWED_NAMESPACES@"
readonly INTERVAL="@INTERVAL@"
readonly CHAIN="HYBRIDGPU-IMDS"
readonly ALLOW_CHAIN="HYBRIDGPU-IMDS-ALLOW"

# Add a rule to the raw table unless it is there (idempotent, no flush: never a gap).
ensure_rule() {
  local chain=$1
  shift
  iptables -w -t raw -C "$chain" "$@" 2>/dev/null || iptables -w -t raw -A "$chain" "$@"
}

install_rules() {
  iptables -w -t raw -N "$ALLOW_CHAIN" 2>/dev/null || true
  iptables -w -t raw -N "$CHAIN" 2>/dev/null || true
  ensure_rule "$CHAIN" -j "$ALLOW_CHAIN"
  ensure_rule "$CHAIN" -s "$POD_CIDR" -j DROP
  iptables -w -t raw -C PREROUTING -d "$IMDS" -j "$CHAIN" 2>/dev/null ||
    iptables -w -t raw -I PREROUTING 1 -d "$IMDS" -j "$CHAIN"
}

# Addresses of the ready pod sandboxes of ALLOWED_NAMESPACES on this node, one per line.
allowed_addresses() {
  local namespace id address
  for namespace in $ALLOWED_NAMESPACES; do
    for id in $(crictl pods --namespace "$namespace" --state ready -q); do
      address=$(crictl inspectp -o go-template --template '{{.status.network.ip}}' "$id")
      if [[ $address =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; then
        printf '%s\n' "$address"
      fi
    done
  done
}

# Replace the allow chain in one transaction (a declared chain is flushed by iptables-restore,
# also with --noflush, which leaves every other chain alone).
sync_allowed() {
  local addresses address rules
  addresses=$(allowed_addresses | sort -u)
  rules="*raw"$'\n'":$ALLOW_CHAIN - [0:0]"$'\n'
  for address in $addresses; do
    rules+="-A $ALLOW_CHAIN -s $address/32 -j ACCEPT"$'\n'
  done
  rules+="COMMIT"$'\n'
  printf '%s' "$rules" | iptables-restore -w --noflush
}

main() {
  install_rules
  if [[ -z $ALLOWED_NAMESPACES ]]; then
    sync_allowed
    return 0
  fi
  while true; do
    # Before k3s runs (boot) crictl fails: the allow chain stays as it was (empty at boot).
    sync_allowed || echo "hybridgpu-imds-guard: allowed pods not listed, keeping the chain" >&2
    [[ ${1:-} == "--once" ]] && return 0
    sleep "$INTERVAL"
    install_rules
  done
}

main "$@"
