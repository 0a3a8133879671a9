"""Kubernetes building blocks shared by every cluster-side component (layer 0).

`charts` pins every Helm chart and container image in one table and declares releases;
`objects` declares plain Kubernetes objects from manifests; `labels` holds the cluster-wide
names (GPU resource, runtime class, node labels and taints) both clusters agree on.
Imports nothing from other packages of `components`.
"""
