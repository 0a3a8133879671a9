"""k3s (layer 2): node configuration and install scripts, the homelab cluster bootstrapped over
SSH, and fetching an admin kubeconfig. May import `base`, `kube` and `nebula`.
"""
