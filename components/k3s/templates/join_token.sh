#!/bin/bash
# hybridgpu: prints the cluster join token
# Print the cluster's secure join token, K10<CA hash>::server:<password>: a joining node checks
# the cluster CA against the hash before it sends credentials. k3s writes it on every server
# (https://docs.k3s.io/cli/token). Pulumi keeps the output secret and never logs it.
set -euo pipefail
readonly token_path=/var/lib/rancher/k3s/server/token
if ! timeout 300 sh -c "until sudo test -s $token_path; do sleep 2; done"; then
  echo "k3s wrote no $token_path; see journalctl -u k3s" >&2
  exit 1
fi
sudo cat "$token_path"
