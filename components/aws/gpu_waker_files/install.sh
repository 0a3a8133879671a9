#!/bin/bash
# Installs or refreshes gpu-waker on a k3s server: on the AWS control node, or as the wake
# gate on a homelab server; run as root over SSH by Pulumi (hybridgpu,
# components/aws/gpu_waker.py, components/federation/wake_gate.py). Idempotent; prints nothing
# secret.
#
# stdin: line 1 is the client token; for the gate (ROLES_ANYWHERE=true) lines 2 and 3 are the
# base64 of its Roles Anywhere certificate and key; the rest is the base64 of the bundle, a
# tar.gz holding requirements.lock (exact versions, SHA-256 of every file) and the sources.
set -euo pipefail
umask 077

readonly BUNDLE_SHA256="@BUNDLE_SHA256@"
readonly PREFIX="@PREFIX@"
readonly ETC_DIR="@ETC_DIR@"
readonly SERVICE_USER="gpu-waker"
readonly UNIT="gpu-waker.service"
readonly SA_NAMESPACE="@SA_NAMESPACE@"
readonly SA_NAME="@SA_NAME@"
readonly SA_SECRET="@SA_SECRET@"
readonly K3S_CA="@K3S_CA@"
readonly SYSTEMD_DIR="@SYSTEMD_DIR@"
readonly ROLES_ANYWHERE="@ROLES_ANYWHERE@"
readonly CERTIFICATE_FILE="@CERTIFICATE_FILE@"
readonly PRIVATE_KEY_FILE="@PRIVATE_KEY_FILE@"
readonly RELEASE="$PREFIX/releases/$BUNDLE_SHA256"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

IFS= read -r token
if [ "${#token}" -lt 16 ]; then
  echo "gpu-waker: no client token on stdin" >&2
  exit 1
fi
certificate="" private_key=""
if [ "$ROLES_ANYWHERE" = true ]; then
  IFS= read -r certificate_b64 || true
  IFS= read -r private_key_b64 || true
  certificate=$(printf '%s' "$certificate_b64" | base64 -d 2>/dev/null || true)
  private_key=$(printf '%s' "$private_key_b64" | base64 -d 2>/dev/null || true)
  if [[ "$certificate" != *"-----BEGIN CERTIFICATE-----"* || "$private_key" != *"KEY-----"* ]]; then
    echo "gpu-waker: no Roles Anywhere certificate and key on stdin" >&2
    exit 1
  fi
fi
base64 -d > "$work/bundle.tar.gz"
if ! echo "$BUNDLE_SHA256  $work/bundle.tar.gz" | sha256sum --check --status; then
  echo "gpu-waker: bundle checksum mismatch (want $BUNDLE_SHA256)" >&2
  exit 1
fi

changed=0
put() {  # put <path> <mode> <owner:group> < content: replace only when different
  local path=$1 mode=$2 owner=$3 tmp
  tmp=$(mktemp)
  cat > "$tmp"
  if ! cmp -s "$tmp" "$path"; then
    install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$path"
    changed=1
  fi
  rm -f "$tmp"
}

# The system's Python (3.12 on Ubuntu 24.04) with venv; the service's own user.
if ! python3 -c 'import ensurepip' 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SERVICE_USER"
fi

# One directory per bundle: built once (pinned wheels, hashes checked), then switched to.
if [ ! -x "$RELEASE/venv/bin/python" ]; then
  staging="$RELEASE.partial"
  rm -rf "$staging"
  install -d -m 0755 "$staging/app"
  tar -xzf "$work/bundle.tar.gz" -C "$staging"
  python3 -m venv "$staging/venv"
  "$staging/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --require-hashes --only-binary=:all: -r "$staging/requirements.lock"
  chmod -R u=rwX,go=rX "$staging"
  mv -T "$staging" "$RELEASE"
fi
if [ "$(readlink "$PREFIX/current" 2>/dev/null || true)" != "$RELEASE" ]; then
  ln -sfn "$RELEASE" "$PREFIX/current.new"
  mv -T "$PREFIX/current.new" "$PREFIX/current"
  changed=1
fi

# Credentials: the client token, and a ServiceAccount token for the Kubernetes API that is
# made here and never leaves this node (nothing of it is in Pulumi's state).
install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC_DIR"
# A here-string, not a pipe: put must run in this shell to record a change.
put "$ETC_DIR/client-token" 0640 "root:$SERVICE_USER" <<<"$token"
if [ "$ROLES_ANYWHERE" = true ]; then
  put "$ETC_DIR/$CERTIFICATE_FILE" 0640 "root:$SERVICE_USER" <<<"$certificate"
  put "$ETC_DIR/$PRIVATE_KEY_FILE" 0640 "root:$SERVICE_USER" <<<"$private_key"
fi
k3s kubectl apply -f - >/dev/null <<MANIFEST
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: $SA_SECRET
  namespace: $SA_NAMESPACE
  annotations:
    kubernetes.io/service-account.name: $SA_NAME
MANIFEST
sa_token=""
for _ in $(seq 60); do
  sa_token=$(k3s kubectl -n "$SA_NAMESPACE" get secret "$SA_SECRET" -o jsonpath='{.data.token}')
  [ -n "$sa_token" ] && break
  sleep 1
done
if [ -z "$sa_token" ]; then
  echo "gpu-waker: Kubernetes issued no token for $SA_NAMESPACE/$SA_NAME" >&2
  exit 1
fi
put "$ETC_DIR/kubeconfig" 0640 "root:$SERVICE_USER" <<KUBECONFIG
apiVersion: v1
kind: Config
current-context: gpu-waker
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: $(base64 -w0 "$K3S_CA")
users:
- name: gpu-waker
  user:
    token: $(printf '%s' "$sa_token" | base64 -d)
contexts:
- name: gpu-waker
  context:
    cluster: local
    user: gpu-waker
KUBECONFIG

put "$ETC_DIR/env" 0640 "root:$SERVICE_USER" <<'ENVIRONMENT'
@ENVIRONMENT@
ENVIRONMENT
put "$SYSTEMD_DIR/$UNIT" 0644 root:root <<'SYSTEMD_UNIT'
@SYSTEMD_UNIT@
SYSTEMD_UNIT

systemctl daemon-reload
systemctl enable "$UNIT" >/dev/null
if [ "$changed" = 1 ] || ! systemctl is-active --quiet "$UNIT"; then
  systemctl restart "$UNIT"
fi
# Older releases are no longer referenced.
find "$PREFIX/releases" -mindepth 1 -maxdepth 1 ! -path "$RELEASE" -exec rm -rf {} +
for _ in $(seq 30); do
  systemctl is-active --quiet "$UNIT" && break
  sleep 1
done
if ! systemctl is-active --quiet "$UNIT"; then
  journalctl -u "$UNIT" -n 30 --no-pager >&2 || true
  echo "gpu-waker: $UNIT is not active" >&2
  exit 1
fi
echo "gpu-waker: active ($BUNDLE_SHA256)"
