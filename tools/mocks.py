"""The mock runtime the offline tools run the program under.

* :class:`PlanMocks` echoes every resource's inputs and fakes the outputs a provider computes
  (ids, IPs, ARNs, command stdout, random bytes, timestamps) and the invokes the program calls
  (AMI and AZ lookups, caller identity). Every fake value is a pure function of the resource's
  type and name, so two runs produce byte-identical inputs downstream.
* :class:`RecordingMonitor` captures each registration with its type, name, parent, inputs (secret
  wrappers kept, so secretness is visible), dependencies and options.

``pulumi.runtime.set_mocks`` is process-global, so :func:`install_mocks` calls it once per process
and later runs only switch the stack name and config.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import rpc

from stacks.config import PROJECT

MOCK_ACCOUNT_ID = "123456789012"
MOCK_TIME = "2026-01-01T00:00:00Z"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _mock_ip(prefix: str, *parts: str) -> str:
    """A stable address in a documentation range (RFC 5737) derived from the parts."""
    value = int(_digest(*parts)[:4], 16)
    return f"{prefix}.{value % 254 + 1}"


# --------------------------------------------------------------------------------------------
# Secret-aware values
# --------------------------------------------------------------------------------------------


def unwrap(value: Any) -> Any:
    """The plain value, with every secret wrapper (at any depth) removed."""
    if rpc.is_rpc_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def secret_paths(value: Any, path: str = "") -> list[str]:
    """Dotted paths (``a.b[0]``) of every secret wrapper inside ``value``."""
    if rpc.is_rpc_secret(value):
        return [path or "."]
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += secret_paths(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += secret_paths(v, f"{path}[{i}]")
    return found


def redact(value: Any) -> Any:
    """The value with every secret replaced by ``"[secret]"`` (for printing and JSON plans)."""
    if rpc.is_rpc_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return jsonable(value)


def jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, pulumi.asset.StringAsset):
        return {"stringAsset": value.text}
    if isinstance(value, pulumi.asset.FileAsset):
        return {"fileAsset": str(value.path)}
    return repr(value)


# --------------------------------------------------------------------------------------------
# Mocks
# --------------------------------------------------------------------------------------------


def _sample_kubeconfig(name: str) -> str:
    """What ``cat /etc/rancher/k3s/k3s.yaml`` prints on a fresh k3s server (fake credentials)."""
    fake = base64.b64encode(f"mock-{name}".encode()).decode()
    return (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority-data: {fake}\n"
        "    server: https://127.0.0.1:6443\n"
        "  name: default\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: default\n"
        "    user: default\n"
        "  name: default\n"
        "current-context: default\n"
        "kind: Config\n"
        "preferences: {}\n"
        "users:\n"
        "- name: default\n"
        "  user:\n"
        f"    client-certificate-data: {fake}\n"
        f"    client-key-data: {fake}\n"
    )


def _computed_outputs(
    typ: str, name: str, inputs: Mapping[str, Any], stack: str, incarnation: int = 0
) -> dict[str, Any]:
    """Outputs a real provider would compute for this resource type."""
    digest = _digest(stack, typ, name)
    plain = unwrap(dict(inputs))
    if typ == "aws:ec2/instance:Instance":
        return {
            "publicIp": _mock_ip("198.51.100", stack, name),
            "privateIp": _mock_ip("10.100.1", stack, name),
            "arn": f"arn:aws:ec2:us-west-2:{MOCK_ACCOUNT_ID}:instance/i-{digest[:17]}",
            "primaryNetworkInterfaceId": f"eni-{digest[:17]}",
            "instanceState": "running",
        }
    if typ == "aws:ec2/eip:Eip":
        return {
            "publicIp": _mock_ip("203.0.113", stack, name),
            "allocationId": f"eipalloc-{digest[:17]}",
        }
    if typ == "aws:ec2/keyPair:KeyPair":
        return {
            "keyName": plain.get("keyName") or f"{plain.get('keyNamePrefix', name)}{digest[:8]}"
        }
    if typ == "aws:s3/bucket:Bucket":
        bucket = plain.get("bucket") or f"{plain.get('bucketPrefix', name)}{digest[:12]}"
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "region": "us-west-2"}
    if typ in (
        "aws:iam/role:Role",
        "aws:iam/instanceProfile:InstanceProfile",
        "aws:iam/policy:Policy",
    ):
        kind = typ.rsplit(":", maxsplit=1)[-1].lower()
        resource_name = plain.get("name") or f"{name}-{digest[:7]}"
        return {
            "name": resource_name,
            "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:{kind}/{resource_name}",
        }
    if typ.startswith("aws:"):
        return {"arn": f"arn:aws:mock:us-west-2:{MOCK_ACCOUNT_ID}:{name}"}
    if typ in ("command:remote:Command", "command:local:Command"):
        return {"stdout": _command_stdout(name, str(plain.get("create", ""))), "stderr": ""}
    if typ == "random:index/randomBytes:RandomBytes":
        raw = hashlib.sha256(f"{stack}/{name}".encode()).digest()
        length = int(plain.get("length", 32))
        data = (raw * (length // len(raw) + 1))[:length]
        return {"base64": base64.b64encode(data).decode(), "hex": data.hex()}
    if typ == "random:index/randomPassword:RandomPassword":
        return {"result": f"mock{digest[: int(plain.get('length', 32)) - 4]}"}
    if typ == "time:index/rotating:Rotating":
        return {"rfc3339": MOCK_TIME}
    if typ == "time:index/static:Static":
        return {"rfc3339": MOCK_TIME}
    if typ.startswith("proxmoxve:"):
        return {"vmId": plain.get("vmId", 100)} if "vm" in typ.lower() else {}
    return _kubernetes_outputs(typ, name, plain, stack, incarnation)


def _kubernetes_outputs(
    typ: str, name: str, plain: Mapping[str, Any], stack: str, incarnation: int
) -> dict[str, Any]:
    """The API server assigns every object a uid; a re-created object gets a new one."""
    if typ.startswith("kubernetes:") and isinstance(plain.get("metadata"), dict):
        return {"metadata": {**plain["metadata"], "uid": _mock_uid(stack, typ, name, incarnation)}}
    return {}


def _mock_uid(stack: str, typ: str, name: str, incarnation: int) -> str:
    digest = _digest(stack, typ, name, str(incarnation))
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


PRINTS_KUBECONFIG = "# hybridgpu: prints a kubeconfig"
"""Marker line of scripts whose stdout is a kubeconfig (components/k3s/scripts)."""
PRINTS_JOIN_TOKEN = "# hybridgpu: prints the cluster join token"  # noqa: S105 - a marker
"""Marker line of the script that prints a k3s server's secure join token."""


def _command_stdout(name: str, create: str) -> str:
    """What a command's script prints, for the scripts whose output the program uses."""
    if "/etc/rancher/k3s/k3s.yaml" in create or PRINTS_KUBECONFIG in create:
        return _sample_kubeconfig(name)
    if PRINTS_JOIN_TOKEN in create:
        # K10<sha256 of the cluster CA>::server:<password> (https://docs.k3s.io/cli/token).
        return f"K10{_digest('ca', name)}::server:mock{_digest('token', name)[:24]}\n"
    return f"mock stdout of {name}"


def _provider_id(typ: str, plain: Mapping[str, Any]) -> str | None:
    """Ids a provider derives from inputs (so a changed input changes the id, as for real)."""
    if typ in ("proxmoxve:download/file:File", "proxmoxve:index/fileLegacy:FileLegacy"):
        # <datastore>:<content type>/<file name>: bpg/terraform-provider-proxmox@v0.111.1
        # fwprovider/nodes/resource_download_file.go (plan.ID) and proxmoxtf/resource/file.go
        # (fileVolumeID).
        raw = plain.get("sourceRaw")
        file_name = plain.get("fileName") or (raw.get("fileName") if isinstance(raw, dict) else "")
        content = plain.get("contentType", "snippets")
        return f"{plain.get('datastoreId')}:{content}/{file_name}"
    return None


def _mock_call(function: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Results of invokes (data sources) the program uses."""
    if function == "aws:ec2/getAmi:getAmi":
        key = json.dumps(unwrap(dict(args)), sort_keys=True)
        return {"id": f"ami-{_digest(key)[:17]}", "name": "mock-ami", "architecture": "x86_64"}
    if function == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {
            "names": ["us-west-2a", "us-west-2b", "us-west-2c"],
            "zoneIds": ["usw2-az1", "usw2-az2", "usw2-az3"],
        }
    if function == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "accountId": MOCK_ACCOUNT_ID,
            "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/mock",
            "userId": "MOCK",
        }
    if function == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com"}
    if function == "aws:index/getRegion:getRegion":
        return {"name": "us-west-2", "region": "us-west-2"}
    return {}


@dataclass
class StackExports:
    values: dict[str, Any]
    secret_names: list[str]


class PlanMocks(pulumi.runtime.Mocks):
    """Echo inputs, fake computed outputs, answer StackReferences from earlier runs."""

    def __init__(self) -> None:
        self.stack = "stack"
        self.stack_exports: dict[str, StackExports] = {}
        """Short stack name (``aws-gpu``) -> its exports from a mocked run."""
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.served: dict[str, StackExports] = {}
        """Exports handed to the current run's StackReferences, by short stack name."""
        self.recreated: set[str] = set()
        """Resource names to treat as created again since the last run (new server-side ids,
        e.g. a Kubernetes uid): how a lifecycle test models an object deleted and re-created."""

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":
            full_name = str(unwrap(args.inputs.get("name", args.resource_id)))
            short = full_name.rsplit("/", 1)[-1]
            exports = self.stack_exports.get(short)
            if exports is None:
                raise KeyError(
                    f"StackReference '{full_name}': no mocked run of stack '{short}' was recorded; "
                    "run it first (tools.offline.run_stack)"
                )
            self.served[short] = exports
            return full_name, {
                "name": full_name,
                "outputs": exports.values,
                "secretOutputNames": exports.secret_names,
            }
        state = dict(args.inputs)
        incarnation = 1 if args.name in self.recreated else 0
        state.update(_computed_outputs(args.typ, args.name, args.inputs, self.stack, incarnation))
        resource_id = (
            args.resource_id
            or _provider_id(args.typ, unwrap(dict(args.inputs)))
            or f"{args.name}-{_digest(self.stack, args.typ, args.name)[:8]}"
        )
        return resource_id, state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append((args.token, unwrap(dict(args.args))))
        return _mock_call(args.token, args.args), []


@dataclass(frozen=True)
class Registration:
    """One resource as the program declared it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    """As serialized by the SDK, secret wrappers kept (see :func:`unwrap`, :func:`secret_paths`)."""
    dependencies: tuple[str, ...]
    property_dependencies: dict[str, tuple[str, ...]]
    provider: str
    delete_before_replace: bool
    additional_secret_outputs: tuple[str, ...]
    replace_on_changes: tuple[str, ...]
    ignore_changes: tuple[str, ...]
    protect: bool
    retain_on_delete: bool
    deleted_with: str = ""
    """URN of the resource whose deletion makes this one's delete unnecessary."""
    replace_with: tuple[str, ...] = ()
    """URNs whose replacement replaces this resource too."""
    read: bool = False
    """Read (StackReference, get) rather than managed."""

    @property
    def plain_inputs(self) -> dict[str, Any]:
        return unwrap(self.inputs)

    @property
    def secret_inputs(self) -> list[str]:
        return secret_paths(self.inputs)

    @property
    def parent_type(self) -> str:
        """Type of the parent resource, from the parent URN (``""`` for top level)."""
        if not self.parent:
            return ""
        return self.parent.split("::")[2].split("$")[-1]


class RecordingMonitor(runtime_mocks.MockMonitor):
    """A MockMonitor that keeps every registration request, in order."""

    def __init__(self, mocks: PlanMocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.component_outputs: dict[str, dict[str, Any]] = {}
        """URN -> what a component passed to ``register_outputs`` (secret wrappers kept)."""

    def reset(self) -> None:
        self.registrations = []
        self.component_outputs = {}
        self.resources = {}

    def RegisterResourceOutputs(self, request: Any) -> Any:
        outputs = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        self.component_outputs[request.urn] = dict(outputs or {})
        return super().RegisterResourceOutputs(request)

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(self._record(request, response.urn, read=False))
        return response

    def ReadResource(self, request: Any) -> Any:
        response = super().ReadResource(request)
        self.registrations.append(self._record(request, response.urn, read=True))
        return response

    @staticmethod
    def _record(request: Any, urn: str, *, read: bool) -> Registration:
        raw = request.properties if read else request.object
        inputs = rpc.deserialize_properties(raw, keep_unknowns=True) if raw else {}
        return Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=True if read else bool(request.custom),
            inputs=dict(inputs),
            dependencies=() if read else tuple(request.dependencies),
            property_dependencies=(
                {} if read else {k: tuple(v.urns) for k, v in request.propertyDependencies.items()}
            ),
            provider=request.provider,
            delete_before_replace=False if read else bool(request.deleteBeforeReplace),
            additional_secret_outputs=() if read else tuple(request.additionalSecretOutputs),
            replace_on_changes=() if read else tuple(request.replaceOnChanges),
            ignore_changes=() if read else tuple(request.ignoreChanges),
            protect=False if read else bool(request.protect),
            retain_on_delete=False if read else bool(request.retainOnDelete),
            deleted_with="" if read else request.deletedWith,
            replace_with=() if read else tuple(request.replace_with),
            read=read,
        )


_INSTALLED: tuple[PlanMocks, RecordingMonitor] | None = None


def install_mocks() -> tuple[PlanMocks, RecordingMonitor]:
    """Call ``set_mocks`` once per process; later calls return the same pair."""
    global _INSTALLED  # noqa: PLW0603 - set_mocks itself is process-global state
    if _INSTALLED is None:
        mocks = PlanMocks()
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.set_mocks(
            mocks, project=PROJECT, stack="stack", preview=False, monitor=monitor
        )
        _INSTALLED = (mocks, monitor)
    return _INSTALLED
