"""The GPU platform on a k3s cluster (layer 3): GPU Operator, NVIDIA device plugin, Node
Termination Handler, storage classes, JupyterHub, CUDA validation Jobs, Rancher. May import
`base`, `kube`, `nebula` and `k3s`.
"""
