#!/usr/bin/env python3
"""hybridgpu-node: keeps an EC2 node of the hybridgpu aws-gpu stack in step with Pulumi.

Pulumi publishes each node's files (k3s and Nebula configuration, certificates, keys, the SSH
host key, installers) as SSM Parameter Store SecureStrings under one path, plus a manifest that
lists every file with its destination, mode, owner and SHA-256. This program runs on the node
(at boot, from a systemd timer, and over SSH when Pulumi wants a change applied now):

``sync``   fetch the manifest and the files with the instance role's credentials, refuse the
           whole set if any file is missing or differs from its checksum (a node is never left
           half-configured: it keeps its current files and says why in the journal), write what
           changed, run the idempotent installers, restart the units whose files changed.
``heal``   on the k3s server: give back a GPU node that the Node Termination Handler cordoned and
           tainted before a spot stop, or that was drained for a k3s upgrade, once it is Ready
           again (NTH itself never undoes its cordon after a stop/start of the same instance).

Standard library only (Python >= 3.10: Ubuntu 22.04 and 24.04 ship it), so the file that
cloud-init writes is the whole program. SSM is called with AWS Signature Version 4 over HTTPS;
the signer is checked against botocore's in the project's tests.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import fcntl
import gzip
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger("hybridgpu-node")
IMDS_ENDPOINT = "http://169.254.169.254"
MANIFEST = "manifest"
FILES = "files"
EXIT_INCOMPLETE = 3
LOCK_PATH = "/run/hybridgpu-node.lock"
RETRY_SECONDS = 10
"""Exit status when the published set is incomplete or fails its checksums (nothing changed)."""

# Node Termination Handler's taints and labels (aws/aws-node-termination-handler@v1.25.6
# pkg/node/node.go: SpotInterruptionTaint, ScheduledMaintenanceTaint, ASGLifecycleTerminationTaint,
# RebalanceRecommendationTaint; ActionLabelKey, ActionLabelTimeKey, EventIDLabelKey).
NTH_TAINTS = (
    "aws-node-termination-handler/spot-itn",
    "aws-node-termination-handler/scheduled-maintenance",
    "aws-node-termination-handler/asg-lifecycle-termination",
    "aws-node-termination-handler/rebalance-recommendation",
)
NTH_LABELS = (
    "aws-node-termination-handler/action",
    "aws-node-termination-handler/action-time",
    "aws-node-termination-handler/event-id",
)
DRAINED_FOR_UPGRADE = "hybridgpu.io/drained-for-k3s"
"""Annotation set when a node is drained before its k3s upgrade; the value is the version."""
BOOT_ID_SEEN = "hybridgpu.io/cordoned-boot-id"
"""Annotation: the node's boot id when heal first saw it cordoned by NTH."""


# --------------------------------------------------------------------------------------------
# AWS credentials and Signature Version 4
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


class AgentError(Exception):
    """A failure the operator can act on; printed as one line in the journal."""


def credentials_from_env(env: Mapping[str, str]) -> Credentials | None:
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, env.get("AWS_SESSION_TOKEN"))
    return None


def _open(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = 30,
) -> bytes:
    """One HTTP(S) request; only http and https URLs (the endpoints are fixed or test-given)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise AgentError(f"refusing non-HTTP URL {url!r}")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=data, method=method, headers=dict(headers or {})
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return response.read()


def credentials_from_imds(endpoint: str = IMDS_ENDPOINT, timeout: float = 5) -> Credentials:
    """The instance role's temporary credentials through IMDSv2 (a session token first)."""
    try:
        token = _open(
            f"{endpoint}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
            timeout=timeout,
        ).decode()
        headers = {"X-aws-ec2-metadata-token": token}
        base = f"{endpoint}/latest/meta-data/iam/security-credentials/"
        role = _open(base, headers=headers, timeout=timeout).decode().strip().splitlines()[0]
        data = json.loads(_open(base + role, headers=headers, timeout=timeout))
    except (urllib.error.URLError, OSError, IndexError, ValueError) as err:
        raise AgentError(
            f"no AWS credentials: the instance metadata service gave none ({err}); is an "
            "instance profile attached and IMDSv2 reachable from the host?"
        ) from None
    return Credentials(data["AccessKeyId"], data["SecretAccessKey"], data.get("Token"))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def sign_v4(
    *,
    method: str,
    host: str,
    path: str,
    region: str,
    service: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    now: dt.datetime,
) -> dict[str, str]:
    """Headers of a SigV4-signed request (no query string; every given header is signed).
    https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html"""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = now.strftime("%Y%m%d")
    signed = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    signed["host"] = host
    signed["x-amz-date"] = amz_date
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            path or "/",
            "",
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + credentials.secret_key).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    result = {k: v for k, v in signed.items() if k != "host"}
    result["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return result


class Ssm:
    """The two SSM calls the agent makes, over HTTPS with SigV4."""

    def __init__(
        self,
        region: str,
        credentials: Credentials,
        endpoint: str | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),  # noqa: UP017 - Python 3.10 on the node
    ) -> None:
        self.region = region
        self.credentials = credentials
        self.endpoint = endpoint or f"https://ssm.{region}.amazonaws.com"
        self.clock = clock

    def _call(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        parsed = urllib.parse.urlsplit(self.endpoint)
        headers = sign_v4(
            method="POST",
            host=parsed.netloc,
            path=parsed.path or "/",
            region=self.region,
            service="ssm",
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"AmazonSSM.{action}",
            },
            body=body,
            credentials=self.credentials,
            now=self.clock(),
        )
        try:
            return json.loads(
                _open(self.endpoint, method="POST", headers=headers, data=body) or b"{}"
            )
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            try:
                message = json.loads(detail)
                detail = f"{message.get('__type', '')}: {message.get('message', message)}"
            except ValueError:
                pass
            raise AgentError(f"SSM {action} failed ({err.code}): {detail}") from None
        except urllib.error.URLError as err:
            raise AgentError(f"SSM {action}: cannot reach {self.endpoint} ({err.reason})") from None

    def get_parameter(self, name: str) -> str | None:
        try:
            answer = self._call("GetParameter", {"Name": name, "WithDecryption": True})
        except AgentError as err:
            if "ParameterNotFound" in str(err):
                return None
            raise
        return answer["Parameter"]["Value"]

    def get_parameters_by_path(self, path: str) -> dict[str, str]:
        values: dict[str, str] = {}
        token: str | None = None
        while True:
            payload: dict[str, Any] = {"Path": path, "Recursive": True, "WithDecryption": True}
            if token:
                payload["NextToken"] = token
            answer = self._call("GetParametersByPath", payload)
            for parameter in answer.get("Parameters", []):
                values[parameter["Name"]] = parameter["Value"]
            token = answer.get("NextToken")
            if not token:
                return values


# --------------------------------------------------------------------------------------------
# Manifest and files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    name: str
    """Parameter name below ``<path>/files/``."""
    path: str
    mode: str
    sha256: str
    owner: str = "root"
    encoding: str = ""
    """``gzip+base64`` for contents that exceed a parameter's size; empty for plain text."""
    restart: tuple[str, ...] = ()
    """systemd units to restart when this file changed."""
    parts: int = 1
    """Stored value split over this many parameters (``<name>/part-00`` ...), each within SSM's
    free standard tier."""


@dataclass(frozen=True)
class Manifest:
    files: tuple[FileEntry, ...]
    run: tuple[tuple[str, ...], ...] = ()
    """Idempotent commands run after the files are in place, in order (installers)."""
    enable: tuple[str, ...] = ()
    """systemd units enabled (and started if inactive) after every sync."""


def parse_manifest(text: str) -> Manifest:
    data = json.loads(text)
    files = tuple(
        FileEntry(
            name=f["name"],
            path=f["path"],
            mode=f["mode"],
            sha256=f["sha256"],
            owner=f.get("owner", "root"),
            encoding=f.get("encoding", ""),
            restart=tuple(f.get("restart", ())),
            parts=int(f.get("parts", 1)),
        )
        for f in data["files"]
    )
    return Manifest(
        files=files,
        run=tuple(tuple(c) for c in data.get("run", ())),
        enable=tuple(data.get("enable", ())),
    )


def decode(entry: FileEntry, value: str) -> bytes:
    if entry.encoding == "gzip+base64":
        return gzip.decompress(base64.b64decode(value))
    if entry.encoding:
        raise AgentError(f"file {entry.name}: unknown encoding '{entry.encoding}'")
    return value.encode()


def fetch(ssm: Ssm, path: str) -> tuple[Manifest, dict[str, bytes]]:
    """The published set, verified: every file present and matching the manifest's SHA-256."""
    manifest_text = ssm.get_parameter(f"{path}/{MANIFEST}")
    if manifest_text is None:
        raise AgentError(
            f"no manifest at {path}/{MANIFEST}: has `pulumi up` of the aws-gpu stack completed?"
        )
    manifest = parse_manifest(manifest_text)
    prefix = f"{path}/{FILES}/"
    published = {
        name.removeprefix(prefix): value
        for name, value in ssm.get_parameters_by_path(prefix.rstrip("/")).items()
    }
    contents: dict[str, bytes] = {}
    problems: list[str] = []
    for entry in manifest.files:
        names = (
            [entry.name]
            if entry.parts == 1
            else [f"{entry.name}/part-{i:02d}" for i in range(entry.parts)]
        )
        missing = [n for n in names if n not in published]
        if missing:
            problems.append(f"{', '.join(missing)}: missing")
            continue
        data = decode(entry, "".join(published[n] for n in names))
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            problems.append(
                f"{entry.name}: sha256 {digest[:12]}... expected {entry.sha256[:12]}..."
            )
            continue
        contents[entry.name] = data
    if problems:
        raise AgentError(
            "the published files do not match their manifest (an update in progress, or "
            "tampering); nothing was changed: " + "; ".join(problems)
        )
    return manifest, contents


@dataclass
class Changes:
    files: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    units_changed: bool = False


def _owner_ids(owner: str) -> tuple[int, int]:
    import grp  # noqa: PLC0415 - POSIX only, imported where used
    import pwd  # noqa: PLC0415

    user = pwd.getpwnam(owner)
    return user.pw_uid, grp.getgrgid(user.pw_gid).gr_gid


def write_files(
    manifest: Manifest, contents: Mapping[str, bytes], root: Path, *, chown: bool = True
) -> Changes:
    """Write each file that differs (atomically, mode and owner set), record what to restart."""
    changes = Changes()
    for entry in manifest.files:
        target = root / entry.path.lstrip("/")
        data = contents[entry.name]
        mode = int(entry.mode, 8)
        current = target.read_bytes() if target.exists() else None
        if current == data and (target.stat().st_mode & 0o7777) == mode:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            os.fchmod(handle, mode)
            if chown:
                os.fchown(handle, *_owner_ids(entry.owner))
            os.write(handle, data)
            os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(temporary, target)
        changes.files.append(entry.path)
        for unit in entry.restart:
            if unit not in changes.restart:
                changes.restart.append(unit)
        if entry.path.startswith("/etc/systemd/"):
            changes.units_changed = True
    return changes


Runner = Callable[[Sequence[str]], None]


def run_command(command: Sequence[str]) -> None:
    LOG.info("running %s", " ".join(command))
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AgentError(
            f"{command[0]} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}"
        )


def log_command(command: Sequence[str]) -> None:
    LOG.info("would run %s", " ".join(command))


def apply(manifest: Manifest, changes: Changes, runner: Runner = run_command) -> None:
    if changes.units_changed:
        runner(["systemctl", "daemon-reload"])
    for command in manifest.run:
        runner(list(command))
    for unit in changes.restart:
        runner(["systemctl", "restart", unit])
    for unit in manifest.enable:
        runner(["systemctl", "enable", "--now", unit])


def sync(
    ssm: Ssm, path: str, root: Path, runner: Runner = run_command, *, chown: bool = True
) -> Changes:
    manifest, contents = fetch(ssm, path)
    changes = write_files(manifest, contents, root, chown=chown)
    for changed in changes.files:
        LOG.info("updated %s", changed)
    apply(manifest, changes, runner)
    LOG.info(
        "in step with %s (%d files, %d changed)", path, len(manifest.files), len(changes.files)
    )
    return changes


# --------------------------------------------------------------------------------------------
# heal: give back GPU nodes after a spot stop or an upgrade drain
# --------------------------------------------------------------------------------------------


def _ready(node: Mapping[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def heal_patch(node: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch that gives a node back, or None when nothing is to be done.

    NTH (IMDS mode) cordons and taints a node on a spot interruption notice and undoes that only
    for a cancelled event or a marked reboot; with a persistent request and ``stop`` behaviour
    AWS later starts the same instance, which would stay cordoned forever. The boot the node was
    cordoned on is recorded the first time it is seen; the node is given back once it is Ready
    on a later boot. A node drained for a k3s upgrade is given back once it is Ready and its
    kubelet reports the target version (unless NTH still holds it on this boot)."""
    metadata = node.get("metadata", {})
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    taints = node.get("spec", {}).get("taints") or []
    info = node.get("status", {}).get("nodeInfo", {})
    boot_id, kubelet = info.get("bootID", ""), info.get("kubeletVersion", "")
    held_by_nth = any(t.get("key") in NTH_TAINTS for t in taints) or any(
        label in labels for label in NTH_LABELS
    )
    seen_boot = annotations.get(BOOT_ID_SEEN)
    if held_by_nth and not seen_boot:
        return {"metadata": {"annotations": {BOOT_ID_SEEN: boot_id}}} if boot_id else None
    if not _ready(node):
        return None
    give_back = held_by_nth and seen_boot != boot_id
    target = annotations.get(DRAINED_FOR_UPGRADE)
    upgraded = bool(target) and kubelet == target
    if not (give_back or upgraded):
        return None
    patch: dict[str, Any] = {"metadata": {"annotations": {}}}
    if give_back:
        patch["metadata"]["annotations"][BOOT_ID_SEEN] = None
        patch["metadata"]["labels"] = {label: None for label in NTH_LABELS if label in labels}
        patch["spec"] = {
            "unschedulable": None,
            "taints": [t for t in taints if t.get("key") not in NTH_TAINTS],
        }
    if upgraded:
        patch["metadata"]["annotations"][DRAINED_FOR_UPGRADE] = None
        if not held_by_nth or give_back:
            patch.setdefault("spec", {})["unschedulable"] = None
    return patch


def drain_for_upgrade(
    kubectl: Sequence[str], selector: str, version: str, runner: Runner = run_command
) -> list[str]:
    """Before agents get ``version``: cordon and drain every Ready node of ``selector`` whose
    kubelet runs another version, marked so that ``heal`` gives it back once upgraded. A stopped
    node is left alone: it upgrades at boot, before its kubelet starts."""
    drained = []
    for node in _list_nodes(kubectl, selector):
        info = node.get("status", {}).get("nodeInfo", {})
        if not _ready(node) or info.get("kubeletVersion") == version:
            continue
        name = node["metadata"]["name"]
        runner(
            [*kubectl, "annotate", "--overwrite", "node", name, f"{DRAINED_FOR_UPGRADE}={version}"]
        )
        runner(
            [
                *kubectl,
                "drain",
                name,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=300s",
            ]
        )
        LOG.info("node %s drained for k3s %s", name, version)
        drained.append(name)
    return drained


def _list_nodes(kubectl: Sequence[str], selector: str) -> list[dict[str, Any]]:
    listing = subprocess.run(
        [*kubectl, "get", "nodes", "-l", selector, "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        raise AgentError(f"listing nodes failed: {listing.stderr.strip()[-300:]}")
    return json.loads(listing.stdout).get("items", [])


def heal(kubectl: Sequence[str], selector: str, runner: Runner = run_command) -> list[str]:
    healed = []
    for node in _list_nodes(kubectl, selector):
        patch = heal_patch(node)
        if patch is None:
            continue
        name = node["metadata"]["name"]
        runner([*kubectl, "patch", "node", name, "--type=merge", "-p", json.dumps(patch)])
        LOG.info("node %s: %s", name, json.dumps(patch, sort_keys=True))
        healed.append(name)
    return healed


# --------------------------------------------------------------------------------------------
# renew-certs: k3s renews its certificates only when it starts
# --------------------------------------------------------------------------------------------


def expiring_certificates(directory: Path, days: int) -> list[str]:
    """Leaf certificates (not ``*-ca.crt``) in ``directory`` that expire within ``days``.

    k3s issues its client and serving certificates for a year and renews those close to expiry
    only at start (https://docs.k3s.io/cli/certificate#client-and-server-certificates): a server
    that runs for a year would let them lapse."""
    expiring = []
    for certificate in sorted(directory.glob("*.crt")):
        if certificate.name.endswith("-ca.crt"):
            continue
        check = subprocess.run(
            ["openssl", "x509", "-checkend", str(days * 86400), "-noout", "-in", str(certificate)],
            capture_output=True,
            check=False,
        )
        if check.returncode != 0:
            expiring.append(certificate.name)
    return expiring


def renew_certs(directory: Path, unit: str, days: int, runner: Runner = run_command) -> bool:
    expiring = expiring_certificates(directory, days)
    if not expiring:
        return False
    LOG.info(
        "restarting %s to renew %s (within %d days of expiry)", unit, ", ".join(expiring), days
    )
    runner(["systemctl", "restart", unit])
    return True


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def sync_with_retries(args: argparse.Namespace) -> None:
    credentials = credentials_from_env(os.environ) or credentials_from_imds(args.imds)
    ssm = Ssm(args.region, credentials, args.endpoint)
    root = Path(args.root)
    lock_path = Path(LOCK_PATH) if args.root == "/" else root / "run" / "hybridgpu-node.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # One sync at a time: cloud-init's first run, the timer and Pulumi's SSH apply may overlap.
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for attempt in range(args.retries + 1):
            try:
                runner = log_command if args.dry_run_commands else run_command
                sync(ssm, args.path, root, runner, chown=os.geteuid() == 0 and args.root == "/")
                return
            except AgentError as err:
                if attempt == args.retries or "do not match" not in str(err):
                    raise
                LOG.warning("%s; retrying in %d s", err, RETRY_SECONDS)
                time.sleep(RETRY_SECONDS)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hybridgpu-node", description=(__doc__ or "").split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sync_parser = sub.add_parser("sync", help="apply the files Pulumi published for this node")
    sync_parser.add_argument("--region", required=True)
    sync_parser.add_argument(
        "--path", required=True, help="SSM path, e.g. /hybridgpu/aws-gpu/gpu-worker"
    )
    sync_parser.add_argument("--endpoint", help="SSM endpoint URL (tests)")
    sync_parser.add_argument("--imds", default=IMDS_ENDPOINT, help="IMDS endpoint (tests)")
    sync_parser.add_argument("--root", default="/", help="write files below this directory (tests)")
    sync_parser.add_argument("--retries", type=int, default=0, help="retry an incomplete set")
    sync_parser.add_argument(
        "--dry-run-commands",
        action="store_true",
        help="log the installers and systemctl calls instead of running them (tests, diagnosis)",
    )
    heal_parser = sub.add_parser("heal", help="uncordon GPU nodes that came back")
    drain_parser = sub.add_parser("drain-for-upgrade", help="drain GPU nodes before an upgrade")
    drain_parser.add_argument("--version", required=True)
    renew_parser = sub.add_parser("renew-certs", help="restart k3s before its certificates expire")
    renew_parser.add_argument("--dir", required=True)
    renew_parser.add_argument("--unit", required=True)
    renew_parser.add_argument("--days", type=int, default=90)
    for each in (heal_parser, drain_parser):
        each.add_argument("--kubectl", default="k3s kubectl")
        each.add_argument("--selector", default="node-type=gpu")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.command == "sync":
            sync_with_retries(args)
        elif args.command == "renew-certs":
            renew_certs(Path(args.dir), args.unit, args.days)
        elif args.command == "heal":
            heal(args.kubectl.split(), args.selector)
        else:
            drain_for_upgrade(args.kubectl.split(), args.selector, args.version)
    except AgentError as err:
        LOG.error("%s", err)
        return EXIT_INCOMPLETE if "do not match" in str(err) or "no manifest" in str(err) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
