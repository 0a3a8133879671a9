"""Reusable Pulumi components of the hybrid GPU cluster, grouped by domain.

One ComponentResource per module, with the pure renderers it needs beside it. Packages are
layered; a package imports only from packages on a lower layer (and never from `stacks/` or
`tools/`), which `tests/test_layout.py` enforces:

    layer 0  kube, nebula        Kubernetes object and Helm helpers; the Nebula mesh
    layer 1  k3s                 k3s configuration, bootstrap over SSH, kubeconfig
    layer 2  aws, proxmox,       the two sites' machines, and the GPU platform on a cluster
             platform
    layer 3  federation          Liqo between the clusters and the LLM workloads it carries
"""

# Package name -> layer. The layout test reads this table; a new package is added here.
LAYERS: dict[str, int] = {
    "kube": 0,
    "nebula": 0,
    "k3s": 1,
    "aws": 2,
    "proxmox": 2,
    "platform": 2,
    "federation": 3,
}
