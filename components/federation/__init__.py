"""Federation and the LLM workloads it carries (layer 4): Liqo on both clusters and their
peering, Ollama offloaded to AWS, the S3 model store it reads, Open WebUI. May import every
lower layer.
"""
