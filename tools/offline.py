"""Run the real Pulumi program offline, under the SDK's mock runtime, and record what it declares.

Shared by the test suite (``tests/conftest.py``) and the command-line tools (``tools/plan.py``,
``tools/bench.py``): both see exactly the same mocks, so the plan a reviewer reads is the plan the
tests check.

* :class:`PlanMocks` echoes every resource's inputs and fakes the outputs a provider computes
  (ids, IPs, ARNs, command stdout, random bytes, timestamps) and the invokes the program calls
  (AMI and AZ lookups, caller identity). Every fake value is a pure function of the resource's
  type and name, so two runs produce byte-identical inputs downstream.
* :class:`RecordingMonitor` captures each registration with its type, name, parent, inputs (secret
  wrappers kept, so secretness is visible), dependencies and options.
* :func:`run_stack` runs ``__main__.py`` for a stack with the config from ``Pulumi.<stack>.yaml``
  (``Pulumi.yaml`` defaults applied as the CLI would, secure values replaced by placeholders) and
  returns a :class:`StackRun`. StackReference reads are answered from the exports of an earlier
  mocked run of the referenced stack, so the cross-stack contract is exercised, not assumed.

``pulumi.runtime.set_mocks`` is process-global, so :func:`install_mocks` calls it once per process
and later runs only switch the stack name and config.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import runpy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pulumi
import yaml
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from stacks import config as stack_config

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT = "hybridgpu"

MOCK_ACCOUNT_ID = "123456789012"
MOCK_TIME = "2026-01-01T00:00:00Z"
"""Every mocked timestamp (time.Rotating, ...): a fixed instant keeps runs identical."""


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
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
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


def _computed_outputs(typ: str, name: str, inputs: Mapping[str, Any], stack: str) -> dict[str, Any]:
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
        create = str(plain.get("create", ""))
        stdout = (
            _sample_kubeconfig(name)
            if "/etc/rancher/k3s/k3s.yaml" in create
            else f"mock stdout of {name}"
        )
        return {"stdout": stdout, "stderr": ""}
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
    return {}


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
        state.update(_computed_outputs(args.typ, args.name, args.inputs, self.stack))
        resource_id = (
            args.resource_id or f"{args.name}-{_digest(self.stack, args.typ, args.name)[:8]}"
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


# --------------------------------------------------------------------------------------------
# Stack config files
# --------------------------------------------------------------------------------------------

SECRET_PLACEHOLDER = "mock-secret-{key}"  # noqa: S105 - a placeholder, never a credential


def project_defaults() -> dict[str, Any]:
    """``config:`` defaults declared in Pulumi.yaml (the CLI applies them; mocks do not)."""
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    defaults: dict[str, Any] = {}
    for config_key, spec in (project.get("config") or {}).items():
        if isinstance(spec, dict) and "default" in spec:
            defaults[config_key] = spec["default"]
        elif not isinstance(spec, dict):
            defaults[config_key] = spec
    return defaults


def stack_config_file(stack: str) -> dict[str, Any]:
    path = REPO_ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():  # an unknown stack: let the program say so
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("config") or {})


def required_secret_keys(stack: str) -> tuple[str, ...]:
    """Secrets the stack's loader reads (from stacks.config, the single source)."""
    keys = {
        stack_config.STACK_AWS_GPU: stack_config.AWS_GPU_SECRET_KEYS,
        stack_config.STACK_HOMELAB: stack_config.HOMELAB_SECRET_KEYS,
    }.get(stack, ())
    return tuple(f"{PROJECT}:{k}" for k in keys)


def runtime_config_for(
    stack: str, overrides: Mapping[str, Any] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The (config, secret keys) pair the CLI would hand the program for ``stack``.

    Values are strings as the engine passes them (objects as JSON). ``secure:`` values and
    required-but-unset secrets become placeholders marked secret.
    """
    merged: dict[str, Any] = {**project_defaults(), **stack_config_file(stack), **(overrides or {})}
    secret_keys: list[str] = []
    for secret_key in required_secret_keys(stack):
        merged.setdefault(secret_key, {"secure": "placeholder"})
    config: dict[str, str] = {}
    for config_key, value in merged.items():
        if value is None:
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            secret_keys.append(config_key)
            config[config_key] = SECRET_PLACEHOLDER.format(key=config_key.split(":", 1)[-1])
        elif isinstance(value, dict | list):
            config[config_key] = json.dumps(value)
        elif isinstance(value, bool):
            config[config_key] = "true" if value else "false"
        else:
            config[config_key] = str(value)
    return config, secret_keys


# --------------------------------------------------------------------------------------------
# Running a stack
# --------------------------------------------------------------------------------------------


@dataclass
class StackRun:
    stack: str
    registrations: list[Registration]
    exports: dict[str, Any]
    """Export name -> plain value."""
    secret_exports: list[str]
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Component URN -> its registered outputs (secret wrappers kept)."""
    referenced: dict[str, StackExports] = field(default_factory=dict)
    """Exports of other stacks this run read through StackReferences, as they were served."""

    def outputs_of(self, typ: str, name: str) -> dict[str, Any]:
        """Plain registered outputs of the component ``typ`` named ``name``."""
        return unwrap(self.component_outputs[self.one(typ, name).urn])

    def by_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, name: str) -> Registration:
        matches = [r for r in self.registrations if r.type == typ and r.name == name]
        if len(matches) != 1:
            known = sorted(r.name for r in self.by_type(typ))
            raise KeyError(f"expected one {typ} named {name!r}, found {len(matches)}; have {known}")
        return matches[0]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}

    def managed(self) -> Iterator[Registration]:
        return (r for r in self.registrations if not r.read)

    def canonical_inputs(self) -> str:
        """Every resource's inputs (secret wrappers kept), as stable JSON, for identity checks."""
        rows = sorted(
            (
                r.urn,
                json.dumps(r.inputs, sort_keys=True, default=_jsonable),
                json.dumps(sorted(r.dependencies)),
            )
            for r in self.registrations
        )
        return json.dumps(rows, indent=0)


def _settle_leftover_tasks() -> None:
    """After a failed run, let the program's remaining tasks finish (or cancel them) so their
    errors cannot surface in the next run of this process."""
    loop = asyncio.get_event_loop()
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if pending:
        _, still = loop.run_until_complete(asyncio.wait(pending, timeout=5))
        for task in still:
            task.cancel()
    for task in pending:
        if task.done() and not task.cancelled():
            task.exception()  # mark retrieved: no "exception was never retrieved" later
    runtime_settings = cast(Any, settings.SETTINGS)
    runtime_settings.rpc_manager.clear()


def _resolve(value: Any) -> tuple[Any, bool]:
    output = pulumi.Output.from_input(value)
    plain = _sync_await(output.future())
    secret = bool(_sync_await(output.is_secret()))
    return plain, secret


def run_stack(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    program: Callable[[], object] | None = None,
) -> StackRun:
    """Run the program for ``stack`` under the mocks and return what it declared.

    ``overrides`` replace config keys (full ``hybridgpu:...`` names) of ``Pulumi.<stack>.yaml``.
    Exceptions of the program (e.g. ``ConfigError``) propagate. The run's exports are kept, so a
    later run of a stack that references this one sees them.
    """
    mocks, monitor = install_mocks()
    config, secret_keys = runtime_config_for(stack, overrides)
    settings._set_stack(stack)
    runtime_config.set_all_config(config, secret_keys)
    monitor.reset()
    mocks.stack = stack
    mocks.calls = []
    mocks.served = {}
    root = settings.get_root_resource()
    assert isinstance(root, pulumi.runtime.stack.Stack)
    root.outputs.clear()
    # As pulumi.runtime.test does: forget RPCs and outputs of any earlier run in this process.
    runtime_settings = cast(Any, settings.SETTINGS)
    runtime_settings.rpc_manager.clear()
    runtime_settings.outputs.clear()

    def run_main() -> None:
        if program is not None:
            program()
        else:
            runpy.run_path(str(REPO_ROOT / "__main__.py"), run_name="__main__")

    try:
        _sync_await(run_pulumi_func(run_main))
    except BaseException:
        _settle_leftover_tasks()
        raise

    exports: dict[str, Any] = {}
    secret_exports: list[str] = []
    for name, value in sorted(root.outputs.items()):
        plain, secret = _resolve(value)
        exports[name] = plain
        if secret:
            secret_exports.append(name)
    mocks.stack_exports[stack] = StackExports(values=exports, secret_names=secret_exports)
    return StackRun(
        stack=stack,
        registrations=list(monitor.registrations),
        exports=exports,
        secret_exports=secret_exports,
        calls=list(mocks.calls),
        component_outputs=dict(monitor.component_outputs),
        referenced=dict(mocks.served),
    )


STACK_ORDER = ("aws-gpu", "homelab")
"""Deploy order: homelab reads aws-gpu through a StackReference."""


def run_with_dependencies(stack: str, overrides: Mapping[str, Any] | None = None) -> StackRun:
    """Run the stacks ``stack`` depends on first (unchanged config), then ``stack``."""
    for earlier in STACK_ORDER[: STACK_ORDER.index(stack)] if stack in STACK_ORDER else ():
        run_stack(earlier)
    return run_stack(stack, overrides)
