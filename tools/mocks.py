"""The mock runtime the offline tools run the program under.

* :class:`PlanMocks` echoes every resource's inputs and fakes the outputs a provider computes
  (ids, IPs, ARNs, command stdout, random bytes, timestamps) and the invokes the program calls
  (AMI and AZ lookups, caller identity). Every fake value is a pure function of the resource's
  type and name, so two runs produce byte-identical inputs downstream.
* :class:`RecordingMonitor` captures each registration with its type, name, parent, inputs (secret
  wrappers kept, so secretness is visible), dependencies and options (``deletedWith`` and
  ``replaceWith`` included: what a lifecycle test reads).

``pulumi.runtime.set_mocks`` is process-global, so :func:`install_mocks` calls it once per process
and later runs only switch the stack name and config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import rpc, settings

from stacks.config import PROJECT
from tools.fakes import MOCK_TIME, computed_outputs, digest, mock_call, provider_id
from tools.values import jsonable, redact, secret_paths, unwrap

EC2_INSTANCE = "aws:ec2/instance:Instance"

__all__ = [
    "MOCK_TIME",
    "PlanMocks",
    "RecordingMonitor",
    "Registration",
    "StackExports",
    "install_mocks",
    "jsonable",
    "redact",
    "secret_paths",
    "unwrap",
]


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
        self.preview = False
        """Answer as the engine does during `pulumi preview`: inputs only, every output a
        provider computes (ids, IPs, ARNs, stdout) unknown."""
        self.parameters: dict[str, str] = {}
        """SSM parameter name -> value, as earlier mocked runs declared them (the homelab reads
        the aws-gpu stack's parameters through invokes)."""

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
        if self.preview and not args.resource_id:
            return "", state  # an empty id is unknown during a preview (pulumi/runtime/resource.py)
        incarnation = 1 if args.name in self.recreated else 0
        state.update(computed_outputs(args.typ, args.name, args.inputs, self.stack, incarnation))
        resource_digest = digest(self.stack, args.typ, args.name)
        resource_id = (
            args.resource_id
            or provider_id(args.typ, unwrap(dict(args.inputs)))
            # An EC2 instance id as EC2 forms it, the one its mock ARN names (tools/fakes.py).
            or (f"i-{resource_digest[:17]}" if args.typ == EC2_INSTANCE else None)
            or f"{args.name}-{resource_digest[:8]}"
        )
        return resource_id, state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        function = args.token
        self.calls.append((function, unwrap(dict(args.args))))
        if function == "aws:ssm/getParameter:getParameter":
            name = str(unwrap(args.args.get("name")))
            if name not in self.parameters:
                raise KeyError(
                    f"SSM parameter '{name}' was declared by no mocked run; run the stack that "
                    "owns it first"
                )
            return {"name": name, "value": self.parameters[name], "type": "SecureString"}, []
        return mock_call(function, args.args), []


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
    """URN of the resource whose deletion makes this one's delete a no-op (``deleted_with``)."""
    replace_with: tuple[str, ...] = ()
    """URNs whose replacement replaces this resource too (``replace_with``)."""
    aliases: tuple[str, ...] = ()
    """Earlier URNs of this resource (``aliases`` resolved by the SDK)."""
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

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return engine_urn(parent, type_, name)

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
            deleted_with="" if read else str(request.deletedWith),
            replace_with=() if read else tuple(request.replace_with),
            aliases=() if read else _alias_urns(request),
            read=read,
        )


ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def engine_urn(parent: str, type_: str, name: str, stack: str = "", project: str = "") -> str:
    """A URN as the engine makes it: the parent's whole qualified type (its chain), except that
    the root stack is left out (pulumi/pulumi pkg/resource/deploy/deployment.go@v3.259.0,
    generateURN). The SDK's MockMonitor keeps only the parent's last type and the root stack,
    so its URNs differ from the real ones a state file holds."""
    parent_type = parent.split("::")[2] if parent else ""
    chain = f"{parent_type}$" if parent_type and parent_type != ROOT_STACK_TYPE else ""
    return (
        f"urn:pulumi:{stack or settings.get_stack()}::{project or settings.get_project()}::"
        f"{chain}{type_}::{name}"
    )


def _alias_urns(request: Any) -> tuple[str, ...]:
    """Earlier URNs of a resource, from the aliases the SDK sends (full URNs, or specs resolved
    the way the engine does: a missing name/type/parent means "the same as now")."""
    urns = [str(u) for u in getattr(request, "aliasURNs", ())]
    for alias in getattr(request, "aliases", ()):
        if alias.urn:
            urns.append(str(alias.urn))
            continue
        spec = alias.spec
        parent = "" if spec.noParent else (spec.parentUrn or request.parent)
        stack, project = spec.stack or settings.get_stack(), spec.project or settings.get_project()
        urns.append(
            engine_urn(parent, spec.type or request.type, spec.name or request.name, stack, project)
        )
    return tuple(urns)


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
