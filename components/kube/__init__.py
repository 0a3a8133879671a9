"""Kubernetes building blocks shared by every cluster-side component (layer 1).

`charts` pins every Helm chart and container image in one table and declares releases;
`objects` declares plain Kubernetes objects from manifests; `labels` holds the cluster-wide
names (GPU resource, runtime class, node labels and taints) both clusters agree on.
May import `base` only.
"""
