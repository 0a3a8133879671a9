"""The AWS site (layer 3): VPC and security groups, EC2 k3s nodes and their cloud-init, node IAM,
the model bucket and the cost budget. May import `base`, `kube`, `nebula` and `k3s`.
"""
