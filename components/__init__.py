"""Reusable Pulumi components of the hybrid GPU cluster, grouped by domain.

One ComponentResource per module, with the pure renderers it needs beside it. Packages are
layered; a package imports only from packages on a lower layer (and never from `stacks/` or
`tools/`), which `tests/test_layout.py` enforces:

    layer 0  base                pure helpers: renewal windows, template files
    layer 1  kube, nebula        Kubernetes object and Helm helpers; the Nebula mesh
    layer 2  k3s                 k3s configuration, bootstrap over SSH, kubeconfig
    layer 3  aws, proxmox,       the two sites' machines, and the GPU platform on a cluster
             platform
    layer 4  federation          Liqo between the clusters and the LLM workloads it carries
"""

# Package name -> layer. The layout test reads this table; a new package is added here.
LAYERS: dict[str, int] = {
    "base": 0,
    "kube": 1,
    "nebula": 1,
    "k3s": 2,
    "aws": 3,
    "proxmox": 3,
    "platform": 3,
    "federation": 4,
}
