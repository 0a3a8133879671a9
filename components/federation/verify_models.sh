#!/bin/sh
# Integrity check of Ollama's models tree, run before Ollama starts (init container of the Ollama
# Deployment, components/federation/ollama.py), reading the tree read-only:
#   - every blob blobs/sha256-<hex> hashes (SHA-256) to <hex>, so no blob's content differs from
#     the name manifests refer to it by;
#   - every manifest manifests/<host>/<namespace>/<model>/<tag> names only sha256:<64 hex> digests
#     and each blob it names exists with the manifest's size.
# Layout as Ollama v0.32.15 reads it: manifest/paths.go (BlobsPath), manifest/manifest.go
# (Manifests: exactly four levels under manifests/), manifest/layer.go (digest, size)
# (https://github.com/ollama/ollama/tree/v0.32.15). Anything else in blobs/ or manifests/ fails.
# Exit 0: all good; 1: bad files, each named on stderr; 2: usage.
# POSIX sh and busybox applets only (find, sha256sum, stat, tr, grep, sed); writes nothing.
set -eu

models=${1:-}
if [ -z "$models" ] || [ ! -d "$models" ]; then
  echo "usage: verify-models MODELS_DIR (a directory; got '$models')" >&2
  exit 2
fi


bad=0
blob_count=0
manifest_count=0

report() {
  echo "verify-models: BAD $*" >&2
  bad=1
}

is_sha256_hex() {
  [ "${#1}" -eq 64 ] || return 1
  case $1 in
    *[!0-9a-f]*) return 1 ;;
  esac
  return 0
}

check_blob() {
  path=$1
  name=${path##*/}
  if [ ! -f "$path" ] || [ -L "$path" ]; then
    report "$path: not a regular file"
    return 0
  fi
  hex=${name#sha256-}
  if [ "$hex" = "$name" ] || ! is_sha256_hex "$hex"; then
    report "$path: not a blob name (sha256-<64 lowercase hex>)"
    return 0
  fi
  if ! sum=$(sha256sum "$path"); then
    report "$path: unreadable"
    return 0
  fi
  sum=${sum%% *}
  if [ "$sum" != "$hex" ]; then
    report "$path: content hashes to $sum, not to its name"
  fi
  blob_count=$((blob_count + 1))
}

# One layer (or the config) of a manifest: a flat JSON object without its braces.
check_layer() {
  manifest=$1
  entry=$2
  digest=$(printf '%s\n' "$entry" | sed -n 's/.*"digest":"\([^"]*\)".*/\1/p')
  size=$(printf '%s\n' "$entry" | sed -n 's/.*"size":\([0-9][0-9]*\).*/\1/p')
  # Ollama skips an empty digest (manifest.go RemoveLayers).
  [ -n "$digest" ] || return 0
  hex=${digest#sha256:}
  if [ "$hex" = "$digest" ] || ! is_sha256_hex "$hex"; then
    report "$manifest: digest '$digest' is not sha256:<64 lowercase hex>"
    return 0
  fi
  if [ -z "$size" ]; then
    report "$manifest: sha256-$hex has no size"
    return 0
  fi
  blob="$models/blobs/sha256-$hex"
  if [ ! -f "$blob" ]; then
    report "$manifest: blob sha256-$hex is missing"
    return 0
  fi
  actual=$(stat -c %s "$blob")
  if [ "$actual" != "$size" ]; then
    report "$manifest: blob sha256-$hex has $actual bytes, the manifest says $size"
  fi
}

check_manifest() {
  path=$1
  relative=${path#"$models/manifests/"}
  # Exactly <host>/<namespace>/<model>/<tag>: three slashes.
  slashes=$(printf '%s' "$relative" | tr -cd '/')
  if [ ! -f "$path" ] || [ -L "$path" ] || [ "${#slashes}" -ne 3 ]; then
    report "$path: not a manifest at manifests/<host>/<namespace>/<model>/<tag>"
    return 0
  fi
  manifest_count=$((manifest_count + 1))
  # Whitespace dropped and the text cut at braces: one line per JSON object; the ones with a
  # digest are the config and the layers.
  if ! entries=$(tr -d ' \t\r\n' <"$path" | tr '{' '\n' | tr '}' '\n' | grep '"digest":'); then
    report "$path: names no blob"
    return 0
  fi
  while IFS= read -r entry; do
    check_layer "$path" "$entry"
  done <<ENTRIES
$entries
ENTRIES
}

# The lists are read from here-documents, not pipes: the loops run in this shell and set $bad.
blob_paths=''
manifest_paths=''
if [ -d "$models/blobs" ]; then
  blob_paths=$(find "$models/blobs" -mindepth 1)
fi
if [ -d "$models/manifests" ]; then
  manifest_paths=$(find "$models/manifests" -mindepth 1 ! -type d)
fi

while IFS= read -r path; do
  [ -z "$path" ] || check_blob "$path"
done <<BLOBS
$blob_paths
BLOBS

while IFS= read -r path; do
  [ -z "$path" ] || check_manifest "$path"
done <<MANIFESTS
$manifest_paths
MANIFESTS

if [ "$bad" -ne 0 ]; then
  echo "verify-models: $models failed the check; Ollama is not started" >&2
  exit 1
fi
echo "verify-models: $blob_count blobs and $manifest_count manifests in $models verified"
