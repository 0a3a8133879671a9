"""NebulaHost: one node's key, certificate and config, and optionally its install over SSH.

Key seed (``random.RandomBytes``) and validity window (``time.Rotating``) live in state, so the
certificate is a pure function of state and inputs: unchanged inputs give byte-identical files;
changed inputs (groups, IP, CA, lighthouse address) re-issue it on the next ``pulumi up``; and once
the node is within ``renew_before_days`` of expiry the Rotating resource is replaced, which
re-issues the certificate with a new window.

EC2 nodes take :attr:`cloud_init_fragment` into their user data; Proxmox VMs pass ``ssh`` and
get a ``remote.Command`` that installs Nebula and restarts it only when a file changed.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_random as random
import pulumiverse_time as time

from components.nebula.ca import parse_rfc3339
from components.nebula.config import FirewallRule, MeshNode, MeshSettings, render_node_config
from components.nebula.install import (
    NebulaFiles,
    as_root,
    render_cloud_init_fragment,
    render_ssh_install_script,
    render_ssh_uninstall_script,
)
from components.nebula.pki import NebulaCa as CaMaterial
from components.nebula.pki import host_keypair_from_seed, parse_cert_pem, sign_host_cert


@dataclass(frozen=True)
class NebulaHostArgs:
    node: MeshNode
    settings: MeshSettings
    policy: Sequence[FirewallRule]
    ca_cert_pem: pulumi.Input[str]
    ca_key_pem: pulumi.Input[str]
    """Secret."""
    lighthouses: pulumi.Input[Mapping[str, Sequence[str]]]
    """Lighthouse overlay IP -> public ``host:port`` endpoints."""
    validity_days: int
    renew_before_days: int
    ssh: command.remote.ConnectionArgs | None = None
    """Install over SSH with this connection (Proxmox VMs); None for cloud-init (EC2)."""
    ssh_depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class NebulaHost(pulumi.ComponentResource):
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    """Secret."""
    config_yaml: pulumi.Output[str]
    files: pulumi.Output[NebulaFiles]
    """Secret (holds the key)."""
    cloud_init_fragment: pulumi.Output[dict[str, list[Any]]]
    """Secret; ``write_files`` + ``runcmd`` to merge into a cloud-config."""
    install: command.remote.Command | None

    def __init__(self, name: str, args: NebulaHostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hybridgpu:nebula:NebulaHost", name, None, opts)
        if args.renew_before_days >= args.validity_days:
            raise ValueError(f"NebulaHost {name}: renew_before_days must be below validity_days")
        child = pulumi.ResourceOptions(parent=self)
        node = args.node
        seed = random.RandomBytes(f"{name}-key-seed", length=32, opts=child)
        issued = time.Rotating(
            f"{name}-validity",
            rotation_days=args.validity_days - args.renew_before_days,
            opts=child,
        )
        prefix = args.settings.overlay_cidr.prefixlen

        def issue(values: list[str]) -> tuple[str, str]:
            ca_cert, ca_key, seed_b64, not_before = values
            keys = host_keypair_from_seed(base64.b64decode(seed_b64))
            ca_cert_parsed = parse_cert_pem(ca_cert)
            ca = CaMaterial(
                cert_pem=ca_cert, key_pem=ca_key, fingerprint=ca_cert_parsed.fingerprint
            )
            start = parse_rfc3339(not_before)
            cert = sign_host_cert(
                ca,
                name=node.name,
                overlay_ip=f"{node.overlay_ip}/{prefix}",
                groups=node.groups,
                unsafe_networks=[str(n) for n in node.unsafe_networks],
                public_key_pem=keys.public_pem,
                not_before=start,
                # Never past the CA's end: nebula refuses such a certificate.
                not_after=min(
                    start + timedelta(days=args.validity_days), ca_cert_parsed.details.not_after
                ),
            )
            return cert, keys.private_pem

        issued_pair = pulumi.Output.all(
            args.ca_cert_pem, args.ca_key_pem, seed.base64, issued.rfc3339
        ).apply(issue)
        self.cert_pem = pulumi.Output.unsecret(issued_pair.apply(lambda pair: pair[0]))
        self.key_pem = pulumi.Output.secret(issued_pair.apply(lambda pair: pair[1]))
        self.config_yaml = pulumi.Output.from_input(args.lighthouses).apply(
            lambda lighthouses: render_node_config(node, args.settings, lighthouses, args.policy)
        )
        self.files = pulumi.Output.secret(
            pulumi.Output.all(
                self.config_yaml, args.ca_cert_pem, self.cert_pem, self.key_pem
            ).apply(
                lambda v: NebulaFiles(config_yaml=v[0], ca_pem=v[1], cert_pem=v[2], key_pem=v[3])
            )
        )
        self.cloud_init_fragment = pulumi.Output.secret(
            self.files.apply(render_cloud_init_fragment)
        )
        self.install = None
        if args.ssh is not None:
            script = pulumi.Output.secret(
                self.files.apply(lambda files: as_root(render_ssh_install_script(files)))
            )
            self.install = command.remote.Command(
                f"{name}-install",
                connection=args.ssh,
                create=script,
                # The same idempotent script: it rewrites changed files and restarts Nebula then.
                update=script,
                delete=as_root(render_ssh_uninstall_script()),
                logging=command.remote.Logging.STDERR,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=list(args.ssh_depends_on),
                    # A replacement must not run the old delete (uninstall) after the new create.
                    delete_before_replace=True,
                    additional_secret_outputs=["stdout", "stderr"],
                ),
            )
        self.register_outputs(
            {"certPem": self.cert_pem, "configYaml": self.config_yaml, "keyPem": self.key_pem}
        )
