"""Pure renderers of gpu-waker's deployment on the AWS control node (no Pulumi).

gpu-waker (``runtime/gpu_waker``) runs as a systemd service on the always-on control node, not
as a pod: there it reads the instance role's credentials from IMDSv2 directly, so no pod needs
IMDS (the control node's hop limit can be 1) and no Pod Security exemption is needed for a
hostNetwork pod; it binds the Nebula address the homelab reaches; and it needs no container
image, which this project could not build and pin. Its code reaches the node as a bundle
(``requirements.lock`` with a SHA-256 for every file + the sources) that the install script
verifies and installs into a venv once per bundle digest: pinned and reproducible, nothing
fetched at boot.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import ipaddress
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.k3s.pod_security import namespace_labels

FILES_DIR = Path(__file__).resolve().parent / "gpu_waker_files"
PREFIX = "/opt/hybridgpu/gpu-waker"
ETC_DIR = "/etc/gpu-waker"
NAMESPACE = "gpu-waker"
SERVICE_ACCOUNT = "gpu-waker"
TOKEN_SECRET = "gpu-waker-token"  # noqa: S105 - the name of a Secret object
SYSTEMD_DIR = "/etc/systemd/system"
# k3s's cluster CA on a server (https://docs.k3s.io/cli/certificate#certificate-authority-ca-certificates).
K3S_SERVER_CA = "/var/lib/rancher/k3s/server/tls/server-ca.crt"
# What the controller needs of the Kubernetes API: list pods (GPU pods, the Ollama pod's IP).
CLUSTER_ROLE_RULES = ({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},)
# A command line is one argument of the remote shell, which Linux caps at 128 KiB
# (MAX_ARG_STRLEN); the bundle travels on stdin, the script must stay well below that.
MAX_SCRIPT_BYTES = 64 * 1024


@dataclass(frozen=True)
class WakerBundle:
    """The runtime package as shipped to the node: a deterministic tar.gz (base64) and its
    SHA-256, which names the release directory and is checked by the install script."""

    tar_gz_b64: str
    sha256: str


def load_bundle(package_dir: Path) -> WakerBundle:
    """``requirements.lock`` + ``src/gpu_waker/*.py`` of the runtime package, as a tar.gz with
    fixed owners, modes and times (same files, same bytes, same digest)."""
    lock = package_dir / "requirements.lock"
    sources = sorted((package_dir / "src" / "gpu_waker").glob("*.py"))
    if not lock.is_file() or not sources:
        raise FileNotFoundError(f"{package_dir} has no requirements.lock or gpu_waker sources")
    members = [("requirements.lock", lock.read_bytes())] + [
        (f"app/gpu_waker/{path.name}", path.read_bytes()) for path in sources
    ]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    data = compressed.getvalue()
    return WakerBundle(base64.b64encode(data).decode(), hashlib.sha256(data).hexdigest())


def power_policy(worker_arn: str, *, manage_power: bool, sleep_arn: str | None = None) -> str:
    """The control node role's inline policy: Start/StopInstances on the GPU worker only, and
    DescribeInstances, which supports no resource-level permissions (Resource "*"; it reveals
    no user data: that needs DescribeInstanceAttribute, not granted)
    (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html).
    ``sleep_arn``: the control node itself, which may then stop itself (never start: a stopped
    node runs nothing; the homelab's wake gate starts it)."""
    for arn in (worker_arn, *([sleep_arn] if sleep_arn is not None else [])):
        if not arn.startswith("arn:") or ":instance/i-" not in arn:
            raise ValueError(f"'{arn}' is not the ARN of one EC2 instance")
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadWorkerState",
            "Effect": "Allow",
            "Action": "ec2:DescribeInstances",
            "Resource": "*",
        }
    ]
    if manage_power:
        statements.append(
            {
                "Sid": "StartStopGpuWorker",
                "Effect": "Allow",
                "Action": ["ec2:StartInstances", "ec2:StopInstances"],
                "Resource": worker_arn,
            }
        )
    if manage_power and sleep_arn is not None:
        statements.append(
            {
                "Sid": "StopThisNode",
                "Effect": "Allow",
                "Action": "ec2:StopInstances",
                "Resource": sleep_arn,
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, indent=2, sort_keys=True)


@dataclass(frozen=True)
class WakerSettings:
    """What the service is told (its EnvironmentFile; nothing secret)."""

    instance_id: str
    region: str
    listen_ip: str
    port: int
    idle_stop_minutes: int
    wake_timeout_seconds: int
    manage_power: bool
    upstream_namespace: str
    upstream_selector: Mapping[str, str]
    upstream_port: int
    sleep_instance_id: str | None = None
    """The control node's own id: it stops itself after ``sleep_after_minutes`` (issue #15)."""
    sleep_after_minutes: int | None = None

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.listen_ip)
        if not self.instance_id:
            raise ValueError("instance_id is empty")
        if (self.sleep_instance_id is None) != (self.sleep_after_minutes is None):
            raise ValueError("sleep_instance_id and sleep_after_minutes go together")
        if not 1 <= self.port <= 65535 or not 1 <= self.upstream_port <= 65535:
            raise ValueError("ports must be in 1..65535")


@dataclass(frozen=True)
class GateSettings:
    """The homelab's wake gate: gpu-waker in gate mode on a homelab k3s server. It holds a
    request while the sleeping AWS side starts (control node first, the worker at once after it,
    so both boot together), forwards it to gpu-waker on AWS once that answers, and stops
    nothing (the AWS side sleeps by itself). Its AWS credentials come from IAM Roles Anywhere
    with the certificate in ``ETC_DIR`` (nothing secret here)."""

    control_instance_id: str
    worker_instance_id: str
    region: str
    listen_ip: str
    port: int
    wake_timeout_seconds: int
    upstream_url: str
    """gpu-waker on the AWS control node (``gpuWakerUrl``)."""
    trust_anchor_arn: str
    profile_arn: str
    role_arn: str

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.listen_ip)
        for name in ("control_instance_id", "worker_instance_id"):
            # EC2's form (i-, 8 or 17 hex digits), as gpu-waker checks it.
            if not re.fullmatch(r"i-[0-9a-f]{8,17}", getattr(self, name)):
                raise ValueError(f"{name} '{getattr(self, name)}' is not an instance id")
        if not re.fullmatch(r"http://[0-9.]+:[0-9]+", self.upstream_url):
            raise ValueError(f"upstream_url '{self.upstream_url}' is not http://<ip>:<port>")


# Where the install script puts the gate's certificate and key (from stdin).
GATE_CERTIFICATE = "rolesanywhere.crt"
GATE_PRIVATE_KEY = "rolesanywhere.key"
# The gate forwards to gpu-waker on AWS, which may hold the request up to its own wake timeout
# while the worker starts, then streams for as long as the model answers: the gate's read
# timeout covers both (Ollama's slowest answers stream tokens well within it).
GATE_READ_TIMEOUT_SECONDS = 1800


def render_gate_environment(settings: GateSettings, etc_dir: str = ETC_DIR) -> str:
    return environment_file(
        {
            "MODE": "gate",
            "INSTANCE_ID": settings.control_instance_id,
            "ALSO_START_INSTANCE_IDS": settings.worker_instance_id,
            "REGION": settings.region,
            "LISTEN_HOST": settings.listen_ip,
            "LISTEN_PORT": str(settings.port),
            "TOKEN_FILE": f"{etc_dir}/client-token",
            "KUBECONFIG": f"{etc_dir}/kubeconfig",
            "WAKE_TIMEOUT_SECONDS": str(settings.wake_timeout_seconds),
            "UPSTREAM_URL": settings.upstream_url,
            "READY_PATH": "/healthz",
            "UPSTREAM_READ_TIMEOUT_SECONDS": str(GATE_READ_TIMEOUT_SECONDS),
            "CREDENTIALS": "roles-anywhere",
            "ROLES_ANYWHERE_TRUST_ANCHOR_ARN": settings.trust_anchor_arn,
            "ROLES_ANYWHERE_PROFILE_ARN": settings.profile_arn,
            "ROLES_ANYWHERE_ROLE_ARN": settings.role_arn,
            "CERTIFICATE_FILE": f"{etc_dir}/{GATE_CERTIFICATE}",
            "PRIVATE_KEY_FILE": f"{etc_dir}/{GATE_PRIVATE_KEY}",
        }
    )


def render_environment(settings: WakerSettings) -> str:
    selector = ",".join(f"{k}={v}" for k, v in sorted(settings.upstream_selector.items()))
    values = {
        "INSTANCE_ID": settings.instance_id,
        "REGION": settings.region,
        "LISTEN_HOST": settings.listen_ip,
        "LISTEN_PORT": str(settings.port),
        "TOKEN_FILE": f"{ETC_DIR}/client-token",
        "KUBECONFIG": f"{ETC_DIR}/kubeconfig",
        "IDLE_STOP_MINUTES": str(settings.idle_stop_minutes),
        "WAKE_TIMEOUT_SECONDS": str(settings.wake_timeout_seconds),
        "MANAGE_POWER": "true" if settings.manage_power else "false",
        "UPSTREAM_NAMESPACE": settings.upstream_namespace,
        "UPSTREAM_SELECTOR": selector,
        "UPSTREAM_PORT": str(settings.upstream_port),
    }
    if settings.sleep_instance_id is not None:
        values["SLEEP_INSTANCE_ID"] = settings.sleep_instance_id
        values["SLEEP_AFTER_MINUTES"] = str(settings.sleep_after_minutes)
    return environment_file(values)


def environment_file(values: Mapping[str, str]) -> str:
    """``GPU_WAKER_<NAME>=value`` lines of the service's EnvironmentFile."""
    for name, value in values.items():
        if any(c in value for c in "\n\"'\\$` "):
            raise ValueError(f"{name} value {value!r} has characters an EnvironmentFile mangles")
    return "".join(f"GPU_WAKER_{name}={value}\n" for name, value in values.items()).rstrip("\n")


PLACEHOLDER = re.compile(r"@[A-Z][A-Z0-9_]*@")


def _fill(template: str, values: Mapping[str, str]) -> str:
    """Replace ``@NAME@`` placeholders; every one must be filled."""
    filled = PLACEHOLDER.sub(lambda m: values.get(m.group(0)[1:-1], m.group(0)), template)
    left = sorted(set(PLACEHOLDER.findall(filled)))
    if left:
        raise ValueError(f"template placeholders left unfilled: {left}")
    return filled


def render_unit(prefix: str = PREFIX, etc_dir: str = ETC_DIR) -> str:
    return _fill(
        (FILES_DIR / "gpu-waker.service").read_text(), {"PREFIX": prefix, "ETC_DIR": etc_dir}
    )


def render_install_script(
    settings: WakerSettings | GateSettings,
    bundle_sha256: str,
    *,
    prefix: str = PREFIX,
    etc_dir: str = ETC_DIR,
    systemd_dir: str = SYSTEMD_DIR,
    k3s_ca: str = K3S_SERVER_CA,
) -> str:
    """The install script (paths overridable so a test can run it for real in a sandbox)."""
    if not re.fullmatch(r"[0-9a-f]{64}", bundle_sha256):
        raise ValueError(f"'{bundle_sha256}' is not a SHA-256")
    script = _fill(
        (FILES_DIR / "install.sh").read_text(),
        {
            "BUNDLE_SHA256": bundle_sha256,
            "PREFIX": prefix,
            "ETC_DIR": etc_dir,
            "SYSTEMD_DIR": systemd_dir,
            "K3S_CA": k3s_ca,
            "SA_NAMESPACE": NAMESPACE,
            "SA_NAME": SERVICE_ACCOUNT,
            "SA_SECRET": TOKEN_SECRET,
            "ENVIRONMENT": render_gate_environment(settings, etc_dir)
            if isinstance(settings, GateSettings)
            else render_environment(settings),
            "ROLES_ANYWHERE": "true" if isinstance(settings, GateSettings) else "false",
            "CERTIFICATE_FILE": GATE_CERTIFICATE,
            "PRIVATE_KEY_FILE": GATE_PRIVATE_KEY,
            "SYSTEMD_UNIT": render_unit(prefix, etc_dir).rstrip("\n"),
        },
    )
    if len(script.encode()) > MAX_SCRIPT_BYTES:
        raise ValueError(f"install script is {len(script.encode())} bytes; keep it small")
    return script


def render_uninstall_script() -> str:
    return _fill(
        (FILES_DIR / "uninstall.sh").read_text(),
        {
            "PREFIX": PREFIX,
            "ETC_DIR": ETC_DIR,
            "SYSTEMD_DIR": SYSTEMD_DIR,
            "SA_NAMESPACE": NAMESPACE,
            "SA_SECRET": TOKEN_SECRET,
        },
    )


def remote_command(script: str) -> str:
    """Run ``script`` as root over SSH while the command's stdin (token, bundle) reaches it:
    the script is written to a temporary file first (a ``sudo bash -s`` here-document would
    take stdin's place)."""
    delimiter = "HYBRIDGPU_SCRIPT_EOF"
    if delimiter in script:
        raise ValueError("script contains the here-document delimiter")
    return (
        "set -eu\n"
        "script=$(mktemp)\n"
        "trap 'rm -f \"$script\"' EXIT\n"
        f"cat > \"$script\" <<'{delimiter}'\n{script.rstrip()}\n{delimiter}\n"
        'sudo bash "$script"\n'
    )


def stdin_payload(
    token: str, bundle: WakerBundle, certificate: tuple[str, str] | None = None
) -> str:
    """Line 1 the client token; for the gate, then the base64 of its certificate and of its
    key (one line each); then the bundle."""
    if not token or "\n" in token:
        raise ValueError("the client token must be one non-empty line")
    lines = [token]
    if certificate is not None:
        cert_pem, key_pem = certificate
        if "BEGIN CERTIFICATE" not in cert_pem or "PRIVATE KEY" not in key_pem:
            raise ValueError("the gate's certificate and key must be PEM")
        lines += [base64.b64encode(pem.encode()).decode() for pem in (cert_pem, key_pem)]
    return "\n".join([*lines, bundle.tar_gz_b64]) + "\n"


def render_rbac() -> list[dict[str, Any]]:
    """Namespace (Pod Security 'restricted': nothing runs there), the ServiceAccount whose
    token the service uses, and its cluster-wide right to list pods."""
    labels = {"app.kubernetes.io/name": "gpu-waker"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NAMESPACE,
                "labels": {**labels, **namespace_labels("restricted")},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE, "labels": labels},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "gpu-waker", "labels": labels},
            "rules": [dict(rule) for rule in CLUSTER_ROLE_RULES],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "gpu-waker", "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "gpu-waker",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
            ],
        },
    ]


def control_node_pod_subnet(aws_pod_cidr: str, node_mask: int = 24) -> str:
    """The control node's pod range: the first /24 of the AWS pod range. The k3s server
    registers before any agent and kube-controller-manager's range allocator hands out node
    ranges in order (k3s default node-cidr-mask-size 24), so the server gets the first one.
    Host processes on the node (gpu-waker) reach pods on other nodes from flannel.1, whose
    address is the first of that range: this is the source Ollama's NetworkPolicy admits."""
    network = ipaddress.IPv4Network(aws_pod_cidr)
    if network.prefixlen > node_mask:
        raise ValueError(f"{aws_pod_cidr} is smaller than one node range (/{node_mask})")
    return str(next(network.subnets(new_prefix=node_mask)))
