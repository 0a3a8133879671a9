"""Put an operator's machine on the Nebula mesh (``./dev mesh-join``).

Two steps, because the stack signs but never sees the machine's private key:

``./dev mesh-join init NAME``
    Makes the machine's X25519 key pair in ``~/.config/hybridgpu/<stack>/<NAME>/`` (kept if it
    exists) and prints the ``hybridgpu:aws.operators`` entry to add to the aws-gpu stack.
``./dev mesh-join NAME``
    After ``pulumi up``: writes the CA bundle, the machine's certificate (output
    ``nebulaOperatorCerts``), a Nebula ``config.yml`` and a kubeconfig of the AWS cluster's API
    on the overlay, then prints how to start Nebula. Run it again after a renewal window: the
    stack re-issues operator certificates like every node's.

The config is rendered by the same pure functions as the nodes' (components/nebula/config.py),
from the stack's config files (network plan, MTU) and its outputs.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.nebula.config import default_policy, render_operator_config
from components.nebula.pki import host_keypair_from_seed, host_public_key, parse_cert_pem
from stacks import mesh
from stacks.config import PROJECT, ConfigError
from stacks.config.project import PROJECT_KEYS, ProjectSettings, parse_project
from tools.offline import project_defaults, stack_config_file
from tools.stack_outputs import StackOutputsError, read_stack_outputs

DEFAULT_STACK = "aws-gpu"
KEY_FILE = "host.key"
PUBLIC_KEY_FILE = "host.pub"


class MeshJoinError(RuntimeError):
    """What went wrong and what to do, for the operator."""


@dataclass(frozen=True)
class Joined:
    folder: Path
    overlay_ip: str
    not_after: str
    admin_access: str


def machine_folder(stack: str, name: str, base: Path | None = None) -> Path:
    root = base or Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return root / "hybridgpu" / stack / name


def _write_private(path: Path, text: str) -> None:
    """Create or replace ``path`` readable by its owner only (keys, kubeconfigs)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def project_settings(stack: str) -> ProjectSettings:
    """The project-wide keys as the stack sees them: Pulumi.yaml defaults, then the stack file."""
    values: dict[str, Any] = {}
    for source in (project_defaults(), stack_config_file(stack)):
        for full_key, value in source.items():
            namespace, _, name = full_key.partition(":")
            if namespace == PROJECT and name in PROJECT_KEYS:
                values[name] = value
    return parse_project(values)


def configured_operators(stack: str) -> list[Mapping[str, Any]]:
    aws = stack_config_file(stack).get(f"{PROJECT}:aws") or {}
    return list(aws.get("operators") or [])


def first_free_ip(project: ProjectSettings, taken: Sequence[str]) -> str:
    used = {ipaddress.IPv4Address(ip) for ip in taken}
    for address in project.nebula.operator_cidr.hosts():
        if address not in used:
            return str(address)
    raise MeshJoinError(f"no free address left in {project.nebula.operator_cidr}")


def init(stack: str, name: str, folder: Path, overlay_ip: str | None) -> str:
    """Make (or keep) the key pair; return the config entry to add, as text to print."""
    key_path, public_path = folder / KEY_FILE, folder / PUBLIC_KEY_FILE
    if key_path.exists() and public_path.exists():
        public_pem = public_path.read_text()
    else:
        pair = host_keypair_from_seed(os.urandom(32))
        _write_private(key_path, pair.private_pem)
        public_path.write_text(pair.public_pem)
        public_pem = pair.public_pem
    operators = configured_operators(stack)
    index = next((i for i, o in enumerate(operators) if o.get("name") == name), len(operators))
    ip = overlay_ip or (
        str(operators[index]["overlayIp"])
        if index < len(operators)
        else first_free_ip(project_settings(stack), [str(o.get("overlayIp")) for o in operators])
    )
    entry = {"name": name, "overlayIp": ip, "nebulaPublicKey": public_pem}
    block = yaml.safe_dump({"operators": [entry]}, sort_keys=False, default_style=None)
    path = f"{PROJECT}:aws.operators[{index}]"
    return (
        f"Key pair of '{name}' in {folder} (the private key never leaves this machine).\n"
        f"Add the operator to stack '{stack}', in Pulumi.{stack}.yaml under {PROJECT}:aws:\n\n"
        + "".join(f"  {line}\n" for line in block.splitlines())
        + "\nor with the CLI:\n"
        f"  pulumi config set --stack {stack} --path '{path}.name' {name}\n"
        f"  pulumi config set --stack {stack} --path '{path}.overlayIp' {ip}\n"
        f"  pulumi config set --stack {stack} --path '{path}.nebulaPublicKey' "
        f'"$(cat {public_path})"\n'
        f"then `pulumi up --stack {stack}` and `./dev mesh-join {name}`.\n"
    )


def _require(outputs: Mapping[str, Any], name: str, stack: str) -> Any:
    if name not in outputs:
        raise MeshJoinError(
            f"stack '{stack}' has no output '{name}': run `pulumi up --stack {stack}` with this "
            "version of the program first"
        )
    return outputs[name]


def join(stack: str, name: str, folder: Path, outputs: Mapping[str, Any]) -> Joined:
    """Write the machine's Nebula files and kubeconfig from the stack's outputs."""
    public_path = folder / PUBLIC_KEY_FILE
    if not (folder / KEY_FILE).exists() or not public_path.exists():
        raise MeshJoinError(f"no key pair in {folder}: run `./dev mesh-join init {name}` first")
    certs = _require(outputs, "nebulaOperatorCerts", stack) or {}
    if name not in certs:
        raise MeshJoinError(
            f"stack '{stack}' has no certificate for operator '{name}' (has: "
            f"{sorted(certs) or 'none'}): add the entry `./dev mesh-join init {name}` printed "
            f"and run `pulumi up --stack {stack}`"
        )
    cert = parse_cert_pem(certs[name])
    if cert.details.public_key != host_public_key(public_path.read_text()):
        raise MeshJoinError(
            f"the certificate of '{name}' in stack '{stack}' is for another public key than "
            f"{public_path}: set hybridgpu:aws.operators[].nebulaPublicKey of '{name}' to this "
            "machine's key and run `pulumi up` again"
        )
    (network,) = cert.details.networks
    node = mesh.operator_node(name, network.ip)
    settings = mesh.mesh_settings(project_settings(stack))
    config = render_operator_config(
        node,
        settings,
        _require(outputs, "nebulaLighthouses", stack),
        default_policy(),
        pki_dir=str(folder),
    )
    (folder / "ca.crt").write_text(_require(outputs, "nebulaCaBundle", stack))
    (folder / "host.crt").write_text(certs[name])
    (folder / "config.yml").write_text(config)
    kubeconfig = _require(outputs, "adminKubeconfig", stack)
    if not isinstance(kubeconfig, str) or "apiVersion" not in kubeconfig:
        raise MeshJoinError(
            "adminKubeconfig is not readable (a secret shown as '[secret]'?): read the outputs "
            "with `pulumi stack output --json --show-secrets`"
        )
    _write_private(folder / "kubeconfig", kubeconfig)
    return Joined(
        folder=folder,
        overlay_ip=str(network.ip),
        not_after=f"{cert.details.not_after:%Y-%m-%d}",
        admin_access=str(outputs.get("adminAccess", "public")),
    )


def instructions(joined: Joined, name: str) -> str:
    folder = joined.folder
    text = (
        f"Wrote {folder}/config.yml, ca.crt, host.crt and kubeconfig ({name} = "
        f"{joined.overlay_ip}, certificate valid until {joined.not_after}).\n"
        "Start Nebula on this machine (it needs root for the tun device):\n"
        f"  sudo nebula -config {folder}/config.yml\n"
        "Then Pulumi, kubectl and liqoctl reach the AWS control node on the overlay:\n"
        f"  KUBECONFIG={folder}/kubeconfig kubectl get nodes\n"
        "Run `./dev mesh-join` again after the stack's next renewal window (a new certificate).\n"
    )
    if joined.admin_access != "mesh":
        text += (
            "The stack still opens SSH and 6443 to adminCidrs: once Nebula is up here, delete "
            "hybridgpu:aws.adminCidrs and run `pulumi up` to close them.\n"
        )
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev mesh-join", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--stack", default=DEFAULT_STACK, help="the aws-gpu stack (default %(default)s)"
    )
    parser.add_argument("--dir", type=Path, help="where the machine's files live")
    parser.add_argument(
        "--outputs", type=Path, help="JSON of `pulumi stack output --json --show-secrets`"
    )
    parser.add_argument("--overlay-ip", help="init: the machine's overlay address")
    parser.add_argument("words", nargs="+", metavar="[init] NAME")
    args = parser.parse_args(argv)
    is_init = args.words[0] == "init"
    names = args.words[1:] if is_init else args.words
    if len(names) != 1:
        parser.error("give exactly one operator NAME")
    (name,) = names
    folder = args.dir or machine_folder(args.stack, name)
    try:
        if is_init:
            print(init(args.stack, name, folder, args.overlay_ip))
            return 0
        if args.outputs:
            outputs = json.loads(args.outputs.read_text())
        else:
            outputs = read_stack_outputs(
                args.stack,
                show_secrets=True,
                instead="pass --outputs FILE (`pulumi stack output --json --show-secrets`)",
            )
        print(instructions(join(args.stack, name, folder, outputs), name))
        return 0
    except (MeshJoinError, StackOutputsError, ConfigError) as err:
        print(f"mesh-join: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
