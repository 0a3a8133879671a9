"""K3sCluster: a k3s HA cluster on existing VMs, installed, upgraded and kept in line over SSH
with pulumi-command.

Per node three commands, chained node after node, so a change (a new k3s version, a changed
config) rolls through the cluster one node at a time, servers first, then agents
(https://kubernetes.io/releases/version-skew-policy/: the API servers first, kubelets after):

* ``<node>-drain`` (agents, on a server): cordon and drain the node before its install changes.
* ``<node>-install`` (on the node): the idempotent install/upgrade script; the join token comes
  on stdin. It is replaced with its VM (a new VM is bootstrapped again) and skipped on delete
  when the VM goes too.
* ``<node>-membership`` (on a server): wait until the node is registered and Ready, keep its
  labels and taints, uncordon it after a drain. Its delete removes the node from the cluster
  (etcd member included), so a replaced VM rejoins under its name and a removed one leaves.

The first server initialises etcd (``cluster-init``); every other node joins through the API
endpoint (the VIP) with the CA-pinned token the first server wrote. Cluster-level commands SSH to
the API endpoint, i.e. to whichever server holds the VIP. Every replacement deletes first, so
an old ``delete`` can never run after a fresh create on the same VM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from components.k3s import scripts
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

ADMIN_ACCOUNT = "hybridgpu-pulumi"
# How long a node may take to register and become Ready, and a drain to finish.
NODE_WAIT_SECONDS = 900
DRAIN_TIMEOUT_SECONDS = 900
FORGET_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class K3sClusterArgs:
    settings: K3sClusterSettings
    nodes: Sequence[K3sNode]
    """Exactly one ``first-server``; servers and agents each in upgrade order."""
    token: pulumi.Input[str]
    """Cluster token (secret): the first server's; the others get the CA-pinned form."""
    ssh_user: str
    ssh_private_key: pulumi.Input[str]
    """Secret."""
    host_keys: Mapping[str, pulumi.Input[str]]
    """Node name -> its SSH host public key (``ssh-ed25519 AAAA...``): every connection pins it.
    The API endpoint (the VIP, held by any server) is reached with the first server's key, so
    all servers must serve the same host key."""
    machines: Mapping[str, pulumi.Resource]
    """Node name -> its VM: a node's commands are replaced with it and skipped on its delete."""
    api_ssh_host: str | None = None
    """Where cluster-level commands SSH to (pinned with the first server's key); default: the
    API endpoint."""
    wait_for: Mapping[str, Sequence[pulumi.Resource]] = field(default_factory=dict)
    """Node name -> resources that must exist first (e.g. its Nebula install)."""
    cluster_name: str = "homelab"
    """Name of the cluster in the admin kubeconfig."""

    def __post_init__(self) -> None:
        firsts = [n for n in self.nodes if n.role == "first-server"]
        if len(firsts) != 1:
            raise ValueError(f"a k3s cluster needs exactly one first-server, got {len(firsts)}")
        missing = sorted({n.name for n in self.nodes} - set(self.machines))
        if missing:
            raise ValueError(f"no machine given for nodes {missing}")
        unpinned = sorted({n.name for n in self.nodes} - set(self.host_keys))
        if unpinned:
            raise ValueError(f"no SSH host key given for nodes {unpinned}")


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


def upgrade_order(nodes: Sequence[K3sNode]) -> list[K3sNode]:
    """The first server, the other servers, then the agents (each group in config order)."""
    return [
        *(n for n in nodes if n.role == "first-server"),
        *(n for n in nodes if n.role == "server"),
        *(n for n in nodes if n.role == "agent"),
    ]


def render_membership(node: K3sNode, change: str) -> str:
    return scripts.render(
        "membership.sh",
        NODE_NAME=node.name,
        LABELS=" ".join(node.labels),
        TAINTS=" ".join(node.taints),
        WAIT_SECONDS=NODE_WAIT_SECONDS,
        CHANGE=change,
    )


def render_forget(node: K3sNode) -> str:
    return scripts.render(
        "forget.sh",
        NODE_NAME=node.name,
        IS_SERVER=node.is_server,
        TIMEOUT_SECONDS=FORGET_TIMEOUT_SECONDS,
    )


def render_drain(node: K3sNode, change: str) -> str:
    return scripts.render(
        "drain.sh",
        NODE_NAME=node.name,
        DRAIN_TIMEOUT_SECONDS=DRAIN_TIMEOUT_SECONDS,
        CHANGE=change,
    )


class K3sCluster(pulumi.ComponentResource):
    installs: dict[str, remote.Command]
    drains: dict[str, remote.Command]
    memberships: dict[str, remote.Command]
    join_token: remote.Command
    ready: list[pulumi.Resource]
    """Every node installed, registered, Ready and labelled: what the API's users wait for."""
    kubeconfig: pulumi.Output[str]
    """Admin kubeconfig (service-account token) pointed at the API endpoint. Secret."""

    def __init__(self, name: str, args: K3sClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hybridgpu:k3s:K3sCluster", name, None, opts)
        self.installs, self.drains, self.memberships = {}, {}, {}
        settings = args.settings
        key = args.ssh_private_key
        first_server = upgrade_order(args.nodes)[0]
        api_host_key = args.host_keys[first_server.name]
        api_ssh_host = args.api_ssh_host or settings.api_endpoint
        on_control_host = connection(api_ssh_host, args.ssh_user, key, api_host_key)
        first_token = pulumi.Output.secret(args.token)
        join_token: pulumi.Output[str] | None = None
        previous: remote.Command | None = None
        for node in upgrade_order(args.nodes):
            machine = args.machines[node.name]
            after: list[pulumi.Resource] = [machine, *args.wait_for.get(node.name, ())]
            script = render_install_script(node, settings)
            change = scripts.digest(script)
            if node.role == "agent":
                drain = remote.Command(
                    f"{name}-{node.name}-drain",
                    connection=on_control_host,
                    create=render_drain(node, change),
                    logging=remote.Logging.STDOUT_AND_STDERR,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=_some(previous)),
                )
                self.drains[node.name] = drain
                after.append(drain)
            elif previous is not None:
                after.append(previous)
            if node.role != "first-server":
                after.append(self.join_token)
            install = remote.Command(
                f"{name}-{node.name}-install",
                connection=connection(node.ip, args.ssh_user, key, args.host_keys[node.name]),
                create=script,
                update=script,
                delete=render_uninstall_script(node),
                stdin=first_token if join_token is None else join_token,
                # Installer output is noise; errors still reach the log.
                logging=remote.Logging.STDERR,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=after,
                    delete_before_replace=True,
                    deleted_with=machine,
                    replace_with=[machine],
                    additional_secret_outputs=["stdout", "stderr"],
                ),
            )
            self.installs[node.name] = install
            if node.role == "first-server":
                self.join_token = remote.Command(
                    f"{name}-join-token",
                    connection=connection(node.ip, args.ssh_user, key, args.host_keys[node.name]),
                    create=scripts.render("join_token.sh"),
                    # The token is a cluster credential: never printed, secret in state.
                    logging=remote.Logging.NONE,
                    opts=pulumi.ResourceOptions(
                        parent=self,
                        depends_on=[install],
                        deleted_with=machine,
                        replace_with=[machine],
                        additional_secret_outputs=["stdout"],
                    ),
                )
                join_token = pulumi.Output.secret(self.join_token.stdout.apply(str.strip))
            membership = remote.Command(
                f"{name}-{node.name}-membership",
                connection=on_control_host,
                create=render_membership(node, change),
                # The first server is never removed from its own cluster: it is the last one
                # standing when everything is destroyed.
                delete=render_forget(node) if node.role != "first-server" else None,
                logging=remote.Logging.STDOUT_AND_STDERR,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[install],
                    delete_before_replace=True,
                    replace_with=[machine],
                ),
            )
            self.memberships[node.name] = membership
            previous = membership
        self.ready = list(self.memberships.values())
        first = upgrade_order(args.nodes)[0]
        fetch = KubeconfigFetch(
            f"{name}-kubeconfig",
            KubeconfigFetchArgs(
                host=api_ssh_host,
                user=args.ssh_user,
                private_key=key,
                host_key=api_host_key,
                server_url=settings.api_url,
                instance_id=self.installs[first.name].id,
                wait_for=[self.memberships[first.name]],
                command=scripts.render(
                    "admin_kubeconfig.sh",
                    SERVER_URL=settings.api_url,
                    ACCOUNT=ADMIN_ACCOUNT,
                    CLUSTER_NAME=args.cluster_name,
                ),
                machine=args.machines[first.name],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.kubeconfig = fetch.kubeconfig
        self.register_outputs({"kubeconfig": self.kubeconfig})


def _some(resource: pulumi.Resource | None) -> list[pulumi.Resource]:
    return [resource] if resource is not None else []
