#!/bin/bash
# Install, upgrade or reconfigure k3s on one node; run over SSH by Pulumi (K3sCluster).
# The join token arrives on stdin, so it is in no command line and in no log; nothing secret is
# printed. Safe to re-run: k3s is (re)installed only when the pinned version differs or the
# service is down, and restarted only when its config or token changed.
set -euo pipefail
umask 077

# Parameters: filled in, shell-quoted, by components/k3s/scripts.py.
NODE_NAME=@NODE_NAME@
INSTALL_EXEC=@INSTALL_EXEC@
SERVICE=@SERVICE@
K3S_VERSION=@K3S_VERSION@
INSTALLER_URL=@INSTALLER_URL@
CONFIG_B64=@CONFIG_B64@
MANIFEST_B64=@MANIFEST_B64@
PSA_B64=@PSA_B64@
SCRATCH_MOUNT=@SCRATCH_MOUNT@
WAIT_FOR_URL=@WAIT_FOR_URL@
AUDIT_POLICY_B64=@AUDIT_POLICY_B64@

readonly config_path=/etc/rancher/k3s/config.yaml
readonly token_path=/etc/rancher/k3s/cluster-token
readonly audit_policy_path=/etc/rancher/k3s/audit-policy.yaml
readonly audit_log_dir=/var/lib/rancher/k3s/server/logs
readonly manifest_path=/var/lib/rancher/k3s/server/manifests/hybridgpu-kube-vip.yaml
readonly psa_path=@PSA_PATH@
# Proxmox names a VM disk by its bus slot: the scratch disk is scsi1 (components/proxmox/vm.py).
readonly scratch_device=/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1
readonly scratch_label=hgscratch

# cloud-init exits 0 when done, 2 when done with recoverable errors, 1 on failure.
status=0
sudo timeout 900 cloud-init status --wait </dev/null >/dev/null || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then
  echo "cloud-init did not finish (exit $status) on $NODE_NAME" >&2
  exit 1
fi

if [ -n "$SCRATCH_MOUNT" ]; then
  # Format the scratch disk once (never a disk that has a file system), mount it by label now
  # and at boot (nofail: a missing disk never blocks boot).
  if [ ! -b "$scratch_device" ]; then
    echo "scratch disk $scratch_device not found on $NODE_NAME" >&2
    exit 1
  fi
  if ! sudo blkid "$scratch_device" >/dev/null 2>&1; then
    sudo mkfs.ext4 -q -L "$scratch_label" "$scratch_device"
  fi
  sudo install -d -m 0755 "$SCRATCH_MOUNT"
  if ! grep -q "^LABEL=$scratch_label " /etc/fstab; then
    echo "LABEL=$scratch_label $SCRATCH_MOUNT ext4 defaults,nofail,discard 0 2" \
      | sudo tee -a /etc/fstab >/dev/null
  fi
  sudo mountpoint -q "$SCRATCH_MOUNT" || sudo mount "$SCRATCH_MOUNT"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/token"
printf %s "$CONFIG_B64" | base64 -d >"$work/config"

changed=0
sudo install -d -m 0755 /etc/rancher/k3s
if ! sudo cmp -s "$work/token" "$token_path"; then
  sudo install -m 0600 "$work/token" "$token_path"
  changed=1
fi
if ! sudo cmp -s "$work/config" "$config_path"; then
  sudo install -m 0600 "$work/config" "$config_path"
  changed=1
fi
if [ -n "$AUDIT_POLICY_B64" ]; then
  # kube-apiserver reads the policy at start; k3s's hardening guide creates the log directory
  # 0700 before k3s starts (k3s-io/docs docs/security/hardening-guide.md).
  printf %s "$AUDIT_POLICY_B64" | base64 -d >"$work/audit-policy"
  sudo install -d -m 0700 "$audit_log_dir"
  if ! sudo cmp -s "$work/audit-policy" "$audit_policy_path"; then
    sudo install -m 0600 "$work/audit-policy" "$audit_policy_path"
    changed=1
  fi
fi
if [ -n "$PSA_B64" ]; then
  # The API server's Pod Security admission configuration, which config.yaml names
  # (kube-apiserver-arg); the API server reads it only when it starts.
  printf %s "$PSA_B64" | base64 -d >"$work/psa"
  if ! sudo cmp -s "$work/psa" "$psa_path"; then
    sudo install -d -m 0700 "$(dirname "$psa_path")"
    sudo install -m 0600 "$work/psa" "$psa_path"
    changed=1
  fi
fi
if [ -n "$MANIFEST_B64" ]; then
  # k3s applies every file in its manifests directory and re-applies it when it changes
  # (https://docs.k3s.io/installation/packaged-components#auto-deploying-manifests-addons).
  printf %s "$MANIFEST_B64" | base64 -d >"$work/manifest"
  sudo install -d -m 0700 "$(dirname "$manifest_path")"
  sudo install -m 0600 "$work/manifest" "$manifest_path"
fi

installed=$(k3s --version 2>/dev/null | head -n1 || true)
if [[ "$installed" != *"$K3S_VERSION"* ]]; then
  curl -fsSL --retry 5 --retry-delay 3 -o "$work/install.sh" "$INSTALLER_URL"
  sudo env INSTALL_K3S_VERSION="$K3S_VERSION" INSTALL_K3S_EXEC="$INSTALL_EXEC" \
    sh "$work/install.sh" </dev/null >/dev/null
elif [ "$changed" -eq 1 ] || ! systemctl is-active --quiet "$SERVICE"; then
  sudo systemctl restart "$SERVICE"
fi
if ! timeout 300 sh -c "until systemctl is-active --quiet $SERVICE; do sleep 2; done"; then
  echo "$SERVICE did not become active on $NODE_NAME; see journalctl -u $SERVICE" >&2
  exit 1
fi

if [ -n "$WAIT_FOR_URL" ]; then
  # The API VIP: everything after this node joins or connects through it. /cacerts answers
  # without credentials (https://docs.k3s.io/cli/token, TLS bootstrapping).
  if ! timeout 600 sh -c "until curl -ksf -o /dev/null '$WAIT_FOR_URL'; do sleep 5; done"; then
    echo "$WAIT_FOR_URL did not answer within 10 minutes; check kube-vip:" \
      "k3s kubectl -n kube-system logs daemonset/kube-vip" >&2
    exit 1
  fi
fi
echo "k3s $K3S_VERSION: $SERVICE active on $NODE_NAME"
