"""The homelab hypervisor (layer 3): Proxmox VE VMs with PCIe GPU passthrough and the per-node
assets they boot from (cloud image, vendor snippet, PCI resource mappings). May import `base`,
`kube`, `nebula` and `k3s`.
"""
