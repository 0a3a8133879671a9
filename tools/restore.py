"""``./dev restore``: the restore drill, scripted.

    ./dev restore etcd [--run] [--first NAME] [--ssh-user USER] [--stack aws-gpu]
                       [--homelab-stack homelab]
    ./dev restore namespace NAMESPACE [--backup NAME] [--kubeconfig FILE] [--wait]
                       [--homelab-stack homelab]

``etcd`` (all control planes lost, docs/runbooks/restore-etcd-from-s3.md): picks the newest
snapshot in the backup bucket (``./dev backups``'s listing) and prints the exact commands:
stop k3s on every control plane, ``k3s server --cluster-reset`` on the first from that snapshot
with the ``--etcd-s3-*`` settings (the writer's key on ssh's stdin, never on a command line),
start it, rejoin the others with their database moved aside. ``--run`` runs them over ssh.

``namespace`` (a namespace deleted, docs/runbooks/restore-namespace-velero.md): finds the newest
Completed Velero backup that holds the namespace through the Kubernetes API and creates a
``Restore`` of that namespace from it (``--backup`` names another); ``--wait`` follows it to
its end and exits 1 unless it Completed.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tools import backups
from tools.stack_outputs import StackOutputsError, read_stack_outputs
from tools.verify.api import Kube, VerifyError

REPO_ROOT = Path(__file__).resolve().parent.parent
DB_DIR = "/var/lib/rancher/k3s/server/db"
VELERO_NAMESPACE = "velero"
VELERO_API = f"/apis/velero.io/v1/namespaces/{VELERO_NAMESPACE}"
KEY_OUTPUTS = ("etcdBackupAccessKeyId", "etcdBackupSecretAccessKey")
# Restore.status.phase values after which nothing changes (vmware-tanzu/velero
# pkg/apis/velero/v1/restore_types.go@v1.18.1).
FINAL_PHASES = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")


class RestoreError(RuntimeError):
    """A clear, expected failure (exit 1 with the message)."""


# --- etcd ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    what: str
    argv: tuple[str, ...]
    needs_key: bool = False
    """The etcd writer's key id and secret go to its stdin, one per line."""


def reset_command(target: Mapping[str, str], snapshot: str) -> str:
    """The remote shell command of the reset: reads the key from stdin into the variables
    k3s takes for ``--etcd-s3-access-key``/``--etcd-s3-secret-key`` (k3s-io/k3s
    pkg/cli/cmds/server.go@v1.33.5+k3s1: EnvVars AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)."""
    flags = [
        "--cluster-reset",
        "--etcd-s3",
        f"--etcd-s3-bucket={target['bucket']}",
        f"--etcd-s3-region={target['region']}",
        f"--etcd-s3-endpoint={target['endpoint']}",
        f"--etcd-s3-folder={target['folder']}",
        f"--cluster-reset-restore-path={snapshot}",
    ]
    return (
        "read -r AWS_ACCESS_KEY_ID && read -r AWS_SECRET_ACCESS_KEY"
        " && export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY"
        " && sudo --preserve-env=AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY k3s server "
        + shlex.join(flags)
    )


def etcd_steps(
    servers: Sequence[str], user: str, target: Mapping[str, str], snapshot: str
) -> list[Step]:
    """k3s's "Restoring Snapshots" for several servers (k3s-io/docs docs/cli/etcd-snapshot.md):
    every server stopped, the first reset from the snapshot and started, the others rejoin with
    an empty database. ``servers``: addresses, the first one first."""
    first, others = servers[0], servers[1:]
    steps = [
        Step(f"stop k3s on {ip}", ("ssh", f"{user}@{ip}", "sudo systemctl stop k3s"))
        for ip in servers
    ]
    steps.append(
        Step(
            f"reset {first} from {snapshot}",
            ("ssh", f"{user}@{first}", reset_command(target, snapshot)),
            needs_key=True,
        )
    )
    steps.append(Step(f"start {first}", ("ssh", f"{user}@{first}", "sudo systemctl start k3s")))
    # A rebuilt VM has no database to move aside (sudo: the server directory is root-only).
    rejoin = (
        f'if sudo test -e {DB_DIR}; then sudo mv {DB_DIR} "{DB_DIR}.old-$(date +%s)"; fi'
        " && sudo systemctl start k3s"
    )
    steps += [Step(f"rejoin {ip}", ("ssh", f"{user}@{ip}", rejoin)) for ip in others]
    return steps


def shell_text(steps: Sequence[Step], aws_stack: str) -> str:
    """The steps as a shell script an operator can read and paste."""
    lines = ["#!/usr/bin/env bash", "set -euo pipefail"]
    key_id, secret = KEY_OUTPUTS
    for step in steps:
        lines.append(f"# {step.what}")
        command = shlex.join(step.argv)
        if step.needs_key:
            lines.append(
                f"{{ pulumi stack output {key_id} -s {shlex.quote(aws_stack)}; "
                f"pulumi stack output --show-secrets {secret} -s {shlex.quote(aws_stack)}; }} "
                f"| {command}"
            )
        else:
            lines.append(command)
    return "\n".join(lines) + "\n"


def control_planes(
    homelab_outputs: Mapping[str, Any], cluster_init: str | None, first: str | None
) -> list[str]:
    """Control-plane addresses, the cluster-init server first. The reset must run there: it is
    the one server whose k3s config has ``cluster-init`` and no ``server``
    (components/k3s/config.py), so with its database moved aside as a rejoining server it
    would start a new, empty cluster beside the restored one. ``cluster_init``: its name from
    the stack's config (the first control plane); ``first`` may only confirm it."""
    by_name = dict(sorted((homelab_outputs.get("controlPlaneIps") or {}).items()))
    if not by_name:
        raise RestoreError("the homelab stack has no output 'controlPlaneIps'")
    if first is not None and first not in by_name:
        raise RestoreError(f"--first '{first}' is not a control plane: {sorted(by_name)}")
    if cluster_init is None:
        if first is None:
            raise RestoreError(
                "cannot tell the cluster-init server (the first of homelab.controlPlanes) "
                "without the stack's config file: pass --first NAME"
            )
        cluster_init = first
    elif first is not None and first != cluster_init:
        raise RestoreError(
            f"--first '{first}': the reset must run on the cluster-init server "
            f"'{cluster_init}' (the first of homelab.controlPlanes); any other would leave "
            f"'{cluster_init}' to start a new, empty cluster when it rejoins"
        )
    if cluster_init not in by_name:
        raise RestoreError(f"cluster-init server '{cluster_init}' is not in {sorted(by_name)}")
    return [by_name.pop(cluster_init), *by_name.values()]


def homelab_settings(homelab_stack: str) -> dict[str, Any]:
    path = REPO_ROOT / f"Pulumi.{homelab_stack}.yaml"
    config = (yaml.safe_load(path.read_text()) or {}).get("config", {}) if path.exists() else {}
    return config.get("hybridgpu:homelab") or {}


def ssh_user(homelab_stack: str) -> str:
    return homelab_settings(homelab_stack).get("sshUser", "ubuntu")


def cluster_init_server(homelab_stack: str) -> str | None:
    planes = homelab_settings(homelab_stack).get("controlPlanes") or []
    return planes[0].get("name") if planes else None


def run_steps(steps: Sequence[Step], key: tuple[str, str], log: Callable[[str], None]) -> None:
    for step in steps:
        log(f"+ {step.what}: {shlex.join(step.argv)}")
        stdin = f"{key[0]}\n{key[1]}\n" if step.needs_key else ""
        result = subprocess.run(step.argv, input=stdin, text=True, check=False, timeout=3600)
        if result.returncode != 0:
            raise RestoreError(f"step '{step.what}' failed (exit {result.returncode}); stopped")


def restore_etcd(args: argparse.Namespace) -> int:
    outputs = read_stack_outputs(args.stack, instead="pass --stack of a deployed aws-gpu")
    target = outputs.get(backups.OUTPUT)
    if not isinstance(target, dict):
        raise RestoreError(f"stack '{args.stack}' has no output '{backups.OUTPUT}'")
    found = backups.snapshots(
        backups.list_objects(target["bucket"], target["folder"], target["region"]),
        target["folder"],
    )
    if not found:
        raise RestoreError(f"no etcd snapshot in s3://{target['bucket']}/{target['folder']}/")
    homelab = read_stack_outputs(args.homelab_stack, instead="pass --homelab-stack")
    servers = control_planes(homelab, cluster_init_server(args.homelab_stack), args.first)
    steps = etcd_steps(
        servers, args.ssh_user or ssh_user(args.homelab_stack), target, found[0].name
    )
    newest = found[0]
    print(f"# newest snapshot: {newest.name} ({newest.node}, {newest.modified:%Y-%m-%d %H:%M})")
    print(shell_text(steps, args.stack), end="")
    if not args.run:
        print("# not run: pass --run to run these steps over ssh", file=sys.stderr)
        return 0
    secrets = read_stack_outputs(args.stack, show_secrets=True, instead="pass --stack")
    key = (str(secrets[KEY_OUTPUTS[0]]), str(secrets[KEY_OUTPUTS[1]]))
    run_steps(steps, key, lambda line: print(line, file=sys.stderr))
    print(
        "# done: `pulumi up -s homelab`, then delete Nodes that no longer exist "
        "(docs/runbooks/restore-etcd-from-s3.md, Confirm)",
        file=sys.stderr,
    )
    return 0


# --- namespace (Velero) ---------------------------------------------------------------------------


def holds(backup: Mapping[str, Any], namespace: str) -> bool:
    """Whether ``backup`` (a Backup object) includes ``namespace`` (Velero: an empty or '*'
    includedNamespaces means all of them, minus excludedNamespaces)."""
    spec = backup.get("spec") or {}
    included = spec.get("includedNamespaces") or ["*"]
    excluded = spec.get("excludedNamespaces") or []
    return (namespace in included or "*" in included) and namespace not in excluded


def newest_backup(items: Sequence[Mapping[str, Any]], namespace: str) -> Mapping[str, Any] | None:
    """The newest Completed backup holding ``namespace``."""
    done = [
        b
        for b in items
        if (b.get("status") or {}).get("phase") == "Completed" and holds(b, namespace)
    ]
    done.sort(key=lambda b: (b.get("status") or {}).get("completionTimestamp", ""), reverse=True)
    return done[0] if done else None


def restore_name(namespace: str, now: datetime) -> str:
    # Velero labels restored objects with the name (velero.io/restore-name): a label value, <= 63.
    return f"{namespace[:48]}-{now:%Y%m%d%H%M%S}"


def render_restore(backup: str, namespace: str, name: str) -> dict[str, Any]:
    """A Restore of one namespace from one backup. Objects that still exist are left as they
    are (existingResourcePolicy none, Velero's default); volumes come back from kopia for the
    pods that had them opted in."""
    return {
        "apiVersion": "velero.io/v1",
        "kind": "Restore",
        "metadata": {"name": name, "namespace": VELERO_NAMESPACE},
        "spec": {
            "backupName": backup,
            "includedNamespaces": [namespace],
            "existingResourcePolicy": "none",
        },
    }


def wait_for(kube: Kube, name: str, timeout: float, poll: float) -> Mapping[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        restore = kube.request("GET", f"{VELERO_API}/restores/{name}")
        phase = (restore.get("status") or {}).get("phase", "")
        if phase in FINAL_PHASES:
            return restore
        if time.monotonic() > deadline:
            raise RestoreError(f"restore {name} still '{phase or 'New'}' after {timeout:.0f} s")
        time.sleep(poll)


def restore_namespace(args: argparse.Namespace, now: datetime) -> int:
    if args.kubeconfig:
        text, path = Path(args.kubeconfig).read_text(), args.kubeconfig
    else:
        outputs = read_stack_outputs(
            args.homelab_stack, show_secrets=True, instead="pass --kubeconfig"
        )
        text, path = str(outputs["kubeconfig"]), ""
    kube = Kube.from_kubeconfig(text, args.request_timeout, path)
    items = kube.request("GET", f"{VELERO_API}/backups").get("items", [])
    if args.backup:
        chosen = next((b for b in items if b["metadata"]["name"] == args.backup), None)
        if chosen is None or not holds(chosen, args.namespace):
            raise RestoreError(f"backup '{args.backup}' does not exist or lacks '{args.namespace}'")
    else:
        chosen = newest_backup(items, args.namespace)
        if chosen is None:
            raise RestoreError(
                f"no Completed Velero backup holds namespace '{args.namespace}' "
                f"({len(items)} backup(s) in {VELERO_NAMESPACE}); see `./dev backups`"
            )
    backup = chosen["metadata"]["name"]
    name = restore_name(args.namespace, now)
    kube.request("POST", f"{VELERO_API}/restores", render_restore(backup, args.namespace, name))
    print(f"restore {name}: namespace {args.namespace} from backup {backup}")
    if not args.wait:
        print(f"follow it: kubectl -n {VELERO_NAMESPACE} get restore {name} -w")
        return 0
    status = wait_for(kube, name, args.timeout, args.poll).get("status") or {}
    phase = status.get("phase")
    print(f"restore {name}: {phase} ({status.get('warnings', 0)} warning(s), "
          f"{status.get('errors', 0)} error(s))")  # fmt: skip
    if phase != "Completed":
        raise RestoreError(
            f"restore {name} ended {phase}: `velero restore logs {name}` or "
            f"`kubectl -n {VELERO_NAMESPACE} get podvolumerestores`"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev restore", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--homelab-stack", default="homelab")
    commands = parser.add_subparsers(dest="what", required=True)
    etcd = commands.add_parser("etcd", help="all control planes lost: reset from S3")
    etcd.add_argument("--stack", default="aws-gpu", help="the aws-gpu stack (its outputs)")
    etcd.add_argument(
        "--first",
        help="the cluster-init server (default: the first of homelab.controlPlanes in the "
        "stack's config file; needed only without that file)",
    )
    etcd.add_argument("--ssh-user", help="default hybridgpu:homelab.sshUser")
    etcd.add_argument("--run", action="store_true", help="run the steps over ssh")
    namespace = commands.add_parser("namespace", help="a namespace deleted: Velero restore")
    namespace.add_argument("namespace")
    namespace.add_argument("--backup", help="restore from this backup (default the newest)")
    namespace.add_argument("--kubeconfig", help="default the homelab stack's output")
    namespace.add_argument("--wait", action="store_true", help="follow it to its end")
    namespace.add_argument("--timeout", type=float, default=3600)
    namespace.add_argument("--poll", type=float, default=5, help=argparse.SUPPRESS)
    namespace.add_argument("--request-timeout", type=float, default=30, help=argparse.SUPPRESS)
    namespace.add_argument("--now", help=argparse.SUPPRESS)  # ISO time, for tests
    args = parser.parse_args(argv)
    try:
        if args.what == "etcd":
            return restore_etcd(args)
        now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
        return restore_namespace(args, now)
    except (RestoreError, StackOutputsError, VerifyError, backups.BackupsError) as err:
        print(f"restore: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
