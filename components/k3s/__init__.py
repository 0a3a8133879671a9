"""k3s (layer 1): node configuration and install scripts, the homelab cluster bootstrapped over
SSH, and fetching an admin kubeconfig. May import `kube` and `nebula`.
"""
