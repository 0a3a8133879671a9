"""The homelab hypervisor (layer 2): Proxmox VE VMs with PCIe GPU passthrough and the per-node
assets they boot from (cloud image, vendor snippet, PCI resource mappings). May import `kube`,
`nebula` and `k3s`.
"""
