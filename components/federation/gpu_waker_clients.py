"""How the homelab's own Ollama clients (``ollama.clientNamespaces``) reach Ollama: a Secret in
each of their namespaces with gpu-waker's address and token, in the variables the usual
clients read (Ollama's ``OLLAMA_HOST``, the OpenAI SDKs' ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``). The namespaces belong to the clients and must exist before ``pulumi up``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.kube.objects import Manifest, declare

SECRET_NAME = "gpu-waker-client"  # noqa: S105 - the name of a Secret object


def render_client_secret(
    namespace: str,
    ollama_url: pulumi.Input[str],
    openai_url: pulumi.Input[str],
    token: pulumi.Input[str],
) -> Manifest:
    """``ollama_url``: gpu-waker's base URL (Ollama's API under ``/api``); ``openai_url``: its
    OpenAI-compatible API (``<base>/v1``)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "hybridgpu"},
        },
        "type": "Opaque",
        "stringData": {
            "OLLAMA_HOST": ollama_url,
            "OPENAI_BASE_URL": openai_url,
            "OPENAI_API_KEY": token,
            "GPU_WAKER_TOKEN": token,
        },
    }


@dataclass(frozen=True)
class GpuWakerClientsArgs:
    namespaces: Sequence[str]
    url: pulumi.Input[str]
    token: pulumi.Input[str]


class GpuWakerClients(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: GpuWakerClientsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:llm:GpuWakerClients", name, None, opts)
        token = pulumi.Output.secret(args.token)
        openai_url = pulumi.Output.from_input(args.url).apply(lambda url: f"{url}/v1")
        for namespace in sorted(set(args.namespaces)):
            declare(
                f"{name}-{namespace}",
                render_client_secret(namespace, args.url, openai_url, token),
                pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"namespaces": sorted(set(args.namespaces))})
