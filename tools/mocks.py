"""The mock runtime the offline tools run the program under.

* :class:`PlanMocks` echoes every resource's inputs and fakes the outputs a provider computes
  and the invokes the program calls (:mod:`tools.mock_outputs`: pure functions of the
  resource's type, name and inputs, so two runs produce byte-identical inputs downstream).
* :class:`RecordingMonitor` captures each registration with its type, name, parent, inputs (secret
  wrappers kept, so secretness is visible), dependencies and options (including ``deletedWith``
  and ``replaceWith``, what a lifecycle test reads).

``pulumi.runtime.set_mocks`` is process-global, so :func:`install_mocks` calls it once per process
and later runs only switch the stack name and config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import rpc

from stacks.config import PROJECT
from tools.mock_outputs import computed_outputs, digest, mock_call, provider_id

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
        state.update(computed_outputs(args.typ, args.name, args.inputs, self.stack, incarnation))
        resource_id = (
            args.resource_id
            or provider_id(args.typ, unwrap(dict(args.inputs)))
            or f"{args.name}-{digest(self.stack, args.typ, args.name)[:8]}"
        )
        return resource_id, state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append((args.token, unwrap(dict(args.args))))
        return mock_call(args.token, args.args), []


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
