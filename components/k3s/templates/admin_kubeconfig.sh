#!/bin/bash
# hybridgpu: prints a kubeconfig
# Print an admin kubeconfig for Pulumi and liqoctl that does not expire: a bearer token of a
# service account bound to cluster-admin, from a token Secret the cluster keeps
# (https://kubernetes.io/docs/concepts/security/service-accounts/#get-a-token), instead of the
# k3s admin client certificate, which is valid for a year. Revoke it by deleting the Secret.
# Runs on a server over SSH; Pulumi keeps the output secret and never logs it.
set -euo pipefail

# Parameters: filled in, shell-quoted, by components/k3s/scripts.py.
SERVER_URL=@SERVER_URL@
ACCOUNT=@ACCOUNT@
CLUSTER_NAME=@CLUSTER_NAME@

readonly namespace=kube-system
readonly ca_path=/var/lib/rancher/k3s/server/tls/server-ca.crt

kubectl() { sudo k3s kubectl "$@"; }

kubectl apply -f - >/dev/null <<MANIFESTS
apiVersion: v1
kind: ServiceAccount
metadata:
  name: $ACCOUNT
  namespace: $namespace
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: $ACCOUNT
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - kind: ServiceAccount
    name: $ACCOUNT
    namespace: $namespace
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: $ACCOUNT-token
  namespace: $namespace
  annotations:
    kubernetes.io/service-account.name: $ACCOUNT
MANIFESTS

token=""
deadline=$((SECONDS + 120))
until [ -n "$token" ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "the token controller filled no token into $namespace/$ACCOUNT-token" >&2
    exit 1
  fi
  sleep 2
  token=$(kubectl -n "$namespace" get secret "$ACCOUNT-token" -o 'jsonpath={.data.token}' \
    | base64 -d)
done
ca=$(sudo base64 -w0 "$ca_path")

cat <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: $CLUSTER_NAME
    cluster:
      server: $SERVER_URL
      certificate-authority-data: $ca
users:
  - name: $ACCOUNT
    user:
      token: $token
contexts:
  - name: $CLUSTER_NAME
    context:
      cluster: $CLUSTER_NAME
      user: $ACCOUNT
current-context: $CLUSTER_NAME
KUBECONFIG
