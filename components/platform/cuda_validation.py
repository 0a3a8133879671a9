"""CUDA validation: one Job per GPU worker, pinned to that node, running NVIDIA's vectorAdd
sample on one GPU. Pulumi waits for each Job to complete, so `pulumi up` fails on a node whose
GPU stack does not work; the logs stay readable afterwards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.k3s.pod_security import Level, with_level
from components.kube.charts import digest_skip
from components.kube.labels import GPU_RESOURCE, NVIDIA_RUNTIME_CLASS
from components.kube.objects import Manifest, declare
from components.kube.security import (
    checkov_skips,
    container_security_context,
    pod_security_context,
)

NAMESPACE = "gpu-validation"
SUCCESS_TEXT = "Test PASSED"
VECTOR_ADD = "/cuda-samples/vectorAdd"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def render_check_script() -> str:
    """Runs the sample; succeeds only if it exits 0 AND prints the success line."""
    return "\n".join(
        [
            "set -u",
            "status=0",
            f"out=$({VECTOR_ADD} 2>&1) || status=$?",
            'printf "%s\\n" "$out"',
            f'if [ "$status" -eq 0 ] && printf "%s\\n" "$out" | grep -q "{SUCCESS_TEXT}"; then',
            '  echo "CUDA validation passed on $NODE_NAME"',
            "  exit 0",
            "fi",
            'echo "CUDA validation FAILED on $NODE_NAME (exit $status)" >&2',
            "exit 1",
            "",
        ]
    )


def job_name(node: str) -> str:
    return f"cuda-vectoradd-{node}"[:63].rstrip("-")


# The Job's pod is hardened to "restricted" (non-root, seccomp, no capabilities);
# tests/test_pod_security.py checks it meets the level.
POD_SECURITY_LEVEL: Level = "restricted"
POD_SECURITY_REASON = ""


def render_namespace() -> Manifest:
    return with_level(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        POD_SECURITY_LEVEL,
        POD_SECURITY_REASON,
    )


def render_job(node: str, image: str) -> Manifest:
    # The sample only reads /dev/nvidia* (mode 0666, made by the NVIDIA runtime) and prints: it
    # runs as any UID with a read-only root; no probes, it exits in seconds (Job); checkov's
    # probe checks do not apply to Jobs.
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(node),
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/name": "cuda-validation", "hybridgpu/node": node},
            **({"annotations": skips} if (skips := checkov_skips(digest_skip(image))) else {}),
        },
        "spec": {
            "backoffLimit": 3,
            # No ttlSecondsAfterFinished: the Job (and its logs) stay until the next change.
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "cuda-validation"}},
                "spec": {
                    "restartPolicy": "Never",
                    "runtimeClassName": NVIDIA_RUNTIME_CLASS,
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "nodeSelector": {HOSTNAME_LABEL: node},
                    "tolerations": [
                        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [
                        {
                            "name": "vectoradd",
                            "image": image,
                            "command": ["/bin/sh", "-c", render_check_script()],
                            "env": [
                                {
                                    "name": "NODE_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                }
                            ],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "1", "memory": "512Mi", GPU_RESOURCE: 1},
                            },
                            "securityContext": container_security_context(),
                        }
                    ],
                },
            },
        },
    }


def logs_command(node: str) -> str:
    return f"kubectl -n {NAMESPACE} logs job/{job_name(node)}"


@dataclass(frozen=True)
class CudaValidationArgs:
    nodes: Sequence[str]
    """Kubernetes node names of the GPU workers."""
    image: str
    wait_for: Sequence[pulumi.Resource] = ()
    """The GPU stack (operator or device plugin) that must be installed first."""


class CudaValidation(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: CudaValidationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:CudaValidation", name, None, opts)
        namespace = declare(
            f"{name}-namespace", render_namespace(), pulumi.ResourceOptions(parent=self)
        )
        self.jobs = {
            node: declare(
                f"{name}-{node}",
                render_job(node, args.image),
                pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[namespace, *args.wait_for],
                    # First runs wait for the driver build and image pull.
                    custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m"),
                ),
            )
            for node in args.nodes
        }
        self.results = {
            node: {
                "job": job_name(node),
                "namespace": NAMESPACE,
                "logs": logs_command(node),
                "success": SUCCESS_TEXT,
            }
            for node in args.nodes
        }
        self.register_outputs({"results": self.results})
