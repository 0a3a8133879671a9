"""The Nebula mesh (layer 1): this program's own PKI, node configuration and firewall policy,
installers (cloud-init and SSH), and the NebulaCa / NebulaHost components.

Also the well-known ports the mesh firewall opens (k3s API, kubelet, flannel, Liqo gateway,
Ollama). May import `base` only.
"""
