"""``./dev verify homelab|aws-gpu|all``: is the deployed system healthy, and if not, what is broken.

Reads each stack's outputs (kubeconfigs, the configured nodes and GPUs, gpu-waker's address) and
checks the live clusters against them: nodes Ready and as many as configured, GPUs allocatable
per node as configured, every storage class binds a throwaway claim, the GPU stack's pods Ready,
the CUDA validation Jobs succeeded, JupyterHub's hub answers, Liqo's virtual node is Ready with
``nvidia.com/gpu``, Ollama answers ``/api/tags`` through gpu-waker (the path Open WebUI uses) and
Prometheus holds GPU series of both sites. The result is a PASS/FAIL/SKIP table, each row with its
reason and the command to investigate; the exit status is 1 if any check failed.

Every check has a time bound (``--timeout``): each HTTP call carries a socket timeout, and a check
still running at the bound is reported as FAIL. Nothing is changed except the throwaway claims
(and, for a class that binds only for a consumer, a throwaway pod), which are deleted afterwards.

A small Kubernetes client on the standard library is enough: a few GETs, a POST and a DELETE."""

from tools.verify.run import build_sites, main, render_table, verify_site
from tools.verify.site import FAIL, PASS, SKIP, Result

__all__ = ["FAIL", "PASS", "SKIP", "Result", "build_sites", "main", "render_table", "verify_site"]
