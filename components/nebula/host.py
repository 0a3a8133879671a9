"""NebulaHost: one node's key, certificate and config, and optionally its install over SSH.

The key seed (``random.RandomBytes``) lives in state and the validity comes from the stack's
renewal clock, so the certificate is a pure function of state, inputs and the renewal window:
unchanged inputs give byte-identical files; changed inputs (groups, IP, CA, lighthouse address)
re-issue it on the next ``pulumi up``; and the first ``up`` of a new renewal window re-issues it
with a fresh validity (no refresh needed, see components/base/renewal.py).

EC2 nodes take :attr:`files` into their boot-time file sync; Proxmox VMs pass ``ssh`` and get a
``remote.Command`` that sends the files on stdin to a constant script, which rewrites what
changed and restarts Nebula only then.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_random as random

from components.base.renewal import Validity
from components.nebula.config import FirewallRule, MeshNode, MeshSettings, render_node_config
from components.nebula.install import (
    APPLY_SCRIPT,
    NebulaFiles,
    as_root,
    render_cloud_init_fragment,
    render_ssh_uninstall_script,
    render_stdin_bundle,
)
from components.nebula.pki import NebulaCa as CaMaterial
from components.nebula.pki import host_keypair_from_seed, parse_cert_pem, sign_host_cert


@dataclass(frozen=True)
class NebulaHostArgs:
    node: MeshNode
    settings: MeshSettings
    policy: Sequence[FirewallRule]
    ca_cert_pem: pulumi.Input[str]
    """The CA certificate that signs (the current one)."""
    ca_key_pem: pulumi.Input[str]
    """Secret."""
    lighthouses: pulumi.Input[Mapping[str, Sequence[str]]]
    """Lighthouse overlay IP -> public ``host:port`` endpoints."""
    validity: pulumi.Input[Validity]
    """This renewal window's validity (clamped to the CA's)."""
    ca_bundle_pem: pulumi.Input[str] | None = None
    """Every CA certificate the node trusts; defaults to ``ca_cert_pem``."""
    ssh: command.remote.ConnectionArgs | None = None
    """Install over SSH with this connection (Proxmox VMs); None for EC2 nodes."""
    ssh_depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    machine: pulumi.Resource | None = None
    """The VM the SSH install runs on: a replaced VM re-runs the install (its id is a trigger)
    and destroying the VM skips the uninstall (``deleted_with``)."""


def issue_host_cert(
    node: MeshNode,
    prefix: int,
    *,
    ca_cert: str,
    ca_key: str,
    seed_b64: str,
    validity: Validity,
) -> tuple[str, str]:
    """(certificate PEM, private key PEM) of ``node`` for ``validity``, inside the CA's."""
    keys = host_keypair_from_seed(base64.b64decode(seed_b64))
    cert = certify_public_key(
        node,
        prefix,
        ca_cert=ca_cert,
        ca_key=ca_key,
        public_key_pem=keys.public_pem,
        validity=validity,
    )
    return cert, keys.private_pem


def certify_public_key(
    node: MeshNode,
    prefix: int,
    *,
    ca_cert: str,
    ca_key: str,
    public_key_pem: str,
    validity: Validity,
) -> str:
    """The certificate of ``node`` for a public key made elsewhere (an operator's machine keeps
    its private key), for ``validity`` clamped to the CA's."""
    ca_parsed = parse_cert_pem(ca_cert)
    ca = CaMaterial(cert_pem=ca_cert, key_pem=ca_key, fingerprint=ca_parsed.fingerprint)
    return sign_host_cert(
        ca,
        name=node.name,
        overlay_ip=f"{node.overlay_ip}/{prefix}",
        groups=node.groups,
        unsafe_networks=[str(n) for n in node.unsafe_networks],
        public_key_pem=public_key_pem,
        # Never outside the CA's window: nebula refuses such a certificate.
        not_before=max(validity.not_before, ca_parsed.details.not_before),
        not_after=min(validity.not_after, ca_parsed.details.not_after),
    )


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
        child = pulumi.ResourceOptions(parent=self)
        node = args.node
        seed = random.RandomBytes(f"{name}-key-seed", length=32, opts=child)
        prefix = args.settings.overlay_cidr.prefixlen

        issued_pair = pulumi.Output.all(
            args.ca_cert_pem, args.ca_key_pem, seed.base64, args.validity
        ).apply(
            lambda v: issue_host_cert(
                node, prefix, ca_cert=v[0], ca_key=v[1], seed_b64=v[2], validity=v[3]
            )
        )
        self.cert_pem = pulumi.Output.unsecret(issued_pair.apply(lambda pair: pair[0]))
        self.key_pem = pulumi.Output.secret(issued_pair.apply(lambda pair: pair[1]))
        self.config_yaml = pulumi.Output.from_input(args.lighthouses).apply(
            lambda lighthouses: render_node_config(node, args.settings, lighthouses, args.policy)
        )
        bundle = args.ca_bundle_pem if args.ca_bundle_pem is not None else args.ca_cert_pem
        self.files = pulumi.Output.secret(
            pulumi.Output.all(self.config_yaml, bundle, self.cert_pem, self.key_pem).apply(
                lambda v: NebulaFiles(config_yaml=v[0], ca_pem=v[1], cert_pem=v[2], key_pem=v[3])
            )
        )
        self.cloud_init_fragment = pulumi.Output.secret(
            self.files.apply(render_cloud_init_fragment)
        )
        self.install = None
        if args.ssh is not None:
            script = as_root(APPLY_SCRIPT, "hybridgpu-apply-nebula")
            self.install = command.remote.Command(
                f"{name}-install",
                connection=args.ssh,
                # A constant, public script; the node's files (key included) go on stdin, so a
                # failed run prints no secret (pulumi-command v1.2.1 reports `running %q` with
                # the command text: provider/pkg/provider/remote/commandOutputs.go).
                create=script,
                update=script,
                stdin=pulumi.Output.secret(self.files.apply(render_stdin_bundle)),
                delete=as_root(render_ssh_uninstall_script(), "hybridgpu-remove-nebula"),
                # A new VM behind the same name needs the install again.
                triggers=[args.machine.id]
                if isinstance(args.machine, pulumi.CustomResource)
                else None,
                logging=command.remote.Logging.STDERR,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=list(args.ssh_depends_on),
                    # A replacement must not run the old delete (uninstall) after the new create.
                    delete_before_replace=True,
                    # Nothing to uninstall from a VM that is being destroyed.
                    deleted_with=args.machine,
                    # A VM replaced under the same id (a Proxmox VM's id is its VM id, bpg
                    # terraform-provider-proxmox vm.go d.SetId) leaves the trigger unchanged:
                    # replacing the VM replaces the install too (pulumi#20693, replaceWith).
                    replace_with=[args.machine] if args.machine is not None else None,
                    additional_secret_outputs=["stdout", "stderr"],
                ),
            )
        self.register_outputs(
            {"certPem": self.cert_pem, "configYaml": self.config_yaml, "keyPem": self.key_pem}
        )
