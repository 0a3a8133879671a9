#!/bin/bash
# Install or refresh Nebula on this host (hybridgpu). Run as root over SSH by Pulumi; written in
# components/nebula/templates/apply-nebula-files.sh.
#
# The node's files arrive on stdin, one per line: "<name> <octal mode> <base64 content>", so no
# key or certificate is ever part of a command line or of this script's text (a failed command's
# text is printed by pulumi-command). Files are replaced only when different, and Nebula is
# (re)started only then. Prints no secret.
set -euo pipefail
umask 077
etc_dir="@ETC_DIR@"
changed=0
install -d -m 0755 -o root -g root "$etc_dir"
while read -r name mode content; do
  [ -n "$name" ] || continue
  case "$name" in
    config.yml | ca.crt | host.crt | host.key) target="$etc_dir/$name" ;;
    nebula.service) target="@UNIT_PATH@" ;;
    install-nebula) target="@INSTALL_SCRIPT_PATH@" ;;
    *) echo "refusing unexpected file '$name' in the bundle" >&2; exit 2 ;;
  esac
  tmp=$(mktemp)
  printf %s "$content" | base64 -d > "$tmp"
  if ! cmp -s "$tmp" "$target"; then
    install -m "$mode" -o root -g root "$tmp" "$target"
    changed=1
  fi
  rm -f "$tmp"
done
@INSTALL_SCRIPT_PATH@
systemctl daemon-reload
systemctl enable nebula.service >/dev/null
if [ "$changed" = 1 ] || ! systemctl is-active --quiet nebula.service; then
  systemctl restart nebula.service
fi
systemctl is-active --quiet nebula.service
echo "nebula: active"
