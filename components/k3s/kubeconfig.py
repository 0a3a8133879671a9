"""Read the admin kubeconfig of a k3s server over SSH, pointed at the server's overlay address.

The k3s server writes ``/etc/rancher/k3s/k3s.yaml`` with ``server: https://127.0.0.1:6443``;
it is read once cloud-init has finished and rewritten to the API address clients use (the
server's Nebula IP). The result is an admin credential: it is secret in state and never logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import yaml
from pulumi_command import remote

K3S_KUBECONFIG_PATH = "/etc/rancher/k3s/k3s.yaml"
# pulumi-command has no connect timeout by default and its retries do not wait between dials
# (pulumi/pulumi-command#199, #1238): bound both. 30 dials x 10 s covers a node's first boot.
DIAL_ERROR_LIMIT = 30
PER_DIAL_TIMEOUT_SECONDS = 10


def fetch_kubeconfig_command(
    *, cloud_init_timeout_seconds: int = 900, file_timeout_seconds: int = 300
) -> str:
    """Shell run over SSH: wait (bounded) for cloud-init, then for k3s.yaml, then print it.

    ``cloud-init status --wait`` exits 0 when done, 2 when done with recoverable errors
    (deprecation warnings and the like, cloud-init >= 23.4), 1 on failure; ``timeout`` exits 124.
    """
    return f"""set -eu
status=0
timeout {cloud_init_timeout_seconds} cloud-init status --wait >/dev/null || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then
  echo "cloud-init did not finish (exit $status); see /var/log/cloud-init-output.log" >&2
  exit 1
fi
wait_for_file='until sudo test -s {K3S_KUBECONFIG_PATH}; do sleep 2; done'
if ! timeout {file_timeout_seconds} sh -c "$wait_for_file"; then
  echo "k3s wrote no {K3S_KUBECONFIG_PATH}; see journalctl -u k3s" >&2
  exit 1
fi
sudo cat {K3S_KUBECONFIG_PATH}
"""


ADMIN_TLS_SERVER_NAME = "kubernetes"
"""A SAN k3s puts on every API serving certificate (besides kubernetes.default, localhost, ...),
so a kubeconfig reaching the API on another address still verifies the certificate."""


def rewrite_kubeconfig_server(
    text: str, server_url: str, *, tls_server_name: str | None = None
) -> str:
    """The kubeconfig with every cluster's ``server`` set to ``server_url`` (and the name the
    API certificate is verified against, when the address is not on the certificate)."""
    if not server_url.startswith("https://"):
        raise ValueError(f"server_url '{server_url}' must be an https:// URL")
    data: Any = yaml.safe_load(text)
    if not isinstance(data, dict) or data.get("kind") != "Config":
        raise ValueError("not a kubeconfig: expected a mapping with kind: Config")
    clusters = data.get("clusters")
    if not isinstance(clusters, list) or not clusters:
        raise ValueError("kubeconfig has no clusters")
    for entry in clusters:
        cluster = entry.get("cluster") if isinstance(entry, dict) else None
        if not isinstance(cluster, dict) or "server" not in cluster:
            raise ValueError("kubeconfig cluster entry without cluster.server")
        cluster["server"] = server_url
        if tls_server_name is not None:
            cluster["tls-server-name"] = tls_server_name
    return yaml.safe_dump(data, sort_keys=False)


@dataclass(frozen=True)
class KubeconfigFetchArgs:
    host: pulumi.Input[str]
    """Public address SSH reaches (the control node's Elastic IP)."""
    user: str
    private_key: pulumi.Input[str]
    """SSH private key (secret)."""
    server_url: str
    """API URL written into the kubeconfig (``https://<overlay ip>:6443``)."""
    instance_id: pulumi.Input[str]
    """A replaced server has a new cluster: fetch again when this changes."""
    wait_for: Sequence[pulumi.Resource] = ()
    """Resources that must exist first (the instance and its Elastic IP association)."""
    admin_server_url: pulumi.Input[str] | None = None
    """API URL for the operator's machine (the Elastic IP, open to the admin ranges only); the
    ``admin_kubeconfig`` output uses it."""
    host_key: pulumi.Input[str] | None = None
    """The server's SSH host public key (``ssh-ed25519 AAAA...``): pinned, so a machine in the
    middle cannot hand out a forged kubeconfig. Without it pulumi-command accepts any key."""
    refresh: pulumi.Input[str] | None = None
    """Changes when the kubeconfig must be read again (the renewal window: k3s renews its
    one-year admin certificate when it restarts within 90 days of expiry)."""
    command: str | None = None
    """The script that prints the kubeconfig; default: the k3s admin kubeconfig of the server
    (client certificate valid for a year). The homelab uses templates/admin_kubeconfig.sh, a
    service-account token that does not expire."""
    machine: pulumi.Resource | None = None
    """The machine the command reads from: the command is replaced with it (a new machine
    means a new cluster) and not run on delete when it goes too."""

    def __post_init__(self) -> None:
        if not self.user:
            raise ValueError("user must not be empty")
        if not self.server_url.startswith("https://"):
            raise ValueError(f"server_url '{self.server_url}' must be an https:// URL")


class KubeconfigFetch(pulumi.ComponentResource):
    """One remote command; ``kubeconfig`` is its rewritten, secret output."""

    kubeconfig: pulumi.Output[str]
    admin_kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: KubeconfigFetchArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:k3s:KubeconfigFetch", name, None, opts)
        command = remote.Command(
            f"{name}-read",
            connection=remote.ConnectionArgs(
                host=args.host,
                user=args.user,
                private_key=args.private_key,
                host_key=args.host_key,
                dial_error_limit=DIAL_ERROR_LIMIT,
                per_dial_timeout=PER_DIAL_TIMEOUT_SECONDS,
            ),
            create=args.command or fetch_kubeconfig_command(),
            triggers=[args.instance_id, *([args.refresh] if args.refresh is not None else [])],
            # The previous kubeconfig must not be put in the command's environment on a re-run
            # (pulumi-command sets PULUMI_COMMAND_STDOUT by default: commandOutputs.go).
            add_previous_output_in_env=False,
            # stdout is an admin credential: never printed (additional_secret_outputs alone
            # still lets it show in the update log, pulumi-command#260), secret in state.
            logging=remote.Logging.NONE,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.wait_for),
                additional_secret_outputs=["stdout"],
                deleted_with=args.machine,
                replace_with=[args.machine] if args.machine is not None else None,
            ),
        )
        server_url = args.server_url
        # Wrapped explicitly as well: the mock runtime ignores additional_secret_outputs, and
        # the secretness must not depend on the provider honouring it.
        self.kubeconfig = pulumi.Output.secret(
            command.stdout.apply(lambda text: rewrite_kubeconfig_server(text, server_url))
        )
        self.admin_kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(command.stdout, args.admin_server_url).apply(
                lambda values: (
                    rewrite_kubeconfig_server(
                        values[0], values[1], tls_server_name=ADMIN_TLS_SERVER_NAME
                    )
                    if values[1]
                    else rewrite_kubeconfig_server(values[0], server_url)
                )
            )
        )
        self.register_outputs(
            {"kubeconfig": self.kubeconfig, "adminKubeconfig": self.admin_kubeconfig}
        )
