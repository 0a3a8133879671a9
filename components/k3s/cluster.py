"""K3sCluster: a k3s HA cluster on existing VMs, bootstrapped over SSH with pulumi-command.

Order: the first server (``cluster-init``) -> the other servers one at a time (etcd admits one
learner at a time; https://docs.k3s.io/datastore/ha-embedded) -> every agent in parallel, each
depending on the first server only. A change of version or config re-runs the idempotent
install script as the command's ``update``: k3s is upgraded/restarted in place, never removed.
Replacement (e.g. a new address) deletes first, so an old ``delete`` (the uninstaller) can never
run after a fresh install on the same VM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from components.k3s.config import (
    K3sClusterSettings,
    K3sNode,
    render_install_script,
    render_uninstall_script,
)
from components.k3s.kubeconfig import (
    DIAL_ERROR_LIMIT,
    PER_DIAL_TIMEOUT_SECONDS,
    KubeconfigFetch,
    KubeconfigFetchArgs,
)


@dataclass(frozen=True)
class K3sClusterArgs:
    settings: K3sClusterSettings
    nodes: Sequence[K3sNode]
    """Exactly one ``first-server``; servers in join order."""
    token: pulumi.Input[str]
    """Join token (secret)."""
    ssh_user: str
    ssh_private_key: pulumi.Input[str]
    """Secret."""
    wait_for: Mapping[str, Sequence[pulumi.Resource]] = field(default_factory=dict)
    """Node name -> resources that must exist first (its VM, its Nebula install)."""

    def __post_init__(self) -> None:
        firsts = [n for n in self.nodes if n.role == "first-server"]
        if len(firsts) != 1:
            raise ValueError(f"a k3s cluster needs exactly one first-server, got {len(firsts)}")


def connection(
    host: pulumi.Input[str],
    user: str,
    private_key: pulumi.Input[str],
    host_key: pulumi.Input[str] | None = None,
) -> remote.ConnectionArgs:
    """SSH with bounded dials, so an unreachable VM fails with an error instead of hanging
    (pulumi/pulumi-command#199). ``host_key`` (``ssh-ed25519 AAAA...``) pins the server's key;
    without it pulumi-command accepts any key (provider/pkg/provider/remote/connection.go uses
    ssh.InsecureIgnoreHostKey when hostKey is unset)."""
    return remote.ConnectionArgs(
        host=host,
        user=user,
        private_key=pulumi.Output.secret(private_key),
        host_key=host_key,
        dial_error_limit=DIAL_ERROR_LIMIT,
        per_dial_timeout=PER_DIAL_TIMEOUT_SECONDS,
    )


class K3sCluster(pulumi.ComponentResource):
    installs: dict[str, remote.Command]
    kubeconfig: pulumi.Output[str]
    """Admin kubeconfig pointed at ``https://<api endpoint>:6443``. Secret."""

    def __init__(self, name: str, args: K3sClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hybridgpu:k3s:K3sCluster", name, None, opts)
        self.installs = {}
        token = pulumi.Output.secret(args.token)
        first = next(n for n in args.nodes if n.role == "first-server")
        previous_server: remote.Command | None = None
        ordered = [
            first,
            *(n for n in args.nodes if n.role == "server"),
            *(n for n in args.nodes if n.role == "agent"),
        ]
        for node in ordered:
            after: list[pulumi.Resource] = list(args.wait_for.get(node.name, ()))
            if node.role == "server" and previous_server is not None:
                after.append(previous_server)
            elif node.role == "agent":
                after.append(self.installs[first.name])
            script = render_install_script(node, args.settings)
            install = remote.Command(
                f"{name}-{node.name}-install",
                connection=connection(node.ip, args.ssh_user, args.ssh_private_key),
                create=script,
                update=script,
                delete=render_uninstall_script(node),
                stdin=token,
                # Installer output is noise; errors still reach the log.
                logging=remote.Logging.STDERR,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=after,
                    delete_before_replace=True,
                    additional_secret_outputs=["stdout", "stderr"],
                ),
            )
            self.installs[node.name] = install
            if node.role != "agent":
                previous_server = install
        fetch = KubeconfigFetch(
            f"{name}-kubeconfig",
            KubeconfigFetchArgs(
                host=first.ip,
                user=args.ssh_user,
                private_key=args.ssh_private_key,
                server_url=f"https://{args.settings.api_endpoint}:6443",
                instance_id=self.installs[first.name].id,
                wait_for=[self.installs[first.name]],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.kubeconfig = fetch.kubeconfig
        self.register_outputs({"kubeconfig": self.kubeconfig})
