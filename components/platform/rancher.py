"""Optional Rancher UI (the source design's) with cert-manager for its certificates. Off by
default; the bootstrap password is generated once and kept secret in state."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.kube.charts import CERT_MANAGER, RANCHER, helm_release


@dataclass(frozen=True)
class RancherArgs:
    hostname: str
    bootstrap_password: pulumi.Input[str]
    replicas: int = 3


class Rancher(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: RancherArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:platform:Rancher", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.cert_manager = helm_release(
            f"{name}-cert-manager",
            release_name="cert-manager",
            chart=CERT_MANAGER,
            namespace="cert-manager",
            values={"crds": {"enabled": True}},
            opts=child,
        )
        values = pulumi.Output.secret(
            pulumi.Output.from_input(args.bootstrap_password).apply(
                lambda password: {
                    "hostname": args.hostname,
                    "bootstrapPassword": password,
                    "replicas": args.replicas,
                    "ingress": {"ingressClassName": "traefik", "tls": {"source": "rancher"}},
                }
            )
        )
        self.release = helm_release(
            f"{name}-release",
            release_name="rancher",
            chart=RANCHER,
            namespace="cattle-system",
            values=values,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.cert_manager]),
        )
        self.register_outputs({"url": f"https://{args.hostname}/"})
